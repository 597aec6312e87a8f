import { auditStatement, type AuditEntry } from '../audit/log';
import { ApiError, invalidRequest } from '../errors';
import type { Env } from '../env';
import { IsolateCache } from '../lib/isolate-cache';
import { dropCached } from '../lib/kv-cache';
import { iso } from '../lib/time';
import { maskedCredentialIssue, maskedForm, maskShowing, SHOWN_FROM_LENGTH } from '../lib/masked-credential';
import { POOL_PAGE_MAX, type PoolView, type PutPoolBody, type StoredPool } from '../schemas/pool';
import { countTenantPools, PROBE_RUN } from './probe-schedule';
import { openSecret, sealedLength, sealSecret } from './secrets';
import { wholeNumberSetting } from '../lib/whole-number-setting';

/**
 * A stored target: the credential sealed, with its last four characters for display when it is
 * long enough to show them (`SHOWN_FROM_LENGTH`); a shorter one keeps nothing in clear.
 */
type StoredTarget = PutPoolBody['targets'][number] & { apiKeyLast4?: string };

/** How long an isolate trusts its copy of a pool; KV holds one for 60 s (its minimum). */
const POOL_ISOLATE_TTL_MS = 10_000;
const POOL_KV_TTL_S = 60;
const cache = new IsolateCache<StoredPool | null>(POOL_ISOLATE_TTL_MS);
const kvKey = (tenantId: string, name: string) => `pool:v1:${tenantId}:${name}`;
const secretContext = (tenantId: string, name: string, targetId: string) => `${tenantId}/${name}/${targetId}`;

/**
 * Whether a stored target's `apiKeyLast4` may be shown. The credential's length comes from the
 * ciphertext, because targets stored before short credentials were hidden keep `apiKeyLast4`
 * even for those. That is its length in UTF-8 bytes; a credential sent in an HTTP header is
 * Latin-1 (nearly always ASCII), so it is the length in characters, or more only for
 * characters past U+007F.
 */
const showsLast4 = (t: StoredTarget): boolean => t.apiKeyLast4 !== undefined && t.apiKey !== undefined && sealedLength(t.apiKey) >= SHOWN_FROM_LENGTH;

/** The view of a stored target's credential. */
const masked = (t: StoredTarget): string => maskShowing(showsLast4(t) ? t.apiKeyLast4 : undefined);

/**
 * A PUT that sends a credential back in its masked form (a pool read with GET, edited and put
 * back) keeps the credential stored for that target id, as long as the target still points
 * where it did: otherwise anyone with the tenant's key could send the sealed credential to a
 * host of their own. A masked form that matches nothing stored is refused: storing it would
 * send "Bearer …ABCD" upstream.
 */
function keepMaskedCredentials(targets: PutPoolBody['targets'], previous: StoredPool | null, name: string): Map<string, StoredTarget> {
  const stored = new Map((previous?.targets ?? []).map((t) => [t.id, t as StoredTarget]));
  const kept = new Map<string, StoredTarget>();
  const issues: ReturnType<typeof maskedCredentialIssue>[] = [];
  targets.forEach((t, i) => {
    const mask = maskedForm(t.apiKey);
    if (t.apiKey === undefined || mask === undefined) return;
    const old = stored.get(t.id);
    const samePlace = old !== undefined && old.kind === t.kind && old.baseUrl === t.baseUrl && old.url === t.url;
    if (old?.apiKey !== undefined && samePlace && masked(old) === mask) kept.set(t.id, old);
    else issues.push(maskedCredentialIssue(['targets', String(i), 'apiKey'], t.apiKey, `pool ${name}, for target ${t.id} at this URL,`));
  });
  if (issues.length > 0) throw invalidRequest(issues);
  return kept;
}

/**
 * Stores a pool (create or replace), sealing every credential; a credential sent back masked
 * keeps the stored one (see keepMaskedCredentials). Returns whether the pool was new.
 */
