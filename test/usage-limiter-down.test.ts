import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { ADMIN, api } from './support/api';

/** A KEY_LIMITS binding whose objects cannot be reached: every RPC fails as an overloaded object's does. */
function unreachableLimiters(): typeof env.KEY_LIMITS {
  const failing = new Proxy({}, {
    get: () => async () => {
      throw Object.assign(new Error('Durable Object is overloaded. Requests queued for too long.'), { overloaded: true });
    },
  });
  return new Proxy(env.KEY_LIMITS, {
    get: (target, prop) => {
      if (prop === 'get') return () => failing;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('GET /v1/usage while the key\'s limiter is unreachable', () => {
  it('answers 503 unavailable with Retry-After, not a 500', async () => {
    const tenant = await api('/v1/admin/tenants', { key: ADMIN(), body: { name: 'usage' } });
    const created = await api(`/v1/admin/tenants/${tenant.body.id}/keys`, { key: ADMIN(), body: { limits: { perMinute: 600, budget: { requests: 100, period: 'day' } } } });
    expect(created.status).toBe(201);
    const res = await createApp().request('/v1/usage', { headers: { authorization: `Bearer ${created.body.key}` } }, { ...env, KEY_LIMITS: unreachableLimiters() });
    const body = (await res.json()) as { error: { code: string } };
    expect(res.status, JSON.stringify(body)).toBe(503);
    expect(body.error.code).toBe('unavailable');
    expect(res.headers.get('retry-after')).toBe('1');
  });
});
