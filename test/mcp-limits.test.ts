import { env, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { BASE, api, eventually, newAgent, type ApiResponse } from './support/api';
import { limitedKey, settledRequests, toolError } from './support/limits';

/**
 * The key's limits as an MCP host meets them over plain HTTP: what one POST /mcp counts, and
 * what its RateLimit-* headers say, in the 2025 protocol versions (answered as an SSE stream).
 */

const accept = { accept: 'application/json, text/event-stream' };

const executeCall = (id: number, args: Record<string, unknown>) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'execute_intent', arguments: args } });

/** The JSON-RPC messages of an MCP answer, whether it came as JSON or as SSE events. */
function messages(res: ApiResponse): any[] {
  if (typeof res.body !== 'string') return Array.isArray(res.body) ? res.body : [res.body];
  return [...res.body.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1] ?? 'null'));
}

/** The agent's newest execution id, or null, read from its object (strongly consistent). */
async function lastExecution(key: string, agent: string): Promise<string | null> {
  return (await api(`/v1/agents/${agent}/status`, { key })).body.lastExecution?.id ?? null;
}

describe('MCP: one execute_intent per HTTP request', () => {
  it('refuses a JSON-RPC batch carrying more than one execute_intent (400, -32600): nothing runs and the budget is given back', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, period: 'day' } });
    const agent = await newAgent(otherKey, { concurrency: 32 });
    const batch = Array.from({ length: 4 }, (_, i) => executeCall(i + 1, { agentId: agent, intent: `batch-${i}` }));
    const res = await api('/mcp', { key, headers: accept, body: batch });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringMatching(/execute_intent/) } });
    expect(res.headers.get('ratelimit-remaining')).toBe('5');
    expect(await settledRequests(key)).toBe(0);
    expect(await lastExecution(otherKey, agent)).toBeNull();

    // The same refusal for a key without limits: the rule is the endpoint's, not the budget's.
    const unlimited = await api('/mcp', { key: otherKey, headers: accept, body: batch });
    expect(unlimited.status).toBe(400);
    expect(await lastExecution(otherKey, agent)).toBeNull();
  });

  it('serves a batch with one execute_intent beside other calls, counted once', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, period: 'day' } });
    const agent = await newAgent(otherKey);
    const res = await api('/mcp', {
      key,
      headers: accept,
      body: [executeCall(1, { agentId: agent, intent: 'one' }), { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'list_agents', arguments: {} } }, { jsonrpc: '2.0', id: 3, method: 'ping' }],
    });
    expect(res.status).toBe(200);
    const byId = Object.fromEntries(messages(res).map((m) => [m.id, m]));
    expect(byId[1].result.structuredContent).toMatchObject({ agentId: agent, status: 'queued' });
    expect(byId[2].result.structuredContent.data.map((a: { id: string }) => a.id)).toEqual([agent]);
    expect(byId[3].result).toEqual({});
    expect(await settledRequests(key)).toBe(1);
  });

  it('refuses a batch in which two requests share an id (400, -32600): the SDK answered one of them, dropped the other unanswered and the budget counted it', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, period: 'day' } });
    const agent = await newAgent(otherKey);
    const ping = (id: unknown) => ({ jsonrpc: '2.0', id, method: 'ping' });
    const res = await api('/mcp', { key, headers: accept, body: [executeCall(1, { agentId: agent, intent: 'twice', wait: true }), ping(1)] });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringMatching(/id 1 .*more than once/) } });
    expect(res.headers.get('ratelimit-remaining')).toBe('5');
    expect(await settledRequests(key)).toBe(0);
    expect(await lastExecution(otherKey, agent)).toBeNull();

    // 1 and "1" are two ids; notifications and posted responses carry none of the batch's requests.
    const distinct = await api('/mcp', { key: otherKey, headers: accept, body: [ping(1), ping('1'), { jsonrpc: '2.0', method: 'notifications/initialized' }, { jsonrpc: '2.0', id: 1, result: {} }] });
    expect(distinct.status).toBe(200);
    expect(messages(distinct).map((m) => m.id).sort()).toEqual([1, '1']);
  });
});

describe('MCP: a batch is one request against the rate windows', () => {
  it('carries at most 32 messages: one of more is refused whole (400, -32600), so a batch cannot serve 100 agent calls for one unit', async () => {
    const { key, otherKey } = await limitedKey({ perMinute: 5 });
    const agent = await newAgent(otherKey);
    const read = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'get_context', arguments: { agentId: agent } } });
    const tooMany = await api('/mcp', { key, headers: accept, body: Array.from({ length: 100 }, (_, i) => read(i + 1)) });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringMatching(/at most 32 messages \(this one 100\)/) } });
    // 32 are served, each answered.
    const most = await api('/mcp', { key, headers: accept, body: Array.from({ length: 32 }, (_, i) => read(i + 1)) });
    expect(most.status).toBe(200);
    expect(messages(most)).toHaveLength(32);
  });
});