export async function putPool(env: Env & { UPSTREAM_ENCRYPTION_KEY?: string }, tenantId: string, name: string, body: PutPoolBody, audit?: AuditEntry): Promise<{ pool: StoredPool; created: boolean }> {
  const now = Date.now();
  const existing = await env.DB.prepare('SELECT created_at, config FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, name).first<{ created_at: number; config: string }>();
  const kept = keepMaskedCredentials(body.targets, existing ? (JSON.parse(existing.config) as StoredPool) : null, name);
  const limit = poolLimit(env);
  const targets: StoredTarget[] = await Promise.all(
    body.targets.map(async (t) => {
      if (t.apiKey === undefined) return t;
      const old = kept.get(t.id);
      // Sealed for this tenant, pool and target id: the same context, so it opens here as well.
      // A short credential stored before they were hidden drops its clear last four here.
      if (old) return { ...t, apiKey: old.apiKey, ...(showsLast4(old) && { apiKeyLast4: old.apiKeyLast4 }) };
      const sealed = await sealSecret(env.UPSTREAM_ENCRYPTION_KEY, t.apiKey, secretContext(tenantId, name, t.id));
      return { ...t, apiKey: sealed, ...(t.apiKey.length >= SHOWN_FROM_LENGTH && { apiKeyLast4: t.apiKey.slice(-4) }) };
    }),
  );
  const config = { ...body, targets, name, createdAt: iso(existing?.created_at ?? now), updatedAt: iso(now) };
  // Whether this request created the pool is the insert's to say, not the read above: two PUTs
  // of a new name both read nothing, and both answered 201. The update then writes the config
  // with the creation time of the row as it is (another PUT's, when that one created it).
  const insert = env.DB.prepare(INSERT_WITHIN_LIMIT).bind(tenantId, name, JSON.stringify(config), now, PROBE_RUN.tenantShare, PROBE_RUN.periodMs, limit);
  const update = env.DB.prepare(
    `UPDATE pools SET config = json_set(?, '$.createdAt', strftime('%Y-%m-%dT%H:%M:%S.', created_at / 1000, 'unixepoch') || printf('%03dZ', created_at % 1000)), updated_at = ?
     WHERE tenant_id = ? AND name = ? RETURNING created_at`,
  ).bind(JSON.stringify(config), now, tenantId, name);
  const [inserted, updated] = await env.DB.batch<{ created_at: number }>(audit ? [insert, update, auditStatement(env.DB, audit)] : [insert, update]);
  // Neither inserted nor there to update: the tenant held its limit, and the batch changed
  // nothing (the audit entry is written only after a change). The count is what it holds now.
  const row = updated?.results[0];
  if (!row) {
    const pools = await countTenantPools(env, tenantId);
    throw new ApiError('pool_limit_reached', `this tenant has ${pools} pools, the most it may hold (${limit}): delete one, or replace one by PUT to its name`, { limit, pools });
  }
  const createdAt = row.created_at;
  const pool: StoredPool = { ...config, createdAt: iso(createdAt) };
  cache.set(kvKey(tenantId, name), pool);
  await env.CACHE.put(kvKey(tenantId, name), JSON.stringify(pool), { expirationTtl: POOL_KV_TTL_S }).catch(() => undefined);
  return { pool, created: (inserted?.meta.changes ?? 0) > 0 };
}

/**
 * A new pool's row, only while its tenant holds fewer pools than the limit (?7): the count and
 * the insert are one statement, so PUTs of different new pools racing each other cannot all
 * pass a count read before one of them wrote (D1 runs one statement at a time). A replacement
 * is never refused: its name conflicts, and the update after it does the work. The first due
 * time spreads a tenant's new pools a run apart per `tenantShare` (?5) of the pools it held
 * before: its first 100 are due at once, the next 100 a run (?6) later, and so on, so a tenant
 * creating pools in bulk does not put them all ahead of everyone else's. (D1 binds a number as
 * a REAL: the cast keeps the division whole.)
 */
const INSERT_WITHIN_LIMIT = `INSERT INTO pools (tenant_id, name, config, created_at, updated_at, probe_due)
  SELECT ?1, ?2, ?3, ?4, ?4, ?4 + (held.n / CAST(?5 AS INTEGER)) * ?6 FROM (SELECT COUNT(*) AS n FROM pools WHERE tenant_id = ?1) AS held
  WHERE held.n < ?7
  ON CONFLICT (tenant_id, name) DO NOTHING`;

/** Pools a tenant may hold unless the operator sets `MAX_POOLS_PER_TENANT`. */
export const DEFAULT_POOL_LIMIT = 1_000;

const poolLimit = (env: Env): number => wholeNumberSetting(env.MAX_POOLS_PER_TENANT, 1, Number.MAX_SAFE_INTEGER) ?? DEFAULT_POOL_LIMIT;

/** A tenant's pool as stored (credentials sealed): isolate cache, then KV, then D1. */
export async function getPool(env: Env, tenantId: string, name: string): Promise<StoredPool | null> {
  const key = kvKey(tenantId, name);
  return cache.get(key, async () => {
    const cached = await env.CACHE.get<StoredPool>(key, 'json').catch(() => null);
    if (cached) return cached;
    const row = await env.DB.prepare('SELECT config FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, name).first<{ config: string }>();
    const pool = row ? (JSON.parse(row.config) as StoredPool) : null;
    if (pool) await env.CACHE.put(key, JSON.stringify(pool), { expirationTtl: POOL_KV_TTL_S }).catch(() => undefined);
    return pool;
  });
}

export const LIST_POOLS_QUERY = 'SELECT name, config FROM pools WHERE tenant_id = ? AND name > ? ORDER BY name LIMIT ?';

/**
 * A page of the tenant's pools in name order, after the name `after` (a page's last); `next` is
 * the last name of a full page that has more after it. The primary key (tenant_id, name) serves
 * both the search and the order.
 */
export async function listPools(env: Env, tenantId: string, limit = POOL_PAGE_MAX, after = ''): Promise<{ pools: StoredPool[]; next: string | null }> {
  // One row past the page says whether another page follows.
  const { results } = await env.DB.prepare(LIST_POOLS_QUERY).bind(tenantId, after, limit + 1).all<{ name: string; config: string }>();
  const rows = results.slice(0, limit);
  const last = rows.at(-1);
  return { pools: rows.map((r) => JSON.parse(r.config) as StoredPool), next: results.length > limit && last ? last.name : null };
}

/** Every pool of the tenant, a page at a time (`GET /v1/models` lists them all). */
export async function allPools(env: Env, tenantId: string): Promise<StoredPool[]> {
  const pools: StoredPool[] = [];
  let after: string | null = '';
  while (after !== null) {
    const page: { pools: StoredPool[]; next: string | null } = await listPools(env, tenantId, POOL_PAGE_MAX, after);
    pools.push(...page.pools);
    after = page.next;
  }
  return pools;
}

export async function deletePool(env: Env, tenantId: string, name: string, audit?: AuditEntry): Promise<boolean> {
  const remove = env.DB.prepare('DELETE FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, name);
  const [result] = await env.DB.batch(audit ? [remove, auditStatement(env.DB, audit)] : [remove]);
  if (!result) return false;
  cache.delete(kvKey(tenantId, name));
  await dropCached(env.CACHE, kvKey(tenantId, name), 'pool');
  return result.meta.changes > 0;
}

/** The pool's targets with their credentials opened, for calling them. */
export async function openTargets(env: Env & { UPSTREAM_ENCRYPTION_KEY?: string }, tenantId: string, pool: StoredPool): Promise<PutPoolBody['targets']> {
  return Promise.all(
    pool.targets.map(async (t) => {
      const { apiKeyLast4: _last4, ...target } = t as StoredTarget;
      if (target.apiKey === undefined) return target;
      return { ...target, apiKey: await openSecret(env.UPSTREAM_ENCRYPTION_KEY, target.apiKey, secretContext(tenantId, pool.name, t.id), {
        what: `pool ${JSON.stringify(pool.name)} target ${JSON.stringify(t.id)}`,
        again: 'PUT the pool again with its credential',
      }) };
    }),
  );
}

/** The API view: credentials masked as "…last4", or "…" when short. */
export function poolView(pool: StoredPool): PoolView {
  return {
    ...pool,
    targets: pool.targets.map((t) => {
      const { apiKeyLast4: _last4, apiKey, ...rest } = t as StoredTarget;
      return apiKey === undefined ? rest : { ...rest, apiKey: masked(t as StoredTarget) };
    }),
  };
}
