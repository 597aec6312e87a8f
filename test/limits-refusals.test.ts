import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, type ApiResponse } from './support/api';
import { limitedKey, settledRequests, toolError } from './support/limits';

/**
 * A request the gateway refuses before any work starts is given back to the key's request
 * budget: a REST 4xx, and on the JSON-RPC endpoints a refusal that travels in a 200. Work that
 * started counts, even when it then fails.
 */

const message = (extra: Record<string, unknown> = {}) => ({ messageId: crypto.randomUUID(), role: 'ROLE_USER', parts: [{ text: 'hi' }], ...extra });

function a2a(key: string, agent: string, method: string, params: Record<string, unknown>, init: { version?: string; envelope?: Record<string, unknown> } = {}) {
  return api(`/a2a/${agent}/`, { key, headers: { 'a2a-version': init.version ?? '1.0' }, body: { jsonrpc: '2.0', id: 1, method, params, ...init.envelope } });
}

/** One MCP call; its JSON-RPC response, whether it came as JSON or as an SSE event. */
async function mcp(key: string, method: string, params: Record<string, unknown>): Promise<ApiResponse & { rpc: any }> {
  const res = await api('/mcp', { key, headers: { accept: 'application/json, text/event-stream' }, body: { jsonrpc: '2.0', id: 1, method, params } });
  const data = typeof res.body === 'string' ? /^data: (.*)$/m.exec(res.body)?.[1] : undefined;
  return { ...res, rpc: data === undefined ? res.body : JSON.parse(data) };
}

describe('refusals inside JSON-RPC give the request budget back', () => {
  it('A2A: a send refused with -32602, -32001, -32600, -32005 or -32009 leaves the budget as it was; a send that ran uses it', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 1, period: 'day' } });
    const agent = await newAgent(otherKey);
    const refusals: [() => Promise<ApiResponse>, number][] = [
      [() => a2a(key, agent, 'SendMessage', { message: { role: 'ROLE_USER', parts: [{ text: 'no messageId' }] } }), -32602],
      [() => a2a(key, agent, 'SendMessage', { message: message({ taskId: 'ex_no_such_task' }) }), -32001],
      [() => a2a(key, agent, 'SendMessage', { message: message() }, { envelope: { jsonrpc: '1.0' } }), -32600],
      [() => a2a(key, agent, 'SendMessage', { message: message() }, { version: '9.9' }), -32009],
      [() => api(`/a2a/${agent}/`, { key, rawBody: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: message() } }), headers: { 'a2a-version': '1.0', 'content-type': 'text/plain' } }), -32005],
      [() => a2a(key, agent, 'SendStreamingMessage', { message: { role: 'ROLE_USER', parts: [{ text: 'no messageId' }] } }), -32602],
      [() => a2a(key, agent, 'message/send', { message: { kind: 'message', role: 'user', parts: [{ kind: 'text', text: 'no messageId' }] } }, { version: '0.3' }), -32602],
    ];
    for (const [send, code] of refusals) {
      const refused = await send();
      expect(refused.status).toBe(200);
      expect(refused.body.error?.code).toBe(code);
    }
    // A notification (no id) is answered 204 and runs nothing: no work either.
    const notified = await a2a(key, agent, 'SendMessage', { message: message() }, { envelope: { id: undefined } });
    expect(notified.status).toBe(204);
    expect(await settledRequests(key)).toBe(0);

    const sent = await a2a(key, agent, 'SendMessage', { message: message() });
    expect(sent.body.error).toBeUndefined();
    expect(await settledRequests(key)).toBe(1);
    const over = await a2a(key, agent, 'SendMessage', { message: message() });
    expect(over.status).toBe(429);
    expect(over.body.error.code).toBe('budget_exhausted');
  });

  it('A2A: a send whose task then fails still counts (its execution started)', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: { kind: 'agent-http', url: mockUrl('/agent?failStatus=400') } });
    const sent = await a2a(key, agent, 'SendMessage', { message: message() });
    expect(sent.body.result.task.status.state).toBe('TASK_STATE_FAILED');
    expect(await settledRequests(key)).toBe(1);
  });

  it('MCP: execute_intent refused for its arguments or an unknown agent leaves the budget as it was; one that ran uses it, even when it failed', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 2, period: 'day' } });
    const agent = await newAgent(otherKey);
    const failing = await newAgent(otherKey, { upstream: { kind: 'agent-http', url: mockUrl('/agent?failStatus=400') } });
    const execute = (args: Record<string, unknown>) => mcp(key, 'tools/call', { name: 'execute_intent', arguments: args });

    const invalid = await execute({ agentId: agent, input: { text: 'no intent' } });
    expect(invalid.status).toBe(200);
    expect(toolError(invalid.rpc)).toBe('invalid_request');
    const unknown = await execute({ agentId: 'no-such-agent', intent: 'echo' });
    expect(toolError(unknown.rpc)).toBe('not_found');
    expect(await settledRequests(key)).toBe(0);

    const failed = await execute({ agentId: failing, intent: 'echo', wait: true });
    expect(toolError(failed.rpc)).toBe('upstream_failed');
    expect(await settledRequests(key)).toBe(1);
    const ran = await execute({ agentId: agent, intent: 'echo', wait: true });
    expect(toolError(ran.rpc)).toBeUndefined();
    expect(ran.rpc.result.structuredContent.status).toBe('succeeded');
    expect(await settledRequests(key)).toBe(2);
    const over = await execute({ agentId: agent, intent: 'echo' });
    expect(over.status).toBe(200);
    expect(toolError(over.rpc)).toBe('budget_exhausted');
  });
});