describe('MCP: what counts as an execution', () => {
  it('does not count an execute_intent sent as a notification (no id): it is accepted (202) and runs nothing', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 3, period: 'day' } });
    const agent = await newAgent(otherKey);
    const { id: _id, ...notification } = executeCall(1, { agentId: agent, intent: 'echo' });
    const res = await api('/mcp', { key, headers: accept, body: notification });
    expect(res.status).toBe(202);
    expect(await settledRequests(key)).toBe(0);
    expect(await lastExecution(otherKey, agent)).toBeNull();
  });
});

describe('MCP: an execute_intent refused for its params', () => {
  it('is answered -32602 before the SDK reads it: nothing runs and the budget is given back', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 3, period: 'day' } });
    const agent = await newAgent(otherKey);
    for (const params of [
      { name: 'execute_intent', arguments: 'x' },
      { name: 'execute_intent', arguments: { agentId: agent, intent: 'echo' }, task: { ttl: 'soon' } },
      { name: 'execute_intent', arguments: { agentId: agent, intent: 'echo' }, requestState: 5 },
    ]) {
      const res = await api('/mcp', { key, headers: accept, body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params } });
      expect(messages(res)[0], JSON.stringify(params)).toMatchObject({ id: 1, error: { code: -32602, message: expect.stringMatching(/^Invalid params: (arguments|task\.ttl|requestState): /) } });
      expect(res.headers.get('ratelimit-remaining'), JSON.stringify(params)).toBe('3');
    }
    expect(await settledRequests(key)).toBe(0);
    expect(await lastExecution(otherKey, agent)).toBeNull();
  });
});

describe('MCP: an SSE answer for a key with a budget', () => {
  it('sends its headers while the tool still runs, and the outcome in the stream', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 3, tokens: 100_000, period: 'day' } });
    const agent = await newAgent(otherKey);
    const body = JSON.stringify(executeCall(1, { agentId: agent, intent: 'think', input: { simulateLatencyMs: 10_000 }, wait: true }));
    const res = await SELF.fetch(`${BASE}/mcp`, { method: 'POST', headers: { ...accept, authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
    // The headers are here and the execution has not ended: they waited for its agent to take
    // it (they count it), not for its end.
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    expect(res.headers.get('ratelimit-remaining')).toBe('2');
    const running = await eventually(async () => {
      const last = (await api(`/v1/agents/${agent}/status`, { key: otherKey })).body.lastExecution;
      expect(last?.status ?? 'queued').toMatch(/^(queued|running)$/);
      return last?.status === 'running' && (last.id as string);
    });
    expect((await api(`/v1/agents/${agent}/executions/${running}/cancel`, { method: 'POST', key: otherKey })).status).toBe(200);
    const [outcome] = messages({ status: res.status, headers: res.headers, body: await res.text() });
    expect(toolError(outcome)).toBe('execution_cancelled');
    expect(await settledRequests(key)).toBe(1);
  });

  it('gives back an execute_intent its tool refused, and its headers say so; counts one that ran, still as an SSE stream', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 3, tokens: 1_000, period: 'day' } });
    const agent = await newAgent(otherKey);
    // Its run would send ~1,000 tokens of instructions: the agent refuses it, inside the tool.
    const large = await newAgent(otherKey, { upstream: { kind: 'openai-chat', baseUrl: `${env.MOCK_UPSTREAM_URL}/t/mcp-large/ok/v1`, model: 'mock-1' }, instructions: 'Be helpful. '.repeat(340) });
    for (const [args, code] of [
      [{ agentId: 'no-such-agent', intent: 'echo' }, 'not_found'],
      [{ agentId: agent }, 'invalid_request'],
      [{ agentId: large, intent: 'echo', wait: true }, 'budget_exhausted'],
    ] as const) {
      const refused = await api('/mcp', { key, headers: accept, body: executeCall(1, args) });
      expect(refused.headers.get('content-type')).toMatch(/text\/event-stream/);
      expect(toolError(messages(refused)[0])).toBe(code);
      // The headers left once the tool had refused: the call is given back, and they say so.
      expect(refused.headers.get('ratelimit-remaining'), code).toBe('3');
      expect(await settledRequests(key)).toBe(0);
    }
    const ran = await api('/mcp', { key, headers: accept, body: executeCall(2, { agentId: agent, intent: 'echo', wait: true }) });
    expect(ran.headers.get('content-type')).toMatch(/text\/event-stream/);
    expect(messages(ran)[0]).toMatchObject({ id: 2, result: { structuredContent: { status: 'succeeded' } } });
    expect(ran.headers.get('ratelimit-remaining')).toBe('2');
    expect(await settledRequests(key)).toBe(1);
  });
});

const meta2026 = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
const headers2026 = { ...accept, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'execute_intent' };

