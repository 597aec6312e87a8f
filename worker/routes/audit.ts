import { OpenAPIHono, createRoute, type z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { listAudit, type AuditRow } from '../audit/log';
import { decodeCursor, encodeCursor, idsOf } from '../lib/cursor';
import { iso } from '../lib/time';
import { AuditQuery, AuditRecord } from '../schemas/admin';
import { page } from '../schemas/common';
import { adminErrors, commonErrors, json, security } from './openapi';

/** What this list's cursors hold: ids of one kind (`au_…`). */
const AUDIT_IDS = idsOf('au');

const record = (r: AuditRow): z.infer<typeof AuditRecord> => ({
  id: r.id,
  at: iso(r.at),
  actor: r.actor,
  tenantId: r.tenant_id,
  action: r.action,
  target: r.target,
  requestId: r.request_id,
  details: r.details === null ? null : (JSON.parse(r.details) as Record<string, unknown>),
});

function answer(rows: AuditRow[], limit: number) {
  const data = rows.slice(0, limit).map(record);
  const last = data.at(-1);
  return { data, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : null };
}

export const audit = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/audit',
      tags: ['admin'],
      summary: 'The audit log, newest first: who did what, when, with which request (operator token)',
      security,
      request: { query: AuditQuery },
      responses: { 200: json(page(AuditRecord), 'audit entries'), ...adminErrors },
    }),
    async (c) => {
      const q = c.req.valid('query');
      const before = decodeCursor(q.cursor, AUDIT_IDS);
      const rows = await listAudit(c.env, { ...(q.tenant !== undefined && { tenantId: q.tenant }), ...(q.action !== undefined && { action: q.action }), ...(before !== undefined && { before }), limit: q.limit });
      return c.json(answer(rows, q.limit), 200);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/audit',
      tags: ['audit'],
      summary: "The caller's tenant's audit log, newest first",
      security,
      request: { query: AuditQuery.omit({ tenant: true }) },
      responses: { 200: json(page(AuditRecord), 'audit entries'), ...commonErrors },
    }),
    async (c) => {
      const q = c.req.valid('query');
      const before = decodeCursor(q.cursor, AUDIT_IDS);
      const rows = await listAudit(c.env, { tenantId: c.get('principal').tenantId, ...(q.action !== undefined && { action: q.action }), ...(before !== undefined && { before }), limit: q.limit });
      return c.json(answer(rows, q.limit), 200);
    },
  );
