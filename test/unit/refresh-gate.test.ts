import { env } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { KEY_ISOLATE_TTL_MS, lookupKey } from '../../worker/auth/api-keys';
import type { Env } from '../../worker/env';
import { RefreshGate } from '../../worker/lib/refresh-gate';
import { newTenant } from '../support/api';

describe('RefreshGate', () => {
  it('serves the expired value to everyone else while one request refreshes it, and not after', async () => {
    const gate = new RefreshGate(2_000);
    expect(gate.serveStale('k', 1_000)).toBe(false); // nobody refreshing: the caller must
    let finish: (value: string) => void = () => undefined;
    const refreshing = gate.refresh('k', 1_000, () => new Promise<string>((resolve) => { finish = resolve; }));
    expect(gate.serveStale('k', 1_500)).toBe(true);
    expect(gate.serveStale('other', 1_500)).toBe(false);
    finish('fresh');
    expect(await refreshing).toBe('fresh');
    expect(gate.serveStale('k', 1_600)).toBe(false);
  });

  it('lets the next request refresh when a refresh has taken too long (its request may be gone)', () => {
    const gate = new RefreshGate(2_000);
    void gate.refresh('k', 1_000, () => new Promise<never>(() => undefined)); // never settles
    expect(gate.serveStale('k', 2_999)).toBe(true);
    expect(gate.serveStale('k', 3_000)).toBe(false);
  });

  it('is free again after a refresh that failed, and passes the failure to its caller', async () => {
    const gate = new RefreshGate();
    await expect(gate.refresh('k', 1_000, () => Promise.reject(new Error('KV down')))).rejects.toThrow('KV down');
    expect(gate.serveStale('k', 1_001)).toBe(false);
  });
});

describe('API key lookups when the cached key expires', () => {
  it('send one request to KV while the rest keep the cached answer', async () => {
    const { key, tenantId } = await newTenant();
    let reads = 0;
    const counting = { ...env, CACHE: { get: (...args: Parameters<KVNamespace['get']>) => { reads++; return env.CACHE.get(...args); }, put: env.CACHE.put.bind(env.CACHE) } } as unknown as Env;
    expect(await lookupKey(counting, key)).toMatchObject({ tenantId });
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.now() + KEY_ISOLATE_TTL_MS + 1_000);
      reads = 0;
      const principals = await Promise.all(Array.from({ length: 20 }, () => lookupKey(counting, key)));
      expect(principals.every((p) => p?.tenantId === tenantId)).toBe(true);
      expect(reads).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