describe('MCP: a budget refusing execute_intent', () => {
  it('is the tool error budget_exhausted the model can read, in both protocol versions: nothing runs and the other calls are served', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 1, period: 'day' } });
    const agent = await newAgent(otherKey);
    const ran = messages(await api('/mcp', { key, headers: accept, body: executeCall(1, { agentId: agent, intent: 'echo', wait: true }) }))[0];
    expect(ran.result.structuredContent.status).toBe('succeeded');

    const refusedTool = (message: any) => {
      expect(toolError(message)).toBe('budget_exhausted');
      const { details } = JSON.parse(message.result.content[0].text).error;
      expect(details).toMatchObject({ limit: 'budget.requests', retryAfter: expect.any(Number) });
    };
    const legacy = await api('/mcp', { key, headers: accept, body: [executeCall(2, { agentId: agent, intent: 'again' }), { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'list_agents', arguments: {} } }] });
    expect(legacy.status).toBe(200);
    expect(legacy.headers.get('content-type')).toMatch(/text\/event-stream/);
    const byId = Object.fromEntries(messages(legacy).map((m) => [m.id, m]));
    refusedTool(byId[2]);
    expect(byId[3].result.structuredContent.data.map((a: { id: string }) => a.id)).toEqual([agent]);
    // The budget's headers: nothing of it was counted.
    expect(legacy.headers.get('ratelimit-remaining')).toBe('0');
    expect(legacy.headers.get('ratelimit-limit')).toBe('1');

    const modern = await api('/mcp', { key, headers: headers2026, body: { ...executeCall(4, { agentId: agent, intent: 'again' }), params: { name: 'execute_intent', arguments: { agentId: agent, intent: 'again' }, _meta: meta2026 } } });
    expect(modern.status).toBe(200);
    refusedTool(messages(modern)[0]);
    expect(modern.headers.get('ratelimit-remaining')).toBe('0');

    expect(await settledRequests(key)).toBe(1);
    expect(await lastExecution(otherKey, agent)).toBe(ran.result.structuredContent.id);
  });

  it('still answers a retry with an idempotencyKey with the execution it started, and a rate window refuses the whole request with HTTP 429', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 1, period: 'day' } });
    const agent = await newAgent(otherKey);
    const args = { agentId: agent, intent: 'echo', wait: true, idempotencyKey: 'lost-answer' };
    const first = messages(await api('/mcp', { key, headers: accept, body: executeCall(1, args) }))[0];
    expect(first.result.structuredContent.status).toBe('succeeded');
    const retried = messages(await api('/mcp', { key, headers: accept, body: executeCall(2, args) }))[0];
    expect(retried.result.structuredContent).toEqual(first.result.structuredContent);
    expect(toolError(messages(await api('/mcp', { key, headers: accept, body: executeCall(3, { ...args, idempotencyKey: 'another' }) }))[0])).toBe('budget_exhausted');
    expect(await settledRequests(key)).toBe(1);

    // A rate window is the request's limit, not the tool's: past it the whole POST is refused.
    const rated = await limitedKey({ perMinute: 1, budget: { requests: 5, period: 'day' } });
    const ratedAgent = await newAgent(rated.otherKey);
    expect(messages(await api('/mcp', { key: rated.key, headers: accept, body: executeCall(1, { agentId: ratedAgent, intent: 'echo' }) }))[0].result.structuredContent.status).toBe('queued');
    const limited = await api('/mcp', { key: rated.key, headers: accept, body: executeCall(2, { agentId: ratedAgent, intent: 'echo' }) });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).not.toBeNull();
    expect(limited.body.error).toMatchObject({ code: 'rate_limited', details: { limit: 'perMinute' } });
  });
});

describe('MCP: execute_intent retried with an idempotencyKey', () => {
  it('returns the first execution without running it again, and the retry costs no budget', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, period: 'day' } });
    const agent = await newAgent(otherKey);
    const args = { agentId: agent, intent: 'support.reply', input: { message: 'Where is my order?' }, wait: true, idempotencyKey: 'order-42' };
    const first = messages(await api('/mcp', { key, headers: accept, body: executeCall(1, args) }))[0];
    expect(first.result.structuredContent).toMatchObject({ agentId: agent, status: 'succeeded' });
    expect(await settledRequests(key)).toBe(1);
    const retried = messages(await api('/mcp', { key, headers: accept, body: executeCall(2, args) }))[0];
    expect(retried.result.structuredContent).toEqual(first.result.structuredContent);
    expect(await settledRequests(key)).toBe(1);
    expect(await lastExecution(otherKey, agent)).toBe(first.result.structuredContent.id);

    // The same key with other arguments is refused, as REST refuses it, and runs nothing.
    const reused = messages(await api('/mcp', { key, headers: accept, body: executeCall(3, { ...args, input: 'something else' }) }))[0];
    expect(toolError(reused)).toBe('idempotency_key_reused');
    expect(await settledRequests(key)).toBe(1);
    const invalid = messages(await api('/mcp', { key, headers: accept, body: executeCall(4, { ...args, idempotencyKey: 'has spaces' }) }))[0];
    expect(toolError(invalid)).toBe('invalid_request');
    expect(await lastExecution(otherKey, agent)).toBe(first.result.structuredContent.id);
  });
});
