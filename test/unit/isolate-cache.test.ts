import { env } from 'cloudflare:test';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { KEY_ISOLATE_TTL_MS, lookupKey } from '../../worker/auth/api-keys';
import type { Env } from '../../worker/env';
import { IsolateCache } from '../../worker/lib/isolate-cache';
import { newTenant } from '../support/api';

describe('IsolateCache', () => {
  const TTL = 10_000;
  const pending = <T>() => {
    let resolve: (value: T) => void = () => undefined;
    const promise = new Promise<T>((r) => { resolve = r; });
    return { promise, resolve };
  };
  /** A cache whose entry 'k' (`value`) has just expired. */
  const expired = <T>(value: T, options?: { staleForMs?: number }) => {
    const cache = new IsolateCache<T>(TTL, options);
    cache.set('k', value);
    vi.setSystemTime(Date.now() + TTL + 1);
    return cache;
  };
  beforeEach(() => { vi.useFakeTimers({ toFake: ['Date'] }); });
  afterEach(() => { vi.useRealTimers(); });

  it('serves the expired value to everyone else while one request refreshes it, and not after', async () => {
    const cache = expired('old', { staleForMs: 2_000 });
    const refresh = pending<string>();
    const refreshing = cache.get('k', () => refresh.promise);
    let loads = 0;
    const load = async () => { loads++; return 'mine'; };
    expect(await cache.get('k', load)).toBe('old'); // someone is refreshing: no load of its own
    expect(await cache.get('other', load)).toBe('mine');
    refresh.resolve('fresh');
    expect(await refreshing).toBe('fresh');
    expect(await cache.get('k', load)).toBe('fresh');
    vi.setSystemTime(Date.now() + TTL + 1);
    expect(await cache.get('k', load)).toBe('mine'); // expired and nobody refreshing: it loads
    expect(loads).toBe(2);
  });

  it('lets the next request refresh when a refresh has taken too long (its request may be gone)', async () => {
    const cache = expired('old', { staleForMs: 2_000 });
    void cache.get('k', () => new Promise<never>(() => undefined)); // never settles
    vi.setSystemTime(Date.now() + 1_999);
    expect(await cache.get('k', async () => 'mine')).toBe('old');
    vi.setSystemTime(Date.now() + 1);
    expect(await cache.get('k', async () => 'mine')).toBe('mine');
  });

  it('is free again after a refresh that failed, and passes the failure to its caller', async () => {
    const cache = new IsolateCache<string>(TTL);
    await expect(cache.get('k', () => Promise.reject(new Error('KV down')))).rejects.toThrow('KV down');
    expect(await cache.get('k', async () => 'mine')).toBe('mine');
  });

  it('gives a value past its time to a caller whose source cannot answer, for a while, counting its age from its load', async () => {
    const cache = expired('old');
    expect(cache.stale('k', TTL + 5_000, 1_000)).toBe('old');
    // Served as fresh for the retry interval, so one request a second asks the source, not every one.
    let loads = 0;
    expect(await cache.get('k', async () => { loads++; return 'new'; })).toBe('old');
    expect(loads).toBe(0);
    vi.setSystemTime(Date.now() + 1_001);
    await expect(cache.get('k', () => Promise.reject(new Error('down')))).rejects.toThrow('down');
    // Its age runs from when it was loaded, however often it was served since.
    vi.setSystemTime(Date.now() + 4_000);
    expect(cache.stale('k', TTL + 5_000, 1_000)).toBeUndefined();
    expect(cache.stale('missing', TTL + 5_000, 1_000)).toBeUndefined();
  });

  it('drops a cached value that a lookup no longer keeps (a key revoked since)', async () => {
    const cache = expired<string | null>('valid');
    const keep = (v: string | null) => v !== null;
    expect(await cache.get('k', async () => null, keep)).toBeNull();
    expect(await cache.get('k', async () => 'again', keep)).toBe('again');
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
