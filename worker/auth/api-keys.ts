import type { AuditEntry } from '../audit/log';
import { auditStatement } from '../audit/log';
import type { Env, Principal } from '../env';
import { KeyLimits } from '../schemas/limits';
import { newId, randomToken } from '../lib/ids';
import { atPrimary } from '../lib/d1-primary';
import { sha256Hex } from '../lib/hash';
import { ChangeLog } from '../lib/change-log';
import { IsolateCache } from '../lib/isolate-cache';
import { dropCached } from '../lib/kv-cache';
import { isTransientStorageError } from '../lib/storage-errors';
import { keyRevokedHere, rememberedKeyStatus } from './key-status';

export const KEY_PREFIX = 'eag_';
/**
 * How long an isolate trusts a key lookup: a revoked key works at most this long here (and for
 * the milliseconds the refresh after it takes, see IsolateCache)…
 */
export const KEY_ISOLATE_TTL_MS = 30_000;
/** …plus this long where KV still serves the cached lookup (KV's minimum TTL). */
export const KEY_KV_TTL_S = 60;
/**
 * While D1 cannot answer (and KV has no entry), a key this isolate found valid at most this
 * long ago is still admitted: every route that runs an agent needs no D1 once its caches are
 * warm, and a D1 outage longer than the caches' 90 s otherwise turned every keyed request away
 * with 503. A revoke needs D1 too, so none lands meanwhile; one made in the 30 s before the
 * outage may go unseen here until D1 answers again or this runs out.
 */
export const KEY_STALE_IF_ERROR_MS = 15 * 60_000;
/** How often, while D1 cannot answer, one request per key tries it again. */
const KEY_STALE_RETRY_MS = 5_000;

// v2: the cached principal carries the key's limits (v1 entries lacked them).
const kvKey = (hash: string) => `apikey:v2:${hash}`;
/** Valid keys only: an unknown or revoked key is looked up again, so a new key works at once. */
const isolateCache = new IsolateCache<Principal | null>(KEY_ISOLATE_TTL_MS);
const ISOLATE_CACHE_MAX = 10_000;
/**
 * SHA-256 of keys this isolate has seen (only keys that were valid when first looked up), so a
 * cache hit needs no digest: the hash is the cache key, and hashing every request cost about
 * 5 % of the edge's CPU. It only memoises the hash; validity is still the cache below.
 */
const hashes = new Map<string, string>();
/**
 * Keys (by hash) changed or revoked in this isolate: a lookup that one of them overtook while
 * it read may hold what was there before, and caches nothing.
 */
const changes = new ChangeLog(ISOLATE_CACHE_MAX);
/** Principals read by a lookup that a change overtook: answered once, never cached. */
const overtaken = new WeakSet<Principal>();

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

/** Runs work past the answer (the request's `waitUntil`); absent, the work is awaited. */
export type Defer = (work: Promise<unknown>) => void;

/**
 * Finds the tenant of an API key: isolate cache, then KV, then D1 (the source of truth).
 * Unknown and revoked keys are not cached, so a new key works at once.
 */
export async function lookupKey(env: Env, key: string, defer?: Defer): Promise<Principal | null> {
  if (!key.startsWith(KEY_PREFIX) || key.length > 200) return null;
  const hash = hashes.get(key) ?? (await sha256Hex(key));
  let principal: Principal | null;
  try {
    principal = await isolateCache.get(hash, () => lookupStored(env, hash, defer), (found) => found !== null && !overtaken.has(found));
  } catch (error) {
    principal = admittedBefore(hash, error);
  }
  // Found revoked here (by a revoke, or a stream's check of D1): refused at once, not admitted
  // from the caches for their 30 s, or KV's 60 s (a cut stream's reconnect would get a new one).
  if (principal && rememberedKeyStatus(principal.keyId) === false) {
    isolateCache.delete(hash);
    return null;
  }
  if (principal) {
    if (hashes.size >= ISOLATE_CACHE_MAX) hashes.clear();
    hashes.set(key, hash);
  }
  return principal;
}

let staleWarnedAt = 0;

/**
 * A lookup that failed: the key as this isolate last found it, if D1 could not answer now and
 * that was at most KEY_STALE_IF_ERROR_MS ago; else the failure, as before (503 for an outage).
 */
function admittedBefore(hash: string, error: unknown): Principal {
  const stale = isTransientStorageError(error) ? isolateCache.stale(hash, KEY_STALE_IF_ERROR_MS, KEY_STALE_RETRY_MS) : undefined;
  if (!stale) throw error;
  // One line per KEY_STALE_RETRY_MS while it lasts, not one per request.
  if (Date.now() - staleWarnedAt >= KEY_STALE_RETRY_MS) {
    staleWarnedAt = Date.now();
    console.warn(JSON.stringify({ level: 'warn', msg: 'D1 cannot answer a key lookup: keys this isolate found valid recently are admitted meanwhile', error: String(error) }));
  }
  return stale;
}

/**
 * KV, then D1 (the source of truth), which refills KV. A lookup that read the key just before
 * it was revoked or changed here would land after that and put what it read back in the
 * caches the change had emptied: a key revoked in this isolate is not found, whatever the
 * read said, and what a change overtook answers its own request only, cached nowhere.
 */