/**
 * Cancels (with `otherKey`) the execution `pending` started on `agent` once it runs: the request
 * answers 409 execution_cancelled, and `key`'s budget counts it (its upstream call ran).
 */
async function expectCancelledWhileRunning(key: string, otherKey: string, agent: string, pending: ReturnType<typeof api<any>>) {
  const running = await eventually(async () => {
    const status = await api(`/v1/agents/${agent}/status`, { key: otherKey });
    return status.body.running === 1 && status.body.lastExecution.id;
  });
  expect((await api(`/v1/agents/${agent}/executions/${running}/cancel`, { key: otherKey, method: 'POST' })).status).toBe(200);
  const cancelled = await pending;
  expect(cancelled.status).toBe(409);
  expect(cancelled.body.error.code).toBe('execution_cancelled');
  expect(await settledRequests(key)).toBe(1);
}

describe('work that started counts whatever its status', () => {
  it('REST: a sync execution cancelled while it ran answers 409 execution_cancelled and still counts', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, period: 'day' } });
    const agent = await newAgent(otherKey);
    await expectCancelledWhileRunning(key, otherKey, agent, api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 10_000 } } }));
  });

  it('chat through an agent: a turn cancelled while it ran answers 409 execution_cancelled and still counts, as REST', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 5, period: 'day' } }, 'delayMs=10000');
    const agent = await newAgent(otherKey, { upstream: { kind: 'pool', pool: 'chat' } });
    await expectCancelledWhileRunning(key, otherKey, agent, api('/v1/chat/completions', { key, body: { model: `agent:${agent}`, messages: [{ role: 'user', content: 'take your time' }] } }));
  });
});

