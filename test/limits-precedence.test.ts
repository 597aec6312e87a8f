import { describe, expect, it } from 'vitest';
import { env } from 'cloudflare:test';
import type { AdmitRequest } from '../durable/key-limiter';
import type { Env } from '../worker/env';
import { admit } from '../worker/limits/limiter';
import { estimateExecutionTokens } from '../worker/limits/usage';
import { api, eventually, newAgent } from './support/api';
import { limitedKey } from './support/limits';

/**
 * A request refused for several of its key's limits at once is told the one that keeps it out
 * longest: a used-up budget (until the next period) before a rate window or the concurrency
 * cap (a second or so), so a client that honours Retry-After does not come back a second later
 * to be refused again, and `budget_exhausted` says why.
 */

const DAY_S = 86_400;

describe('a used-up budget takes precedence over a rate window or the concurrency cap', () => {
  it.each([
    ['perSecond', { perSecond: 1 }],
    ['perSecond, sharded', { perSecond: 2, shards: 2 }],
  ])('%s: the request over both is refused budget_exhausted with Retry-After at the next period', async (_label, rates) => {
    const { key, otherKey } = await limitedKey({ ...rates, budget: { requests: 1, period: 'day' } });
    const agent = await newAgent(otherKey);
    // Past the per-second window too: keep asking until a request is refused by it.
    expect((await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' } })).status).toBe(200);
    const refusals = await Promise.all(Array.from({ length: 6 }, () => api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' } })));
    for (const refused of refusals) {
      expect(refused.status).toBe(429);
      expect(refused.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.requests' } });
      const retryAfter = Number(refused.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(1);
      expect(retryAfter).toBeLessThanOrEqual(DAY_S);
      expect(refused.headers.get('ratelimit-reset')).toBe(String(retryAfter));
    }
  });

  it('concurrency: a request arriving while the only slot is taken and the budget is used up is refused budget_exhausted', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 1, budget: { requests: 1, period: 'month' } });
    const agent = await newAgent(otherKey, { concurrency: 2 });
    const slow = api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 2_000 } } });
    await eventually(async () => (await api('/v1/usage', { key })).body.inFlight === 1);
    const refused = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' } });
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.requests' } });
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(1);
    expect((await slow).status).toBe(200);
  });

  it('a rate window still refuses rate_limited while the budget has room', async () => {
    const { key, otherKey } = await limitedKey({ perSecond: 1, budget: { requests: 100, period: 'day' } });
    const agent = await newAgent(otherKey);
    const both = await Promise.all([0, 1].map(() => api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x' } })));
    const refused = both.find((r) => r.status === 429);
    expect(refused?.body.error).toMatchObject({ code: 'rate_limited', details: { limit: 'perSecond' } });
    expect(refused?.headers.get('retry-after')).toBe('1');
  });
});

describe("a sharded key's main limiter of an older release (a gradual deployment)", () => {
  it('without budgetRefusal: the shard\'s rate refusal is the answer (429 rate_limited), not a 503', async () => {
    // Releases before this precedence had no budgetRefusal; an edge of this release asked it of
    // them whenever a shard refused, and answered every such request 503 unavailable.
    const real = env.KEY_LIMITS;
    const olderRelease = {
      idFromName: (name: string) => real.idFromName(name),
      get: (id: DurableObjectId) => {
        const stub = real.get(id);
        return {
          admit: (request: AdmitRequest) => stub.admit(request),
          budgetRefusal: () => Promise.reject(new TypeError('The RPC receiver does not implement the method "budgetRefusal".')),
        };
      },
    };
    const limits = { perSecond: 2, shards: 2, budget: { requests: 100, period: 'day' as const } };
    const olderEnv = { ...env, KEY_LIMITS: olderRelease } as unknown as Env;
    const estimate = estimateExecutionTokens('{"intent":"support.reply","input":"hi"}');
    const keyId = `key_older_${crypto.randomUUID()}`;
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await admit(olderEnv, keyId, limits, true, estimate));
    expect(answers.some((a) => !a.ok && a.code === 'rate_limited')).toBe(true);
  });
});
