import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv, Env } from '../env';
import { ApiError, unwrap } from '../errors';
import { auditEntry, recordAudit } from '../audit/log';
import { adoptOrphanedClaim, callAgent, forgetRoute, registerAgent, releaseClaim, requireAgent, unregisterAgent, type AgentRoute } from '../agents/registry';
import { locationHintFor, type GeoHints } from '../agents/placement';
import { newId } from '../lib/ids';
import { iso } from '../lib/time';
import type { AgentConfig} from '../schemas/agent';
import { Agent, CreateAgentBody, UpdateAgentBody } from '../schemas/agent';
import { AgentIdParams, page } from '../schemas/common';
import { maskUpstream } from '../upstream/resolve';
import { getPool } from '../pools/store';
import { staleAgent, staleHeaders } from '../agents/snapshots';
import { checkOutboundUrl, outboundPolicy } from '../upstream/outbound-guard';
import { listAgents } from '../agents/operations';
import { conformanceEnabled } from '../upstream/conformance';
import { commonErrors, errorResponse, json, jsonBody, security } from './openapi';

const notFound = { 404: errorResponse('not_found: no such agent for this tenant') };

/**
 * Refuses what would fail at call time, so it fails early: URLs the outbound guard refuses,
 * and pools the tenant does not have.
 */
export async function checkUpstream(env: Env, tenantId: string, config: AgentConfig['upstream'] | undefined): Promise<void> {
  if (config?.kind === 'builtin' && config.mode === 'a2a-conformance' && !conformanceEnabled(env)) {
    throw new ApiError('invalid_request', 'the a2a-conformance upstream is disabled on this gateway (ENABLE_CONFORMANCE_UPSTREAM)', [{ path: ['upstream', 'mode'], message: 'not enabled' }]);
  }
  if (!config || config.kind === 'builtin') return;
  if (config.kind === 'pool') {
    if (!(await getPool(env, tenantId, config.pool))) {
      throw new ApiError('invalid_request', `pool ${config.pool} does not exist`, [{ path: ['upstream', 'pool'], message: 'no such pool' }]);
    }
    return;
  }
  const url = config.kind === 'agent-http' ? config.url : config.baseUrl;
  const check = await checkOutboundUrl(url, outboundPolicy(env));
  if (!check.ok) throw new ApiError('invalid_request', `upstream URL refused: ${check.reason}`, [{ path: ['upstream'], message: check.reason, code: 'outbound_refused' }]);
}

const ListQuery = z.object({ limit: z.coerce.number().int().min(1).max(100).default(20), cursor: z.string().max(512).optional() });

export const agents = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/agents',
      tags: ['agents'],
      summary: 'Create an agent',
      security,
      request: jsonBody(CreateAgentBody),
      responses: { 201: json(Agent, 'the agent'), 409: errorResponse('conflict: an agent with this id exists'), ...commonErrors },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const { tenantId } = c.get('principal');
      await checkUpstream(c.env, tenantId, body.upstream);
      const config: AgentConfig = {
        id: body.id ?? newId('ag'),
        name: body.name ?? null,
        instructions: body.instructions ?? null,
        upstream: body.upstream ?? { kind: 'builtin' },
        concurrency: body.concurrency,
        region: body.region ?? null,
        jurisdiction: body.jurisdiction ?? null,
        metadata: body.metadata ?? null,
        ...(body.a2a && { a2a: body.a2a }),
      };
      let route: AgentRoute = {
        jurisdiction: config.jurisdiction,
        locationHint: locationHintFor(config.region, c.req.raw.cf as GeoHints | undefined),
      };
      const now = Date.now();
      const provisional: Agent = { ...config, upstream: maskUpstream(config.upstream), state: 'idle', createdAt: iso(now), updatedAt: iso(now) };
      const claimed = await registerAgent(c.env, tenantId, provisional, route, now);
      if (!claimed) {
        const adopted = await adoptOrphanedClaim(c.env, tenantId, provisional, config.jurisdiction, now);
        if (!adopted) throw new ApiError('conflict', `agent ${config.id} already exists`);
        route = adopted;
      }
      try {
        const agent = unwrap(await callAgent(c.env, tenantId, config.id, route, (stub) => stub.create({ tenantId, config, createdAt: now, locationHint: route.locationHint, adoptedClaim: !claimed }), { retry: true }));
        await recordAudit(c.env, auditEntry(c, 'agent.create', config.id, { details: { upstream: config.upstream.kind, jurisdiction: config.jurisdiction } }));
        return c.json(agent, 201, { location: `/v1/agents/${config.id}` });
      } catch (error) {
        // The object refused or was unreachable: release the claim unless the object holds the
        // agent. Should the release fail too, the next create of this id takes the claim over.
        if (!(error instanceof ApiError && error.code === 'conflict')) await releaseClaim(c.env, tenantId, config.id, now).catch(() => undefined);
        throw error;
      }
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents',
      tags: ['agents'],
      summary: "List the tenant's agents (from D1, ordered by id; eventually consistent)",
      security,
      request: { query: ListQuery },
      responses: { 200: json(page(Agent), 'a page of agents'), ...commonErrors },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid('query');
      return c.json(await listAgents(c.env, c.get('principal').tenantId, limit, cursor), 200);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}',
      tags: ['agents'],
      summary: 'Read an agent (from its Durable Object: strongly consistent)',
      security,
      request: { params: AgentIdParams },
      responses: { 200: json(Agent, 'the agent'), ...notFound, ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const { tenantId } = c.get('principal');
      const route = await requireAgent(c.env, tenantId, id);
      const agent = unwrap(await callAgent(c.env, tenantId, id, route, (stub) => stub.get(), { retry: true, fallback: () => staleAgent(c.env, tenantId, id) }));
      return c.json(agent, 200, staleHeaders(agent));
    },
  )
  .openapi(
    createRoute({
      method: 'patch',
      path: '/v1/agents/{id}',
      tags: ['agents'],
      summary: 'Update an agent (name, instructions, upstream, concurrency, metadata, paused)',
      security,
      request: { params: AgentIdParams, ...jsonBody(UpdateAgentBody) },
      responses: { 200: json(Agent, 'the agent'), ...notFound, ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const patch = c.req.valid('json');
      const { tenantId } = c.get('principal');
      await checkUpstream(c.env, tenantId, patch.upstream);
      const route = await requireAgent(c.env, tenantId, id);
      return c.json(unwrap(await callAgent(c.env, tenantId, id, route, (stub) => stub.update(patch), { retry: true })), 200);
    },
  )
  .openapi(
    createRoute({
      method: 'delete',
      path: '/v1/agents/{id}',
      tags: ['agents'],
      summary: 'Delete an agent with its context, executions and history',
      security,
      request: { params: AgentIdParams },
      responses: { 204: { description: 'deleted' }, ...notFound, ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const { tenantId } = c.get('principal');
      const route = await requireAgent(c.env, tenantId, id);
      const result = await callAgent(c.env, tenantId, id, route, (stub) => stub.destroy(), { retry: true });
      // A registry row without an object (a failed create) is cleaned up the same way.
      if (!result.ok && result.code !== 'not_found') unwrap(result);
      await unregisterAgent(c.env, tenantId, id);
      forgetRoute(tenantId, id);
      await recordAudit(c.env, auditEntry(c, 'agent.delete', id));
      return c.body(null, 204);
    },
  );