describe('RateLimit-* headers of a request the gateway refuses', () => {
  const headers = (res: ApiResponse) => [res.headers.get('ratelimit-limit'), res.headers.get('ratelimit-remaining')];
  const budgetUsed = (key: string, n: number) => eventually(async () => (await api('/v1/usage', { key })).body.budget.requests === n);

  it.each([
    ['a key', {}],
    ['a key with rate shards', { perMinute: 600, shards: 2 }],
  ])('report the request budget as the refusal leaves it, given back (%s): two refusals in a row read the same, one more than the next success', async (_name, rates) => {
    const { key, otherKey } = await limitedKey({ ...rates, budget: { requests: 3, period: 'day' } });
    const agent = await newAgent(otherKey);
    const unknownAgent = await api('/v1/agents/no-such-agent/executions', { key, body: { intent: 'echo' } });
    expect(unknownAgent.status).toBe(404);
    expect(headers(unknownAgent)).toEqual(['3', '3']);
    await budgetUsed(key, 0);
    const invalid = await api(`/v1/agents/${agent}/executions`, { key, body: { nope: 1 } });
    expect(invalid.status).toBe(400);
    expect(headers(invalid)).toEqual(['3', '3']);
    await budgetUsed(key, 0);
    const rpcRefused = await a2a(key, agent, 'SendMessage', { message: { role: 'ROLE_USER', parts: [{ text: 'no messageId' }] } });
    expect(rpcRefused.body.error.code).toBe(-32602);
    expect(headers(rpcRefused)).toEqual(['3', '3']);
    await budgetUsed(key, 0);
    const ran = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'echo' } });
    expect(ran.status).toBe(200);
    expect(headers(ran)).toEqual(['3', '2']);
    await budgetUsed(key, 1);
    expect(headers(await api('/v1/agents/no-such-agent/executions', { key, body: { intent: 'echo' } }))).toEqual(['3', '2']);
  });

  it('count a refused request against the rate windows: it was still a request to serve', async () => {
    const { key } = await limitedKey({ perMinute: 3, budget: { requests: 100, period: 'day' } });
    const refused = () => api('/v1/agents/no-such-agent/executions', { key, body: { intent: 'echo' } });
    expect(headers(await refused())).toEqual(['3', '2']);
    expect(headers(await refused())).toEqual(['3', '1']);
    expect(headers(await api('/v1/agents', { key }))).toEqual(['3', '0']);
    expect((await refused()).status).toBe(429);
  });
});

describe('the A2A agent card', () => {
  const card = (agent: string, key?: string) => api(`/a2a/${agent}/.well-known/agent-card.json`, key === undefined ? {} : { key });

  it("counts a card asked for with a key against the key's rate windows, as a /v1 read, and refuses it 429 past them", async () => {
    const { key, otherKey } = await limitedKey({ perMinute: 3 });
    const agent = await newAgent(otherKey);
    const first = await card(agent, key);
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-limit')).toBe('3');
    expect(first.headers.get('ratelimit-remaining')).toBe('2');
    expect((await api('/v1/agents', { key })).headers.get('ratelimit-remaining')).toBe('1');
    expect((await card(agent, key)).headers.get('ratelimit-remaining')).toBe('0');
    const over = await card(agent, key);
    expect(over.status).toBe(429);
    expect(over.body.error).toMatchObject({ code: 'rate_limited', details: { limit: 'perMinute' } });
    expect(Number(over.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(over.headers.get('ratelimit-limit')).toBe('3');
    expect(over.headers.get('ratelimit-remaining')).toBe('0');
    expect(Number(over.headers.get('ratelimit-reset'))).toBeGreaterThan(0);
  });

  it('counts a card against no budget or concurrency cap (it starts no upstream work), and does not count a public card asked for without a key against any key (it is cacheable, limited per address instead: a2a-card-limit.test.ts)', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 1, budget: { requests: 1, period: 'day' } });
    const agent = await newAgent(otherKey, { a2a: { publicCard: true } });
    const withKey = await Promise.all(Array.from({ length: 3 }, () => card(agent, key)));
    expect(withKey.map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await api('/v1/usage', { key })).body.budget.requests).toBe(0);
    for (let i = 0; i < 3; i++) {
      const anonymous = await card(agent);
      expect(anonymous.status).toBe(200);
      expect(anonymous.headers.get('ratelimit-limit')).toBeNull();
      expect(anonymous.headers.get('cache-control')).toBe('public, max-age=300');
    }
    expect((await card(agent, 'eag_not_a_key')).status).toBe(401);
  });
});
