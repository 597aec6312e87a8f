import { describe, expect, it } from 'vitest';
import { api, eventually, newAgent } from './support/api';
import { limitedKey } from './support/limits';

/**
 * A key's budgets count requests that call an upstream. An answer the gateway already had —
 * the recorded execution of a repeated Idempotency-Key, a chat from the response cache —
 * calls none, so it is given back like a refusal: retrying safely costs nothing.
 */

/** The key's budget once no request is in flight (every lease settled). */
async function settledBudget(key: string): Promise<{ requests: number; tokens: number }> {
  const usage = await eventually(async () => {
    const res = await api('/v1/usage', { key });
    return res.body.budget.reservedTokens === 0 && res.body;
  });
  return usage.budget;
}

describe('answers the gateway already had use no budget', () => {
  it('REST: a repeated Idempotency-Key answers the recorded execution and leaves the request budget as it was', async () => {
    const { key, otherKey } = await limitedKey({ budget: { requests: 2, period: 'day' } });
    const agent = await newAgent(otherKey);
    const run = (idempotencyKey: string) => api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' }, headers: { 'idempotency-key': idempotencyKey } });

    const first = await run('order-1');
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-remaining')).toBe('1');
    const replay = await run('order-1');
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body.id).toBe(first.body.id);
    expect(replay.headers.get('ratelimit-remaining')).toBe('1');
    expect((await settledBudget(key)).requests).toBe(1);

    // The budget's second request is still there for new work.
    expect((await run('order-2')).status).toBe(200);
    expect((await run('order-3')).status).toBe(429);
  });

  it('chat: a response-cache HIT uses neither the request nor the token budget', async () => {
    const { key } = await limitedKey({ budget: { requests: 5, tokens: 10_000, period: 'day' } });
    const body = { model: 'chat', temperature: 0, messages: [{ role: 'user', content: `cached ${crypto.randomUUID()}` }] };
    const send = () => api('/v1/chat/completions', { key, headers: { 'x-gateway-cache-ttl': '60' }, body });

    const miss = await send();
    expect(miss.status).toBe(200);
    expect(miss.headers.get('x-gateway-cache')).toBe('MISS');
    const spent = await settledBudget(key);
    expect(spent.requests).toBe(1);
    expect(spent.tokens).toBe(miss.body.usage.total_tokens);

    // The cache is written after the answer: ask until it answers, comparing around the hit.
    const hit = await eventually(async () => {
      const before = await settledBudget(key);
      const res = await send();
      return res.headers.get('x-gateway-cache') === 'HIT' && { res, before };
    });
    expect(hit.res.status).toBe(200);
    expect(await settledBudget(key)).toMatchObject(hit.before);
  });
});

/**
 * While the budget is used up, a request only its budget refuses is still answered when the
 * gateway already has its answer: the recorded execution of a repeated Idempotency-Key, a
 * response-cache hit. Anything else is refused as before, and nothing new starts.
 */
describe('answers the gateway already had, while the budget is used up', () => {
  it.each([
    ['one limiter', {}],
    ['rate windows sharded', { perSecond: 100, shards: 2 }],
  ])('REST (%s): a repeated Idempotency-Key is served its recorded execution; a new key is refused budget_exhausted', async (_label, rates) => {
    const { key, otherKey } = await limitedKey({ ...rates, budget: { requests: 3, period: 'day' } });
    const agent = await newAgent(otherKey);
    const run = (idempotencyKey: string | null, body: Record<string, unknown> = { intent: 'x' }) =>
      api(`/v1/agents/${agent}/executions`, { key, body, headers: idempotencyKey === null ? {} : { 'idempotency-key': idempotencyKey } });

    const first = await run('job-1');
    expect(first.status).toBe(200);
    expect((await run('job-2')).status).toBe(200);
    const queued = await run('job-3', { intent: 'x', mode: 'async' });
    expect(queued.status).toBe(202);
    expect((await settledBudget(key)).requests).toBe(3);

    const replay = await run('job-1');
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toMatchObject({ id: first.body.id, status: 'succeeded', output: first.body.output });
    expect(replay.headers.get('ratelimit-remaining')).toBe('0');
    const asyncReplay = await run('job-3', { intent: 'x', mode: 'async' });
    expect(asyncReplay.status).toBe(202);
    expect(asyncReplay.headers.get('idempotent-replayed')).toBe('true');
    expect(asyncReplay.body.id).toBe(queued.body.id);

    // New work, a request without a key, and a key reused with another body: the budget's refusal.
    for (const refused of [await run('job-4'), await run(null), await run('job-2', { intent: 'other' })]) {
      expect(refused.status).toBe(429);
      expect(refused.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.requests' } });
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(1);
    }
    expect((await settledBudget(key)).requests).toBe(3);
    // Nothing new started: the agent's newest execution is still the third.
    const status = await api(`/v1/agents/${agent}/status`, { key: otherKey });
    expect(status.body.lastExecution.id).toBe(queued.body.id);
  });

  it('REST: the look-up for a replay counts against the rate windows, so it is bounded like any request', async () => {
    const { key, otherKey } = await limitedKey({ perMinute: 3, budget: { requests: 1, period: 'day' } });
    const agent = await newAgent(otherKey);
    const run = () => api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' }, headers: { 'idempotency-key': 'job-1' } });
    expect((await run()).status).toBe(200);
    expect((await run()).headers.get('idempotent-replayed')).toBe('true');
    expect((await run()).headers.get('idempotent-replayed')).toBe('true');
    // The minute's three requests are used: no look-up, the budget's refusal (it keeps the request out longest).
    const refused = await run();
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('budget_exhausted');
  });

  it('chat: a response-cache HIT is served; a chat the cache cannot answer is refused budget_exhausted', async () => {
    const { key } = await limitedKey({ budget: { requests: 1, period: 'day' } });
    const body = { model: 'chat', temperature: 0, messages: [{ role: 'user', content: `cached ${crypto.randomUUID()}` }] };
    const send = (content?: string) =>
      api('/v1/chat/completions', { key, headers: { 'x-gateway-cache-ttl': '60' }, body: content === undefined ? body : { ...body, messages: [{ role: 'user', content }] } });

    const miss = await send();
    expect(miss.status).toBe(200);
    expect(miss.headers.get('x-gateway-cache')).toBe('MISS');
    // The cache is written after the answer: ask until it answers.
    const hit = await eventually(async () => {
      const res = await send();
      return res.headers.get('x-gateway-cache') === 'HIT' && res;
    });
    expect(hit.status).toBe(200);
    expect(hit.body.choices[0].message.content).toBe(miss.body.choices[0].message.content);

    const refused = await send('something new');
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('budget_exhausted');
    const streamed = await api('/v1/chat/completions', { key, body: { ...body, stream: true } });
    expect(streamed.status).toBe(429);
    expect((await settledBudget(key)).requests).toBe(1);
  });
});
