import { createExecutionContext, env, SELF, waitOnExecutionContext } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { api, BASE, eventually, newAgent, newTenant } from './support/api';
import { limitedKey, toolError } from './support/limits';
import { connect } from './support/mcp';

/**
 * Cancelling a waiting execute_intent from MCP: a notifications/cancelled naming its request
 * id (2025 versions, what the SDK's client sends when a call is aborted), or, in 2026-07-28, the
 * client going away. The execution ends cancelled through the agent's own cancel.
 */

const accept = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const meta2026 = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
const modern = (method: string) => ({ ...accept, 'mcp-protocol-version': '2026-07-28', 'mcp-method': method, ...(method === 'tools/call' && { 'mcp-name': 'execute_intent' }) });

/** An execute_intent that waits on a run of 20 s, unless something cancels it. */
const slowCall = (id: string | number, agentId: string, meta?: object) => ({
  jsonrpc: '2.0', id, method: 'tools/call',
  params: { name: 'execute_intent', arguments: { agentId, intent: 'slow', input: { simulateLatencyMs: 20_000 }, wait: true }, ...(meta && { _meta: meta }) },
});

const post = (key: string, body: unknown, headers: Record<string, string> = accept) =>
  SELF.fetch(`${BASE}/mcp`, { method: 'POST', headers: { ...headers, authorization: `Bearer ${key}` }, body: JSON.stringify(body) });

const cancelled = (requestId: unknown, meta?: object) => ({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'user stopped it', ...(meta && { _meta: meta }) } });

/** The JSON-RPC messages of an answer, JSON or SSE. */
async function messages(res: Response): Promise<any[]> {
  const text = await res.text();
  if (!(res.headers.get('content-type') ?? '').includes('event-stream')) return [JSON.parse(text)];
  return [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1] ?? 'null'));
}

const executions = async (key: string, agent: string): Promise<{ id: string; status: string }[]> => (await api(`/v1/agents/${agent}/executions?limit=5`, { key })).body.data;
const status = async (key: string, agent: string, id: string) => (await api(`/v1/agents/${agent}/executions/${id}`, { key })).body.status;
/** The agent's one execution, once it runs. */
const running = (key: string, agent: string) => eventually(async () => (await executions(key, agent)).find((e) => e.status === 'running'));

