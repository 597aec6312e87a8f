import { OpenAPIHono, createRoute, type z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { ApiError, invalidRequest } from '../errors';
import { auditEntry, auditStatement } from '../audit/log';
import { generateKey, getKeyRow, parseLimits, revokeKey, updateKey, type KeyRow } from '../auth/api-keys';
import { forgetKeyLimits } from '../hooks/store';
import { decodeCursor, encodeCursor } from '../lib/cursor';
import { atPrimary } from '../lib/d1-primary';
import { scopedCursors } from '../lib/scoped-cursor';
import { newId } from '../lib/ids';
import { mergePatch } from '../lib/json-merge-patch';
import { zodIssues, type Issue } from '../lib/validation-issues';
import { requireTenant, tenantLookup } from '../lib/tenant-lookup';
import { iso } from '../lib/time';
import { CreateKeyBody, CreateTenantBody, CreatedKey, KeyListQuery, KeyParams, KeySummary, Tenant, TenantListQuery, TenantParams, UpdateKeyBody } from '../schemas/admin';
import { idleLimits, KeyLimits } from '../schemas/limits';
import { page } from '../schemas/common';
import { adminErrors, errorResponse, json, jsonBody, security } from './openapi';

const keySummary = (r: KeyRow): KeySummary => ({
  id: r.id,
  tenantId: r.tenant_id,
  prefix: r.prefix,
  name: r.name,
  limits: parseLimits(r.limits),
  createdAt: iso(r.created_at),
  revokedAt: r.revoked_at === null ? null : iso(r.revoked_at),
});
type KeySummary = z.infer<typeof KeySummary>;

/**
 * A key list's cursors name the tenant (worker/lib/scoped-cursor.ts): the bare `<createdAt>-<id>`
 * was a point in time in every tenant's list (another tenant's page answered empty, or skipped
 * keys), and the tenant list, whose ids it matched, read it as a tenant id (page one again).
 */
const keyCursors = scopedCursors('\\d{1,15}-[a-zA-Z0-9_-]{1,80}');
const keysOf = (tenantId: string) => `keys/${tenantId}`;

/** Where a page of keys starts: after the key a cursor names by creation time and id. */
async function keyCursor(tenantId: string, cursor: string | undefined): Promise<{ createdAt: number; id: string }> {
  const decoded = await keyCursors.decode(keysOf(tenantId), cursor);
  if (decoded === undefined) return { createdAt: -1, id: '' };
  const at = decoded.indexOf('-');
  return { createdAt: Number(decoded.slice(0, at)), id: decoded.slice(at + 1) };
}

/** How often a key PATCH reads and merges again when another change landed first. */
const PATCH_ATTEMPTS = 5;

interface TenantRow { id: string; name: string | null; created_at: number }
const tenant = (r: TenantRow): z.infer<typeof Tenant> => ({ id: r.id, name: r.name, createdAt: iso(r.created_at) });

function refuseLimits(details: Issue[], total = details.length): never {
  throw invalidRequest(details, total);
}

/** A new key's limits: none for an empty object, refused when they would enforce nothing. */
function createdLimits(limits: KeyLimits | undefined): KeyLimits | null {
  if (!limits || Object.keys(limits).length === 0) return null;
  const idle = idleLimits(limits);
  if (idle.length > 0) refuseLimits(idle);
  return limits;
}

/**
 * Limits after a merge patch, validated as a whole (a budget must keep its period, shards need
 * a rate window). A PATCH that leaves them alone keeps what is stored, as it was accepted then.
 */
function patchedLimits(current: KeyLimits | null, patch: unknown): KeyLimits | null {
  if (patch === null) return null;
  if (patch === undefined) return current;
  const parsed = KeyLimits.safeParse(mergePatch(current ?? {}, patch));
  if (!parsed.success) refuseLimits(zodIssues(parsed.error).map((i) => ({ ...i, path: ['limits', ...i.path] })), parsed.error.issues.length);
  if (Object.keys(parsed.data).length === 0) return null;
  const idle = idleLimits(parsed.data);
  if (idle.length > 0) refuseLimits(idle);
  return parsed.data;
}

export const admin = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/tenants',
      tags: ['admin'],
      summary: 'Create a tenant (operator token)',
      security,
      request: jsonBody(CreateTenantBody),
      responses: { 201: json(Tenant, 'the tenant'), 409: errorResponse('conflict: the id is taken'), ...adminErrors },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const id = body.id ?? newId('tn');
      const now = Date.now();
      const [result] = await c.env.DB.batch([
        c.env.DB.prepare('INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING').bind(id, body.name ?? null, now),
        auditStatement(c.env.DB, auditEntry(c, 'tenant.create', id, { tenantId: id, details: { name: body.name ?? null } })),
      ]);
      if (!result || result.meta.changes === 0) throw new ApiError('conflict', `tenant ${id} already exists`);
      return c.json({ id, name: body.name ?? null, createdAt: iso(now) }, 201);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/tenants',
      tags: ['admin'],
      summary: 'List tenants in id order, a page at a time (operator token)',
      security,
      request: { query: TenantListQuery },
      responses: { 200: json(page(Tenant), 'tenants'), ...adminErrors },
    }),
    async (c) => {
      const q = c.req.valid('query');
      const after = decodeCursor(q.cursor) ?? '';
      // One row past the page says whether another page follows; the primary key orders it.
      const { results } = await c.env.DB.prepare('SELECT id, name, created_at FROM tenants WHERE id > ? ORDER BY id LIMIT ?').bind(after, q.limit + 1).all<TenantRow>();
      const data = results.slice(0, q.limit).map(tenant);
      const last = data.at(-1);
      return c.json({ data, nextCursor: results.length > q.limit && last ? encodeCursor(last.id) : null }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/tenants/{tenant}',
      tags: ['admin'],
      summary: 'Read a tenant (operator token)',
      security,
      request: { params: TenantParams },
      responses: { 200: json(Tenant, 'the tenant'), 404: errorResponse('not_found: no such tenant'), ...adminErrors },
    }),
    async (c) => {
      const { tenant: id } = c.req.valid('param');
      const row = await c.env.DB.prepare('SELECT id, name, created_at FROM tenants WHERE id = ?').bind(id).first<TenantRow>();
      if (!row) throw new ApiError('not_found', `tenant ${id} not found`);
      return c.json(tenant(row), 200);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/tenants/{tenant}/keys',
      tags: ['admin'],
      summary: 'Create an API key for a tenant, optionally with rate limits and budgets; the key is shown only in this response',
      security,
      request: { params: TenantParams, ...jsonBody(CreateKeyBody) },
      responses: { 201: json(CreatedKey, 'the new key'), 404: errorResponse('not_found: no such tenant'), ...adminErrors },
    }),
    async (c) => {
      const { tenant } = c.req.valid('param');
      const body = c.req.valid('json');
      const limits = createdLimits(body.limits);
      // At the primary: a replica behind it would call a tenant made a moment ago unknown.
      requireTenant(await tenantLookup(atPrimary(c.env.DB), tenant).first() !== null, tenant);
      const key = await generateKey();
      const now = Date.now();
      await c.env.DB.batch([
        c.env.DB.prepare('INSERT INTO api_keys (id, tenant_id, hash, prefix, name, created_at, limits) VALUES (?, ?, ?, ?, ?, ?, ?)').bind(
          key.id, tenant, key.hash, key.prefix, body.name ?? null, now, limits ? JSON.stringify(limits) : null,
        ),
        auditStatement(c.env.DB, auditEntry(c, 'key.create', key.id, { tenantId: tenant, details: { name: body.name ?? null, prefix: key.prefix, limits } })),
      ]);
      // The only answer that holds the secret: no cache on the way (a proxy's, a browser's) keeps it.
      return c.json({ id: key.id, tenantId: tenant, key: key.key, prefix: key.prefix, name: body.name ?? null, limits, createdAt: iso(now) }, 201, { 'cache-control': 'no-store' });
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/tenants/{tenant}/keys',
      tags: ['admin'],
      summary: "List a tenant's keys and their limits (never the secrets), oldest first, a page at a time",
      security,
      request: { params: TenantParams, query: KeyListQuery },
      responses: { 200: json(page(KeySummary), 'the keys'), 404: errorResponse('not_found: no such tenant'), ...adminErrors },
    }),
    async (c) => {
      const { tenant } = c.req.valid('param');
      const q = c.req.valid('query');
      const after = await keyCursor(tenant, q.cursor);
      // Keyset on (created_at, id), one row past the page to say whether another follows.
      const [exists, { results }] = await c.env.DB.batch([
        tenantLookup(c.env.DB, tenant),
        c.env.DB.prepare('SELECT id, tenant_id, prefix, name, created_at, revoked_at, limits FROM api_keys WHERE tenant_id = ? AND (created_at > ? OR (created_at = ? AND id > ?)) ORDER BY created_at, id LIMIT ?').bind(
          tenant, after.createdAt, after.createdAt, after.id, q.limit + 1,
        ),
      ]) as [D1Result, D1Result<KeyRow>];
      requireTenant(exists?.results.length !== 0, tenant);
      const rows = results.slice(0, q.limit);
      const last = rows.at(-1);
      return c.json({ data: rows.map(keySummary), nextCursor: results.length > q.limit && last ? await keyCursors.encode(keysOf(tenant), `${last.created_at}-${last.id}`) : null }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'patch',
      path: '/v1/admin/keys/{keyId}',
      tags: ['admin'],
      summary: "Change a key's name or limits (limits: JSON Merge Patch; null removes them). At once where changed, everywhere within 90 s",
      security,
      request: { params: KeyParams, ...jsonBody(UpdateKeyBody) },
      responses: { 200: json(KeySummary, 'the key'), 404: errorResponse('not_found: no such key'), 409: { ...errorResponse('conflict: the key is revoked (details.keyId, details.revokedAt; nothing is written: create a new key), or it kept changing under concurrent updates (nothing of this PATCH applied; retry after Retry-After)'), headers: { 'Retry-After': { schema: { type: 'integer' as const }, description: 'the key kept changing: seconds to wait before retrying (none on a revoked key, which a retry cannot change)' } } }, ...adminErrors },
    }),
    async (c) => {
      const { keyId } = c.req.valid('param');
      const body = c.req.valid('json');
      // The patch merges into the key as read; a concurrent change in between is read again and merged into.
      for (let attempt = 0; attempt < PATCH_ATTEMPTS; attempt++) {
        const key = await getKeyRow(c.env, keyId);
        if (!key) throw new ApiError('not_found', `key ${keyId} not found`);
        // A revoked key serves no request again: a new name or limits would only mislead (the PATCH answered 200).
        if (key.revoked_at !== null) throw new ApiError('conflict', `key ${keyId} is revoked: a revoked key cannot be renamed or given limits (create a new key)`, { keyId, revokedAt: iso(key.revoked_at) });
        const limits = patchedLimits(parseLimits(key.limits), body.limits);
        const name = body.name === undefined ? key.name : body.name;
        const updated = await updateKey(c.env, key, { name, limits }, auditEntry(c, 'key.update', keyId, { tenantId: key.tenant_id, details: { ...(body.name !== undefined && { name }), ...(body.limits !== undefined && { limits }) } }));
        if (!updated) continue;
        forgetKeyLimits(keyId);
        return c.json(keySummary(updated), 200);
      }
      throw new ApiError('conflict', `key ${keyId} kept changing while this update applied; nothing was changed by it, retry`, undefined, { 'retry-after': '1' });
    },
  )
  .openapi(
    createRoute({
      method: 'delete',
      path: '/v1/admin/keys/{keyId}',
      tags: ['admin'],
      summary: 'Revoke an API key (effective everywhere within 90 s, at once where it was revoked)',
      security,
      request: { params: KeyParams },
      responses: { 204: { description: 'revoked' }, 404: errorResponse('not_found: no such key'), ...adminErrors },
    }),
    async (c) => {
      const { keyId } = c.req.valid('param');
      const key = await getKeyRow(c.env, keyId);
      if (!key || !(await revokeKey(c.env, keyId, auditEntry(c, 'key.revoke', keyId, { tenantId: key.tenant_id })))) throw new ApiError('not_found', `key ${keyId} not found`);
      return c.body(null, 204);
    },
  );
