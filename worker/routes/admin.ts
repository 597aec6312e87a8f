import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { generateKey, revokeKey } from '../auth/api-keys';
import { newId } from '../lib/ids';
import { iso } from '../lib/time';
import { CreateKeyBody, CreateTenantBody, CreatedKey, KeyParams, Tenant, TenantParams } from '../schemas/admin';
import { commonErrors, errorResponse, json, jsonBody, security } from './openapi';

const KeySummary = z
  .object({ id: z.string(), prefix: z.string(), name: z.string().nullable(), createdAt: z.string(), revokedAt: z.string().nullable() })
  .openapi('KeySummary');

export const admin = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/tenants',
      tags: ['admin'],
      summary: 'Create a tenant (operator token)',
      security,
      request: jsonBody(CreateTenantBody),
      responses: { 201: json(Tenant, 'the tenant'), 409: errorResponse('conflict: the id is taken'), ...commonErrors },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const id = body.id ?? newId('tn');
      const now = Date.now();
      const result = await c.env.DB.prepare('INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING')
        .bind(id, body.name ?? null, now)
        .run();
      if (result.meta.changes === 0) throw new ApiError('conflict', `tenant ${id} already exists`);
      return c.json({ id, name: body.name ?? null, createdAt: iso(now) }, 201);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/tenants/{tenant}/keys',
      tags: ['admin'],
      summary: 'Create an API key for a tenant; the key is shown only in this response',
      security,
      request: { params: TenantParams, ...jsonBody(CreateKeyBody) },
      responses: { 201: json(CreatedKey, 'the new key'), 404: errorResponse('not_found: no such tenant'), ...commonErrors },
    }),
    async (c) => {
      const { tenant } = c.req.valid('param');
      const body = c.req.valid('json');
      const exists = await c.env.DB.prepare('SELECT 1 AS one FROM tenants WHERE id = ?').bind(tenant).first();
      if (!exists) throw new ApiError('not_found', `tenant ${tenant} not found`);
      const key = await generateKey();
      const now = Date.now();
      await c.env.DB.prepare('INSERT INTO api_keys (id, tenant_id, hash, prefix, name, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .bind(key.id, tenant, key.hash, key.prefix, body.name ?? null, now)
        .run();
      return c.json({ id: key.id, tenantId: tenant, key: key.key, prefix: key.prefix, name: body.name ?? null, createdAt: iso(now) }, 201);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/tenants/{tenant}/keys',
      tags: ['admin'],
      summary: "List a tenant's keys (never the secrets)",
      security,
      request: { params: TenantParams },
      responses: { 200: json(z.object({ data: z.array(KeySummary) }), 'the keys'), ...commonErrors },
    }),
    async (c) => {
      const { tenant } = c.req.valid('param');
      const { results } = await c.env.DB.prepare('SELECT id, prefix, name, created_at, revoked_at FROM api_keys WHERE tenant_id = ? ORDER BY created_at LIMIT 1000')
        .bind(tenant)
        .all<{ id: string; prefix: string; name: string | null; created_at: number; revoked_at: number | null }>();
      const data = results.map((r) => ({ id: r.id, prefix: r.prefix, name: r.name, createdAt: iso(r.created_at), revokedAt: r.revoked_at === null ? null : iso(r.revoked_at) }));
      return c.json({ data }, 200);
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
      responses: { 204: { description: 'revoked' }, 404: errorResponse('not_found: no such key'), ...commonErrors },
    }),
    async (c) => {
      const { keyId } = c.req.valid('param');
      if (!(await revokeKey(c.env, keyId))) throw new ApiError('not_found', `key ${keyId} not found`);
      return c.body(null, 204);
    },
  );