describe('MCP: notifications/cancelled stops the waiting execute_intent it names', () => {
  it("an SDK client's aborted call cancels its own execution, not another client's of the key under the same request id", async () => {
    const { key } = await newTenant();
    const [agentA, agentB] = [await newAgent(key), await newAgent(key)];
    // Each client numbers its calls from 0 (initialize, tools/list): both calls are id 2.
    const [a, b] = [await connect(key), await connect(key)];
    const abort = new AbortController();
    const callA = a.callTool({ name: 'execute_intent', arguments: { agentId: agentA, intent: 'slow', input: { simulateLatencyMs: 20_000 }, wait: true } }, undefined, { signal: abort.signal });
    const callB = b.callTool({ name: 'execute_intent', arguments: { agentId: agentB, intent: 'slow', input: { simulateLatencyMs: 20_000 }, wait: true } });
    const [runA, runB] = [await running(key, agentA), await running(key, agentB)];

    abort.abort('user stopped it');
    await expect(callA).rejects.toThrow();
    // The client sent notifications/cancelled for its id 2 (not awaited): the execution ends cancelled.
    await eventually(async () => (await status(key, agentA, runA.id)) === 'cancelled');
    expect(await status(key, agentB, runB.id)).toBe('running');

    // B's call still waits, and answers its execution's end: here a cancel through REST.
    expect((await api(`/v1/agents/${agentB}/executions/${runB.id}/cancel`, { key, method: 'POST' })).status).toBe(200);
    const resultB = (await callB) as { isError?: boolean; content: { text: string }[] };
    expect(resultB.isError).toBe(true);
    expect(JSON.parse(resultB.content[0]?.text ?? 'null').error).toMatchObject({ code: 'execution_cancelled', details: { executionId: runB.id } });
    await Promise.all([a.close(), b.close()]);
  });

  it('answers the waiting call execution_cancelled, settles its budget, and takes "7" for another id than 7', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, tokens: 1_000_000, period: 'day' } });
    const agent = await newAgent(otherKey);
    const call = await post(key, slowCall(7, agent));
    expect(call.headers.get('content-type')).toMatch(/text\/event-stream/);
    const run = await running(otherKey, agent);

    const other = await post(key, cancelled('7'));
    expect(other.status).toBe(202);
    expect(await status(otherKey, agent, run.id)).toBe('running');
    const res = await post(key, cancelled(7));
    expect(res.status).toBe(202);
    expect(await res.text()).toBe('');
    // Stopped by the time the notification is answered.
    expect(await status(otherKey, agent, run.id)).toBe('cancelled');

    const [answer] = await messages(call);
    expect(answer.id).toBe(7);
    expect(toolError(answer)).toBe('execution_cancelled');
    expect(JSON.parse(answer.result.content[0].text).error.details.execution).toMatchObject({ id: run.id, status: 'cancelled' });
    // The call counted as a started execution; its token reservation is settled as a cancel settles it.
    const usage = await eventually(async () => {
      const body = (await api('/v1/usage', { key })).body;
      return body.inFlight === 0 && body.budget.reservedTokens === 0 && body;
    });
    expect(usage.budget).toMatchObject({ requests: 1, reservedTokens: 0 });
  });

  it('cancels none when two calls of the key without sessions wait under the id it names', async () => {
    const { key } = await newTenant();
    const [agentA, agentB] = [await newAgent(key), await newAgent(key)];
    const calls = [await post(key, slowCall(3, agentA)), await post(key, slowCall(3, agentB))];
    const runs = [await running(key, agentA), await running(key, agentB)];
    expect((await post(key, cancelled(3))).status).toBe(202);
    expect([await status(key, agentA, runs[0]!.id), await status(key, agentB, runs[1]!.id)]).toEqual(['running', 'running']);
    // A session's cancel names only its own calls: neither of these.
    expect((await post(key, cancelled(3), { ...accept, 'mcp-session-id': 'another-client' })).status).toBe(202);
    expect(await status(key, agentA, runs[0]!.id)).toBe('running');

    for (const [agent, run] of [[agentA, runs[0]!], [agentB, runs[1]!]] as const) await api(`/v1/agents/${agent}/executions/${run.id}/cancel`, { key, method: 'POST' });
    for (const res of calls) expect(toolError((await messages(res))[0])).toBe('execution_cancelled');
  });

  it("keeps a session's cancel that came before its call, which then starts nothing; other sessions' calls with that id run", async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, period: 'day' } });
    const agent = await newAgent(otherKey);
    const session = { ...accept, 'mcp-session-id': 'early-client' };
    expect((await post(key, cancelled(9), session)).status).toBe(202);
    const echo = { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: agent, intent: 'echo', wait: true } } };
    const [refused] = await messages(await post(key, echo, session));
    expect(toolError(refused)).toBe('execution_cancelled');
    expect(await executions(otherKey, agent)).toEqual([]);
    expect((await api('/v1/usage', { key })).body.budget.requests).toBe(0);

    for (const headers of [accept, { ...accept, 'mcp-session-id': 'late-client' }]) {
      const [ran] = await messages(await post(key, echo, headers));
      expect(ran.result.structuredContent).toMatchObject({ agentId: agent, status: 'succeeded' });
    }
  });

  it("still runs a waiting call when the key's limiter object cannot be reached (nothing could cancel it then)", async () => {
    const { key } = await newTenant();
    const agent = await newAgent(key);
    const failing = new Proxy({}, { get: () => async () => Promise.reject(new Error('Durable Object is overloaded. Requests queued for too long.')) });
    const limiters = new Proxy(env.KEY_LIMITS, { get: (target, prop) => (prop === 'get' ? () => failing : (Reflect.get(target, prop, target) as (...args: unknown[]) => unknown).bind(target)) });
    const ctx = createExecutionContext();
    const call = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: agent, intent: 'echo', wait: true } } };
    const res = await createApp().request('/mcp', { method: 'POST', headers: { ...accept, authorization: `Bearer ${key}` }, body: JSON.stringify(call) }, { ...env, KEY_LIMITS: limiters }, ctx);
    expect((await messages(res))[0].result.structuredContent).toMatchObject({ agentId: agent, status: 'succeeded' });
    await waitOnExecutionContext(ctx);
  });

  it('gives a 2025-era client a session at initialize, which it sends back', async () => {
    const { key } = await newTenant();
    const init = await post(key, { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } });
    expect(init.status).toBe(200);
    expect(init.headers.get('mcp-session-id')).toMatch(/^[0-9a-f-]{36}$/);
    const again = await post(key, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { ...accept, 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-06-18' });
    expect((await messages(again))[0].result.tools).toHaveLength(5);
  });

  it('gives a session to an initialize sent in a 2025-03-26 batch too, which the SDK serves', async () => {
    const { key } = await newTenant();
    const initialize = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } };
    const batch = await post(key, [initialize], { ...accept, 'mcp-protocol-version': '2025-03-26' });
    expect(batch.status).toBe(200);
    expect(batch.headers.get('mcp-session-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect((await messages(batch))[0].result.protocolVersion).toBe('2025-03-26');
    // A batch without one, and an initialize sent as a notification, are given none.
    const none = await post(key, [{ jsonrpc: '2.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', method: 'initialize', params: initialize.params }], { ...accept, 'mcp-protocol-version': '2025-03-26' });
    expect(none.headers.get('mcp-session-id')).toBeNull();
    await none.body?.cancel();
  });
});

