import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { auditEntry } from '../audit/log';
import { listHooks } from '../hooks/list';
import { deleteHook } from '../hooks/store';
import { decodeHookCursor, encodeHookCursor } from '../lib/config-cursors';
import { requireTenant, tenantLookup } from '../lib/tenant-lookup';
import { TenantParams } from '../schemas/admin';
import { page } from '../schemas/common';
import { Hook, HookId, HookListQuery } from '../schemas/hook';
import { adminErrors, errorResponse, json, security } from './openapi';

const HookParams = TenantParams.extend({ id: HookId });

/**
 * The operator's view of a tenant's incoming hooks, and their removal: a hook outlives the key
 * that registered it (README, "Security notes"), so after a leaked key is revoked the operator
 * finds the hooks it made and deletes them without needing a key of the tenant.
 */
export const adminHooks = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/tenants/{tenant}/hooks',
      tags: ['admin'],
      summary: "A tenant's incoming webhooks, as GET /v1/hooks lists them (operator token)",
      security,
      request: { params: TenantParams, query: HookListQuery },
      responses: { 200: json(page(Hook), 'a page of hooks'), 404: errorResponse('not_found: no such tenant'), ...adminErrors },
    }),
    async (c) => {
      const { tenant } = c.req.valid('param');
      const { limit, cursor, agentId } = c.req.valid('query');
      const after = (await decodeHookCursor(tenant, agentId, cursor)) ?? '';
      const [exists, listed] = await Promise.all([tenantLookup(c.env.DB, tenant).first(), listHooks(c.env, tenant, { limit, after, agentId })]);
      requireTenant(exists !== null, tenant);
      return c.json({ data: listed.hooks, nextCursor: listed.next === null ? null : await encodeHookCursor(tenant, agentId, listed.next) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'delete',
      path: '/v1/admin/tenants/{tenant}/hooks/{id}',
      tags: ['admin'],
      summary: "Remove a tenant's incoming webhook, as DELETE /v1/hooks/{id} does (operator token)",
      security,
      request: { params: HookParams },
      responses: { 204: { description: 'deleted' }, 404: errorResponse('not_found: the tenant has no such hook'), ...adminErrors },
    }),
    async (c) => {
      const { tenant, id } = c.req.valid('param');
      if (!(await deleteHook(c.env, tenant, id, auditEntry(c, 'hook.delete', id, { tenantId: tenant })))) throw new ApiError('not_found', 'hook not found');
      return c.body(null, 204);
    },
  );
