import { createExecutionContext, env, SELF, waitOnExecutionContext } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { api, BASE, eventually, mockUrl, newAgent } from './support/api';
import { limitedKey, settledRequests } from './support/limits';

/**
 * A key's concurrency cap counts requests in flight: a request whose client went away is not
 * in flight any more, whichever face started the work (REST sync, an A2A stream, a chat
 * through an agent, an MCP execute_intent that waits). Its slot comes back at once; the
 * execution goes on, and counts against the budget as started work.
 */

/** A turn of an agent-http upstream that answers after 8 s (the mock's delayMs). */
const slowUpstream = { kind: 'agent-http', url: mockUrl('/agent?delayMs=8000') };
const SLOW_INPUT = { simulateLatencyMs: 8_000 };
const JSON_HEADERS = { 'content-type': 'application/json' };
const MCP_HEADERS = { ...JSON_HEADERS, accept: 'application/json, text/event-stream' };

/**
 * Sends a request whose client goes away before its answer begins: the test pool does not pass a
 * fetch's abort on, so the app is driven with the request itself (its signal is the client's
 * disconnect, as with enable_request_signal).
 */
function leaving(key: string, path: string, body: unknown, headers: Record<string, string> = JSON_HEADERS) {
  const gone = new AbortController();
  const request = new Request(`${BASE}${path}`, { method: 'POST', signal: gone.signal, headers: { ...headers, authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
  const ctx = createExecutionContext();
  const answer = Promise.resolve(createApp().fetch(request, env, ctx))
    .then((res) => res.body?.cancel())
    .catch(() => null)
    .then(() => waitOnExecutionContext(ctx));
  return { leave: () => gone.abort(), answer };
}

const inFlight = async (key: string): Promise<number> => (await api('/v1/usage', { key })).body.inFlight;
/** The only slot is taken: a second upstream request of the key is refused. */
const slotTaken = async (key: string) => eventually(async () => (await inFlight(key)) === 1, 5_000);
/** The slot came back well before the 8 s turn ended, and a chat of the key is admitted. */
async function slotFreed(key: string) {
  await eventually(async () => (await inFlight(key)) === 0, 2_500);
  const chat = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'hi' }] } });
  expect(chat.status).toBe(200);
}
const runningExecution = (key: string, agent: string) =>
  eventually(async () => ((await api(`/v1/agents/${agent}/executions?limit=5`, { key })).body.data as { id: string; status: string }[]).find((e) => e.status === 'running'), 5_000);
const statusOf = async (key: string, agent: string, id: string): Promise<string> => (await api(`/v1/agents/${agent}/executions/${id}`, { key })).body.status;

/** The client leaves (`leave`) while the agent's run is on: its slot comes back at once, the run goes on. */
async function leaveAndSeeSlotFreed(key: string, otherKey: string, agent: string, leave: () => unknown) {
  const run = await runningExecution(otherKey, agent);
  await slotTaken(key);
  await leave();
  await slotFreed(key);
  expect(await statusOf(otherKey, agent, run.id)).toBe('running');
}

describe('concurrency cap: a request whose client went away frees its slot at once', () => {
  it('REST sync execution: the run goes on and counts', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 1, budget: { requests: 10, period: 'day' } });
    const agent = await newAgent(otherKey);
    const call = leaving(key, `/v1/agents/${agent}/executions`, { intent: 'slow', input: SLOW_INPUT });
    await leaveAndSeeSlotFreed(key, otherKey, agent, call.leave);
    await call.answer;
    // The execution and the chat.
    expect(await settledRequests(key)).toBe(2);
  });

  for (const [method, version, message] of [
    ['SendStreamingMessage', '1.0', { role: 'ROLE_USER', parts: [{ text: 'hi' }] }],
    ['message/stream', '0.3', { kind: 'message', role: 'user', parts: [{ kind: 'text', text: 'hi' }] }],
  ] as const) {
    it(`A2A ${method}: the client cancels the stream, the turn goes on`, async () => {
      const { key, otherKey } = await limitedKey({ concurrency: 1 });
      const agent = await newAgent(otherKey, { upstream: slowUpstream });
      const res = await SELF.fetch(`${BASE}/a2a/${agent}/`, {
        method: 'POST',
        headers: { ...JSON_HEADERS, authorization: `Bearer ${key}`, 'a2a-version': version },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params: { message: { ...message, messageId: crypto.randomUUID() } } }),
      });
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      await leaveAndSeeSlotFreed(key, otherKey, agent, () => reader.cancel());
    });
  }

  for (const stream of [false, true]) {
    it(`chat through an agent (${stream ? 'streamed' : 'not streamed'}): the client leaves before the answer begins`, async () => {
      const { key, otherKey } = await limitedKey({ concurrency: 1 });
      const agent = await newAgent(otherKey, { upstream: slowUpstream });
      const call = leaving(key, '/v1/chat/completions', { model: `agent:${agent}`, stream, messages: [{ role: 'user', content: 'hi' }] });
      await leaveAndSeeSlotFreed(key, otherKey, agent, call.leave);
      await call.answer;
    });
  }

  it('MCP execute_intent with wait, answered as JSON (2026-07-28: the disconnect cancels the run)', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 1 });
    const agent = await newAgent(otherKey);
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
    const call = leaving(key, '/mcp', {
      jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: agent, intent: 'slow', input: SLOW_INPUT, wait: true }, _meta: meta },
    }, { ...MCP_HEADERS, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'execute_intent' });
    const run = await runningExecution(otherKey, agent);
    await slotTaken(key);
    call.leave();
    await slotFreed(key);
    await eventually(async () => (await statusOf(otherKey, agent, run.id)) === 'cancelled');
    await call.answer;
  });

  it('MCP execute_intent with wait, answered as an SSE stream the client cancels', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 1 });
    const agent = await newAgent(otherKey);
    const res = await SELF.fetch(`${BASE}/mcp`, {
      method: 'POST',
      headers: { ...MCP_HEADERS, authorization: `Bearer ${key}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: agent, intent: 'slow', input: SLOW_INPUT, wait: true } } }),
    });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    await leaveAndSeeSlotFreed(key, otherKey, agent, () => res.body?.cancel());
  });
});