describe('MCP 2026-07-28: cancelling a waiting execute_intent', () => {
  it('a posted notifications/cancelled stops it too, and the call answers execution_cancelled', async () => {
    const { key } = await newTenant();
    const agent = await newAgent(key);
    // Answered as JSON once the call ends.
    const call = post(key, slowCall('m-1', agent, meta2026), modern('tools/call'));
    const run = await running(key, agent);
    expect((await post(key, cancelled('m-1', meta2026), modern('notifications/cancelled'))).status).toBe(202);
    expect(await status(key, agent, run.id)).toBe('cancelled');
    const [answer] = await messages(await call);
    expect(answer.id).toBe('m-1');
    expect(toolError(answer)).toBe('execution_cancelled');
  });

  it("cancels it when the client goes away (that transport's cancel), while a 2025-era call whose client went away runs on", async () => {
    // The client's disconnect reaches the route as its request's signal (enable_request_signal);
    // the test pool does not pass a fetch's abort on, so the app is driven with the request itself.
    const { key } = await newTenant();
    const [agentModern, agentLegacy] = [await newAgent(key), await newAgent(key)];
    const app = createApp();
    const start = (body: unknown, headers: Record<string, string>) => {
      const gone = new AbortController();
      const request = new Request(`${BASE}/mcp`, { method: 'POST', signal: gone.signal, headers: { ...headers, authorization: `Bearer ${key}` }, body: JSON.stringify(body) });
      const ctx = createExecutionContext();
      const answer = Promise.resolve(app.fetch(request, env, ctx)).catch(() => null).then(() => waitOnExecutionContext(ctx));
      return { gone, answer };
    };
    const modernCall = start(slowCall(1, agentModern, meta2026), modern('tools/call'));
    const legacyCall = start(slowCall(1, agentLegacy), accept);
    const [modernRun, legacyRun] = [await running(key, agentModern), await running(key, agentLegacy)];
    legacyCall.gone.abort();
    modernCall.gone.abort();
    await eventually(async () => (await status(key, agentModern, modernRun.id)) === 'cancelled');
    expect(await status(key, agentLegacy, legacyRun.id)).toBe('running');
    await api(`/v1/agents/${agentLegacy}/executions/${legacyRun.id}/cancel`, { key, method: 'POST' });
    await Promise.all([modernCall.answer, legacyCall.answer]);
  });
});

describe("MCP: a cancel when the key's rate windows are full", () => {
  it('still stops the call it names (202): a cancel frees work, and one cancel a request passes; anything else, a batch with a cancel in it or a batch of several cancels, is 429', async () => {
    const { key, otherKey } = await limitedKey({ perMinute: 2 });
    const [agent, agentModern] = [await newAgent(otherKey), await newAgent(otherKey)];
    const call = await post(key, slowCall(5, agent));
    const modernCall = post(key, slowCall('m-5', agentModern, meta2026), modern('tools/call'));
    const [run, modernRun] = [await running(otherKey, agent), await running(otherKey, agentModern)];
    const list = { jsonrpc: '2.0', id: 6, method: 'tools/list' };
    const full = await post(key, list);
    expect(full.status).toBe(429);
    await full.body?.cancel();

    const res = await post(key, cancelled(5));
    expect(res.status).toBe(202);
    expect(await status(otherKey, agent, run.id)).toBe('cancelled');
    expect(toolError((await messages(call))[0])).toBe('execution_cancelled');
    expect((await post(key, cancelled('m-5', meta2026), modern('notifications/cancelled'))).status).toBe(202);
    expect(await status(otherKey, agentModern, modernRun.id)).toBe('cancelled');
    expect(toolError((await messages(await modernCall))[0])).toBe('execution_cancelled');

    // Only a body of one cancel passes the full window: a batch carrying anything else is refused
    // whole, and so is a batch of several cancels (each would cost a look-up the windows never bound).
    const mixed = await post(key, [cancelled(5), list], { ...accept, 'mcp-protocol-version': '2025-03-26' });
    expect(mixed.status).toBe(429);
    await mixed.body?.cancel();
    const several = await post(key, [cancelled(5), cancelled(7)], { ...accept, 'mcp-protocol-version': '2025-03-26' });
    expect(several.status).toBe(429);
    await several.body?.cancel();
    const batchOfOne = await post(key, [cancelled(8)], { ...accept, 'mcp-protocol-version': '2025-03-26' });
    expect(batchOfOne.status).toBe(202);
    const again = await post(key, list);
    expect(again.status).toBe(429);
    await again.body?.cancel();
  });
});
