import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { auditEntry, recordAudit } from '../audit/log';
import { decodeDeliveryCursor, encodeDeliveryCursor } from '../agents/list-cursor';
import { AgentIdParams } from '../schemas/common';
import { CreateWebhookBody, CreatedWebhook, Delivery, ListDeliveriesQuery, Webhook } from '../schemas/webhook';
import { checkOutboundUrl, outboundPolicy } from '../upstream/outbound-guard';
import { refuseUnverified } from '../upstream/unverified';
import { onAgent } from './executions';
import { commonErrors, errorResponse, json, jsonBody, security } from './openapi';

const ChildId = z.string().regex(/^[a-zA-Z0-9_-]{1,80}$/);

export const webhooks = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/agents/{id}/webhooks',
      tags: ['webhooks'],
      summary: "Register an endpoint for the agent's events, signed per Standard Webhooks",
      security,
      request: { params: AgentIdParams, ...jsonBody(CreateWebhookBody) },
      responses: {
        201: json(CreatedWebhook, 'the webhook, with its secret (shown only here)'),
        404: errorResponse('not_found'),
        409: errorResponse('webhook_limit_reached: the agent has the 20 webhooks it may have (details.limit, details.webhooks)'),
        ...commonErrors,
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const body = c.req.valid('json');
      const check = await checkOutboundUrl(body.url, outboundPolicy(c.env));
      refuseUnverified([check]);
      if (!check.ok) throw new ApiError('invalid_request', `webhook URL refused: ${check.reason}`, [{ path: ['url'], message: check.reason, code: 'outbound_refused' }]);
      const webhook = await onAgent(c, id, (stub) => stub.createWebhook(body));
      await recordAudit(c.env, auditEntry(c, 'webhook.create', webhook.id, { details: { agentId: id, host: new URL(webhook.url).host } }));
      return c.json(webhook, 201);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}/webhooks',
      tags: ['webhooks'],
      summary: "The agent's webhooks (without secrets)",
      security,
      request: { params: AgentIdParams },
      responses: { 200: json(z.object({ data: z.array(Webhook) }), 'the webhooks'), 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => c.json({ data: await onAgent(c, c.req.valid('param').id, (stub) => stub.listWebhooks(), { retry: true }) }, 200),
  )
  .openapi(
    createRoute({
      method: 'delete',
      path: '/v1/agents/{id}/webhooks/{wid}',
      tags: ['webhooks'],
      summary: 'Remove a webhook (its pending deliveries die)',
      security,
      request: { params: AgentIdParams.extend({ wid: ChildId }) },
      responses: { 204: { description: 'deleted' }, 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const { id, wid } = c.req.valid('param');
      // A retry follows a platform error that may have come after the object deleted the
      // webhook: a 404 then would name as unknown the webhook this request removed.
      let deliveries = 0;
      await onAgent(c, id, (stub) => stub.deleteWebhook(wid, deliveries++ > 0), { retry: true });
      await recordAudit(c.env, auditEntry(c, 'webhook.delete', wid, { details: { agentId: id } }));
      return c.body(null, 204);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}/deliveries',
      tags: ['webhooks'],
      summary: 'Webhook deliveries, newest first: pending (with the next attempt), delivered, dead',
      security,
      request: { params: AgentIdParams, query: ListDeliveriesQuery },
      responses: { 200: json(z.object({ data: z.array(Delivery), nextCursor: z.string().nullable() }), 'a page of deliveries'), 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const { status, limit, cursor } = c.req.valid('query');
      const { tenantId } = c.get('principal');
      const before = await decodeDeliveryCursor(tenantId, id, cursor, status);
      const rows = await onAgent(c, id, (stub) => stub.listDeliveries({ ...(status && { status }), limit: limit + 1, ...(before && { before }) }), { retry: true });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return c.json({ data: page, nextCursor: rows.length > limit && last ? await encodeDeliveryCursor(tenantId, id, last.id, status) : null }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/agents/{id}/deliveries/{did}/retry',
      tags: ['webhooks'],
      summary: 'Send a delivery again now (a dead letter gets a fresh retry schedule)',
      security,
      request: { params: AgentIdParams.extend({ did: ChildId }) },
      responses: { 200: json(Delivery, 'the delivery, pending'), 404: errorResponse('not_found'), 409: errorResponse('conflict: its webhook was deleted, so it has nowhere to go (nothing changed)'), ...commonErrors },
    }),
    async (c) => {
      const { id, did } = c.req.valid('param');
      return c.json(await onAgent(c, id, (stub) => stub.retryDelivery(did)), 200);
    },
  );