async function lookupStored(env: Env, hash: string, defer?: Defer): Promise<Principal | null> {
  const mark = changes.mark();
  const cached = await env.CACHE.get<Principal>(kvKey(hash), 'json').catch(() => null);
  if (cached) {
    if (rememberedKeyStatus(cached.keyId) === false) return null;
    if (changes.changedSince(hash, mark)) overtaken.add(cached);
    return cached;
  }
  // At the primary: a route's database may be a session reading a replica (d1-session.ts),
  // which could call a key just revoked valid (or a new one unknown), and this answer is cached.
  const row = await atPrimary(env.DB).prepare('SELECT id, tenant_id, limits FROM api_keys WHERE hash = ? AND revoked_at IS NULL')
    .bind(hash)
    .first<{ id: string; tenant_id: string; limits: string | null }>();
  if (!row || rememberedKeyStatus(row.id) === false) return null;
  const limits = parseLimits(row.limits);
  const principal: Principal = { tenantId: row.tenant_id, keyId: row.id, ...(limits && { limits }) };
  const written = await env.CACHE.put(kvKey(hash), JSON.stringify(principal), { expirationTtl: KEY_KV_TTL_S }).then(() => true, () => false);
  if (changes.changedSince(hash, mark)) {
    // Changed here while this read: what it put back may predate the change (or it may not; drop it either way).
    overtaken.add(principal);
    await dropCached(env.CACHE, kvKey(hash), 'api key');
  } else if (written) {
    // Only what was put back is checked: no second D1 read per lookup while KV refuses writes.
    const check = confirmWriteBack(env, hash, principal.keyId, row.limits);
    if (defer) defer(check);
    else await check;
  }
  return principal;
}

/**
 * A revoke (or a PATCH of the limits) in another location, landing between this lookup's D1
 * read and its KV write, has already deleted the KV entry this write then puts back: every
 * isolate would find the key valid (or its old limits) there for 60 s more, and keep it 30 s
 * after that, past the 90 s a change promises. So once the entry is in KV, D1 is read again
 * (off the answer's path): a change that the write could have overtaken is now there to see,
 * and the entry goes (a revoked key known revoked here). A D1 that cannot answer leaves the
 * entry to its TTL, as a failed KV delete does.
 */
async function confirmWriteBack(env: Env, hash: string, keyId: string, limits: string | null): Promise<void> {
  try {
    const current = await atPrimary(env.DB).prepare('SELECT limits FROM api_keys WHERE hash = ? AND revoked_at IS NULL').bind(hash).first<{ limits: string | null }>();
    if (current && current.limits === limits) return;
    if (!current) keyRevokedHere(keyId);
    isolateCache.delete(hash);
    await dropCached(env.CACHE, kvKey(hash), 'api key');
  } catch (error) {
    console.warn(JSON.stringify({ level: 'warn', msg: 'API key write-back check failed; the KV entry expires by its TTL', error: String(error) }));
  }
}

/** Stored limits, or null for none (or for a row that no longer parses: never a 500 on auth). */
export function parseLimits(json: string | null): KeyLimits | null {
  if (json === null) return null;
  try {
    const parsed = KeyLimits.safeParse(JSON.parse(json));
    return parsed.success && Object.keys(parsed.data).length > 0 ? parsed.data : null;
  } catch {
    return null;
  }
}

/** Drops the cached lookups of a key where this runs (elsewhere they expire within 90 s). */
async function forgetKey(env: Env, hash: string): Promise<void> {
  changes.changed(hash);
  isolateCache.delete(hash);
  await dropCached(env.CACHE, kvKey(hash), 'api key');
}

/** Revokes a key in D1 and drops the caches this location holds; returns false if unknown. */
export async function revokeKey(env: Env, keyId: string, audit?: AuditEntry): Promise<boolean> {
  const row = await atPrimary(env.DB).prepare('SELECT hash FROM api_keys WHERE id = ?').bind(keyId).first<{ hash: string }>();
  if (!row) return false;
  const revoke = env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').bind(Date.now(), keyId);
  await env.DB.batch(audit ? [revoke, auditStatement(env.DB, audit)] : [revoke]);
  keyRevokedHere(keyId);
  await forgetKey(env, row.hash);
  return true;
}

export interface KeyRow {
  id: string;
  tenant_id: string;
  prefix: string;
  name: string | null;
  created_at: number;
  revoked_at: number | null;
  limits: string | null;
}

/**
 * A key as the primary holds it: the admin writes decide on it, and the request's session may
 * read a replica that has not seen a key made a moment ago (a revoke answered 404, the key working on).
 */
export async function getKeyRow(env: Env, keyId: string): Promise<(KeyRow & { hash: string }) | null> {
  return atPrimary(env.DB).prepare('SELECT id, tenant_id, hash, prefix, name, created_at, revoked_at, limits FROM api_keys WHERE id = ?').bind(keyId).first<KeyRow & { hash: string }>();
}

/**
 * Writes a key's name and limits (with its audit entry, in one batch) if they are still what
 * `key` holds, and drops the cached lookups here, so the new limits apply at once where they
 * were changed. Null when another change landed since `key` was read (a revocation included): a
 * PATCH merges into the limits it read, and writing over that change would lose it (the audit
 * log recording both).
 */
export async function updateKey(env: Env, key: KeyRow & { hash: string }, change: { name: string | null; limits: KeyLimits | null }, audit: AuditEntry): Promise<KeyRow | null> {
  const limits = change.limits && Object.keys(change.limits).length > 0 ? JSON.stringify(change.limits) : null;
  const [write] = await env.DB.batch([
    // Not a revoked key: one revoked since it was read is read again, and the PATCH refused.
    env.DB.prepare('UPDATE api_keys SET name = ?, limits = ? WHERE id = ? AND name IS ? AND limits IS ? AND revoked_at IS NULL').bind(change.name, limits, key.id, key.name, key.limits),
    auditStatement(env.DB, audit),
  ]);
  if (!write || write.meta.changes === 0) return null;
  await forgetKey(env, key.hash);
  return { ...key, name: change.name, limits };
}
