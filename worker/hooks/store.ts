import { auditStatement, type AuditEntry } from '../audit/log';
import type { Env } from '../env';
import { ChangeLog } from '../lib/change-log';
import { IsolateCache } from '../lib/isolate-cache';
import { iso } from '../lib/time';
import { openSecret, sealSecret } from '../pools/secrets';
import type { Hook, HookScheme, PutHookBody } from '../schemas/hook';
import type { KeyLimits } from '../schemas/limits';
import { parseLimits } from '../auth/api-keys';

interface HookRow {
  id: string;
  tenant_id: string;
  agent_id: string;
  intent: string;
  scheme: HookScheme;
  secret: string;
  created_at: number;
  updated_at: number;
  key_id: string | null;
}

export interface ResolvedHook {
  tenantId: string;
  agentId: string;
  intent: string;
  scheme: HookScheme;
  secret: string;
  /** The key that registered the hook, whose limits its deliveries count against (null: none). */
  keyId: string | null;
  /** That key's limits now (revoked or not: revoking a key must not lift them), or null. */
  limits: KeyLimits | null;
}

const CACHE_TTL_MS = 30_000;
/** Hooks found (never a miss: see `unknown`). */
const cache = new IsolateCache<ResolvedHook | null>(CACHE_TTL_MS);
/**
 * Ids found to have no hook, kept apart and fewer: in the hooks' cache, a sender (or a prober)
 * posting to many unknown ids filled it to its bound of 10,000, which empties it, so every
 * real hook was read from D1 again. A new hook created elsewhere is found within the same 30 s.
 */
const unknown = new IsolateCache<true>(CACHE_TTL_MS, { maxEntries: 1_000 });
/**
 * Hooks (`hook/<id>`) and keys' limits (`key/<id>`) changed in this isolate: a lookup that read
 * just before such a change lands after it, and caching what it read would put the old hook
 * (deleted, or with its old secret, agent or limits) back for the cache's 30 s. It answers its
 * own delivery only (read before the change), as a key's lookup does (`auth/api-keys.ts`).
 */
const changes = new ChangeLog();
const context = (id: string) => `hook/${id}`;

/** What a hook's public view selects, and from where: the hook joined to its key's row, to say whether that key is revoked now. */
export const HOOK_VIEW_FROM =
  'hooks.id, hooks.agent_id, hooks.intent, hooks.scheme, hooks.created_at, hooks.updated_at, hooks.key_id, api_keys.id AS key_found, api_keys.revoked_at AS key_revoked_at ' +
  'FROM hooks LEFT JOIN api_keys ON api_keys.id = hooks.key_id AND api_keys.tenant_id = hooks.tenant_id';

export type HookViewRow = Pick<HookRow, 'id' | 'agent_id' | 'intent' | 'scheme' | 'created_at' | 'updated_at' | 'key_id'> & { key_found: string | null; key_revoked_at: number | null };

export const hookView = (row: HookViewRow): Hook => ({
  id: row.id,
  agentId: row.agent_id,
  intent: row.intent,
  scheme: row.scheme,
  url: `/v1/hooks/${row.id}`,
  createdAt: iso(row.created_at),
  updatedAt: iso(row.updated_at),
  keyId: row.key_id,
  // A key the join cannot find (its row is gone) authenticates nothing: as good as revoked.
  keyRevoked: row.key_id === null ? null : row.key_found === null || row.key_revoked_at !== null,
});

/**
 * Creates or replaces a tenant's hook, recording `keyId`, the key doing it; null when the id
 * belongs to another tenant.
 */
