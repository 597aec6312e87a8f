import type { Env, Principal } from '../env';
import { newId, randomToken } from '../lib/ids';
import { sha256Hex } from '../lib/hash';

export const KEY_PREFIX = 'eag_';
/** How long an isolate trusts a key lookup: a revoked key works at most this long here… */
export const KEY_ISOLATE_TTL_MS = 30_000;
/** …plus this long where KV still serves the cached lookup (KV's minimum TTL). */
export const KEY_KV_TTL_S = 60;

const kvKey = (hash: string) => `apikey:v1:${hash}`;
const isolateCache = new Map<string, { principal: Principal; expires: number }>();
const ISOLATE_CACHE_MAX = 10_000;
/**
 * SHA-256 of keys this isolate has seen (only keys that were valid when first looked up), so a
 * cache hit needs no digest: the hash is the cache key, and hashing every request cost about
 * 5 % of the edge's CPU. It only memoises the hash; validity is still the cache below.
 */
const hashes = new Map<string, string>();

export interface NewKey {
  id: string;
  key: string;
  prefix: string;
  hash: string;
}

/** A new API key: `eag_` + 32 random bytes, base64url. Only its SHA-256 is stored. */
export async function generateKey(): Promise<NewKey> {
  const key = `${KEY_PREFIX}${randomToken(32)}`;
  return { id: newId('key'), key, prefix: key.slice(0, 12), hash: await sha256Hex(key) };
}

/**
 * Finds the tenant of an API key: isolate cache, then KV, then D1 (the source of truth).
 * Unknown and revoked keys are not cached, so a new key works at once.
 */
export async function lookupKey(env: Env, key: string): Promise<Principal | null> {
  if (!key.startsWith(KEY_PREFIX) || key.length > 200) return null;
  const hash = hashes.get(key) ?? (await sha256Hex(key));
  const now = Date.now();
  const cached = isolateCache.get(hash);
  if (cached && cached.expires > now) return cached.principal;

  let principal = await env.CACHE.get<Principal>(kvKey(hash), 'json').catch(() => null);
  if (!principal) {
    const row = await env.DB.prepare('SELECT id, tenant_id FROM api_keys WHERE hash = ? AND revoked_at IS NULL')
      .bind(hash)
      .first<{ id: string; tenant_id: string }>();
    if (!row) {
      isolateCache.delete(hash);
      return null;
    }
    principal = { tenantId: row.tenant_id, keyId: row.id };
    await env.CACHE.put(kvKey(hash), JSON.stringify(principal), { expirationTtl: KEY_KV_TTL_S }).catch(() => undefined);
  }
  if (isolateCache.size >= ISOLATE_CACHE_MAX) isolateCache.clear();
  isolateCache.set(hash, { principal, expires: now + KEY_ISOLATE_TTL_MS });
  if (hashes.size >= ISOLATE_CACHE_MAX) hashes.clear();
  hashes.set(key, hash);
  return principal;
}

/** Revokes a key in D1 and drops the caches this location holds; returns false if unknown. */
export async function revokeKey(env: Env, keyId: string): Promise<boolean> {
  const row = await env.DB.prepare('SELECT hash FROM api_keys WHERE id = ?').bind(keyId).first<{ hash: string }>();
  if (!row) return false;
  await env.DB.prepare('UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?').bind(Date.now(), keyId).run();
  isolateCache.delete(row.hash);
  await env.CACHE.delete(kvKey(row.hash));
  return true;
}
