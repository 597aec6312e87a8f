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