export async function putHook(env: Env, tenantId: string, keyId: string, id: string, body: PutHookBody, audit?: AuditEntry): Promise<{ hook: Hook; created: boolean } | null> {
  const now = Date.now();
  const secret = await sealSecret(env.UPSTREAM_ENCRYPTION_KEY, body.secret, context(id));
  const existing = await env.DB.prepare('SELECT tenant_id, created_at FROM hooks WHERE id = ?').bind(id).first<{ tenant_id: string; created_at: number }>();
  if (existing && existing.tenant_id !== tenantId) return null;
  const createdAt = existing?.created_at ?? now;
  const write = env.DB.prepare(
    `INSERT INTO hooks (id, tenant_id, agent_id, intent, scheme, secret, created_at, updated_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (id) DO UPDATE SET agent_id = excluded.agent_id, intent = excluded.intent, scheme = excluded.scheme,
       secret = excluded.secret, updated_at = excluded.updated_at, key_id = excluded.key_id WHERE hooks.tenant_id = excluded.tenant_id`,
  ).bind(id, tenantId, body.agentId, body.intent, body.scheme, secret, createdAt, now, keyId);
  const [result] = await env.DB.batch(audit ? [write, auditStatement(env.DB, audit)] : [write]);
  if (!result || result.meta.changes === 0) return null;
  forgetHook(id);
  return { hook: hookView({ id, agent_id: body.agentId, intent: body.intent, scheme: body.scheme, created_at: createdAt, updated_at: now, key_id: keyId, key_found: keyId, key_revoked_at: null }), created: !existing };
}

export async function getHook(env: Env, tenantId: string, id: string): Promise<Hook | null> {
  const row = await env.DB.prepare(`SELECT ${HOOK_VIEW_FROM} WHERE hooks.id = ? AND hooks.tenant_id = ?`).bind(id, tenantId).first<HookViewRow>();
  return row ? hookView(row) : null;
}

export async function deleteHook(env: Env, tenantId: string, id: string, audit?: AuditEntry): Promise<boolean> {
  const remove = env.DB.prepare('DELETE FROM hooks WHERE id = ? AND tenant_id = ?').bind(id, tenantId);
  const [result] = await env.DB.batch(audit ? [remove, auditStatement(env.DB, audit)] : [remove]);
  if (!result) return false;
  forgetHook(id);
  return result.meta.changes > 0;
}

/**
 * The hook a sender calls, with its secret opened and its key's limits, or null for an id
 * without one (isolate caches 30 s, then D1: a changed limit reaches the hook's deliveries at
 * once in the isolate that changed it, see `forgetKeyLimits`, and everywhere else within 30 s).
 */
export async function resolveHook(env: Env, id: string): Promise<ResolvedHook | null> {
  if (unknown.peek(id)) return null;
  const mark = changes.mark();
  const current = (hook: ResolvedHook | null) => !changes.changedSince(`hook/${id}`, mark) && !(hook?.keyId && changes.changedSince(`key/${hook.keyId}`, mark));
  const hook = await cache.get(id, async () => {
    const row = await env.DB.prepare('SELECT hooks.*, api_keys.limits AS key_limits FROM hooks LEFT JOIN api_keys ON api_keys.id = hooks.key_id WHERE hooks.id = ?')
      .bind(id)
      .first<HookRow & { key_limits: string | null }>();
    if (!row) return null;
    const secret = await openSecret(env.UPSTREAM_ENCRYPTION_KEY, row.secret, context(id), { what: `hook ${JSON.stringify(id)}`, again: 'PUT the hook again with its secret' });
    return { tenantId: row.tenant_id, agentId: row.agent_id, intent: row.intent, scheme: row.scheme, secret, keyId: row.key_id, limits: parseLimits(row.key_limits) };
  }, (found) => found !== null && current(found));
  // A miss that a PUT here overtook is not remembered, as a hook read before a change is not cached.
  if (hook === null && current(null)) unknown.set(id, true);
  return hook;
}

/** Drops this isolate's cached hook `id`, and keeps a lookup reading it now from caching it. */
function forgetHook(id: string): void {
  changes.changed(`hook/${id}`);
  cache.delete(id);
  unknown.delete(id);
}

/**
 * Drops this isolate's cached hooks registered by `keyId`, whose limits were just changed here
 * (PATCH /v1/admin/keys/:keyId), so their next delivery reads the new limits, as the key's own
 * requests do once its cached lookup is dropped. Other isolates read them within 30 s.
 */
export function forgetKeyLimits(keyId: string): void {
  changes.changed(`key/${keyId}`);
  cache.deleteWhere((hook) => hook?.keyId === keyId);
}
