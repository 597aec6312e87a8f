import { OpenAPIHono, createRoute, type z } from '@hono/zod-openapi';
import type { AppEnv, Env } from '../env';
import { listAudit, type AuditRow } from '../audit/log';
import { decodeAuditCursor, encodeAuditCursor } from '../audit/cursor';
import { requireTenant, tenantLookup } from '../lib/tenant-lookup';
import { iso } from '../lib/time';
import { AuditQuery, AuditRecord, type AuditAction } from '../schemas/admin';
import { page } from '../schemas/common';
import { adminErrors, commonErrors, errorResponse, json, security } from './openapi';

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

/** A page of entries newest first, its cursor naming this list (its tenant and action). */
async function auditPage(env: Env, q: { tenantId?: string; action?: AuditAction; limit: number; cursor?: string }) {
  const list = { ...(q.tenantId !== undefined && { tenantId: q.tenantId }), ...(q.action !== undefined && { action: q.action }) };
  const before = await decodeAuditCursor(list, q.cursor);
  const rows = await listAudit(env, { ...list, ...(before !== undefined && { before }), limit: q.limit });
  const data = rows.slice(0, q.limit).map(record);
  const last = data.at(-1);
  return { data, nextCursor: rows.length > q.limit && last ? await encodeAuditCursor(list, last.id) : null };
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
      responses: { 200: json(page(AuditRecord), 'audit entries'), 404: errorResponse('not_found: no such tenant'), ...adminErrors },
    }),
    async (c) => {
      const { tenant, ...q } = c.req.valid('query');
      // An unknown tenant (a typo) is a 404, as on every operator route, not an empty log.
      const [exists, listed] = await Promise.all([tenant === undefined ? true : tenantLookup(c.env.DB, tenant).first(), auditPage(c.env, { ...q, ...(tenant !== undefined && { tenantId: tenant }) })]);
      if (tenant !== undefined) requireTenant(exists !== null, tenant);
      return c.json(listed, 200);
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
      return c.json(await auditPage(c.env, { ...c.req.valid('query'), tenantId: c.get('principal').tenantId }), 200);
    },
  );
