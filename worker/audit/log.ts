import type { Context } from 'hono';
import type { AppEnv, Env } from '../env';
import { newId } from '../lib/ids';
import type { AuditAction } from '../schemas/admin';

export type { AuditAction };

export interface AuditEntry {
  /** "operator" (the admin token) or the id of the API key that acted. */
  actor: string;
  tenantId: string | null;
  action: AuditAction;
  target: string | null;
  requestId: string;
  /** What changed, never a secret. */
  details?: Record<string, unknown>;
}

/** The entry for the request in `c`: its actor is the operator on /v1/admin, else the key. */
export function auditEntry(c: Context<AppEnv>, action: AuditAction, target: string | null, extra: { tenantId?: string; details?: Record<string, unknown> } = {}): AuditEntry {
  const principal = c.get('principal');
  return {
    actor: principal ? principal.keyId : 'operator',
    tenantId: extra.tenantId ?? principal?.tenantId ?? null,
    action,
    target,
    requestId: c.get('requestId'),
    ...(extra.details && { details: extra.details }),
  };
}

/**
 * The INSERT of an entry, to run in the same D1 batch as the change it records, right after
 * the statement making it: it writes only if that statement changed a row (`changes()`), so
 * a no-op (an unknown id, another tenant's hook) leaves no entry.
 */
export function auditStatement(db: D1Database | D1DatabaseSession, entry: AuditEntry): D1PreparedStatement {
  return db
    .prepare('INSERT INTO audit_log (id, at, actor, tenant_id, action, target, request_id, details) SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE changes() > 0')
    .bind(newId('au'), Date.now(), entry.actor, entry.tenantId, entry.action, entry.target, entry.requestId, entry.details ? JSON.stringify(entry.details) : null);
}

/**
 * Records changes already made elsewhere (Durable Objects), in one D1 batch. The changes stand
 * even if this write fails, so a failure is logged rather than turned into an error for a
 * request that did what it was asked.
 */
export async function recordAudit(env: Env, ...entries: AuditEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const insert = env.DB.prepare('INSERT INTO audit_log (id, at, actor, tenant_id, action, target, request_id, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
  const at = Date.now();
  try {
    await env.DB.batch(entries.map((e) => insert.bind(newId('au'), at, e.actor, e.tenantId, e.action, e.target, e.requestId, e.details ? JSON.stringify(e.details) : null)));
  } catch (error) {
    for (const entry of entries) console.error(JSON.stringify({ level: 'error', msg: 'audit write failed', ...entry, error: String(error) }));
  }
}

export interface AuditRow extends Record<string, unknown> {
  id: string;
  at: number;
  actor: string;
  tenant_id: string | null;
  action: string;
  target: string | null;
  request_id: string | null;
  details: string | null;
}

/** Entries newest first, optionally for one tenant and one action, after a cursor (an id). */
export async function listAudit(env: Env, q: { tenantId?: string; action?: AuditAction; limit: number; before?: string }): Promise<AuditRow[]> {
  const where: string[] = [];
  const params: (string | number)[] = [];
  if (q.tenantId !== undefined) {
    where.push('tenant_id = ?');
    params.push(q.tenantId);
  }
  if (q.action !== undefined) {
    where.push('action = ?');
    params.push(q.action);
  }
  if (q.before !== undefined) {
    where.push('id < ?');
    params.push(q.before);
  }
  const { results } = await env.DB.prepare(`SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ?`)
    .bind(...params, q.limit + 1)
    .all<AuditRow>();
  return results;
}
