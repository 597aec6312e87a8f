import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { ApiError, envelope, ok, unwrap } from '../errors';
import { parseIfMatch, versionETag } from '../lib/if-match';
import { auditEntry, recordAudit } from '../audit/log';
import { callAgent, findRegistration, forgetRoute, requireAgent, unregisterAgent } from '../agents/registry';
import { createAgent, createAgents } from '../agents/create';
import { checkUpstream } from '../agents/upstream-check';
import { readAgent, reconfigureAgent, type AgentRead } from '../agents/config-rpc';
import { Agent, BatchCreateAgentsBody, BatchCreateAgentsResponse, CreateAgentBody, MAX_BATCH_AGENTS, UpdateAgentBody } from '../schemas/agent';
import { AgentIdParams, page } from '../schemas/common';
import { staleAgent, staleHeaders } from '../agents/snapshots';
import { listAgents } from '../agents/operations';
import { commonErrors, errorResponse, json, jsonBody, lockedResponse, security, staleableJson } from './openapi';

const notFound = { 404: errorResponse('not_found: no such agent for this tenant') };

const ConfigETagHeaders = z.object({ etag: z.string().optional().openapi({ description: "the agent's configuration version, quoted; send it back in If-Match to make a PATCH conditional (absent only while a deployment leaves the agent on a release before versions)", example: '"3"' }) });
const IfMatchHeaders = z.object({ 'if-match': z.string().max(100).optional().openapi({ description: 'the ETag of GET /v1/agents/{id} (a list matches when one of its tags does); compared strongly, so a weak tag W/"3" never matches', example: '"3"' }) });

/** A read that may be the stale D1 snapshot: its ETag is there only when the agent answered. */
const withETag = <T extends ReturnType<typeof staleableJson>>(response: T) => ({
  ...response,
  headers: { ...response.headers, etag: { schema: { type: 'string' as const }, description: "the agent's configuration version, quoted (absent on a stale answer); send it back in If-Match to make a PATCH conditional" } },
});

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
      responses: {
        201: { ...json(Agent, 'the agent'), headers: z.object({ location: z.string().openapi({ description: 'where to read the agent', example: '/v1/agents/support-bot' }) }) },
        409: errorResponse('conflict: an agent with this id exists'),
        ...commonErrors,
      },
    }),
    async (c) => {
      const agent = await createAgent(c, c.req.valid('json'));
      c.get('log').agent = agent.id;
      return c.json(agent, 201, { location: `/v1/agents/${agent.id}` });
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/agents/batch',
      tags: ['agents'],
      summary: `Create up to ${MAX_BATCH_AGENTS} agents in one request`,
      description:
        'Each agent is created as POST /v1/agents would create it, and has its own outcome: `status` is what that request would have answered (201, or the error\'s status with `error` in the usual envelope). One refused leaves the others created. Ids must be distinct within the batch. The batch counts as one request against the key\'s rate limit.',
      security,
      request: jsonBody(BatchCreateAgentsBody),
      responses: { 200: json(BatchCreateAgentsResponse, 'one result per agent, in the order asked'), ...commonErrors },
    }),
    async (c) => {
      const outcomes = await createAgents(c, c.req.valid('json').agents);
      const requestId = c.get('requestId');
      const results = outcomes.map((o) => (o.ok ? { id: o.agent.id, status: 201, agent: o.agent } : { id: o.id, status: o.error.status, error: envelope(o.error, requestId).error }));
      const created = results.filter((r) => r.status === 201).length;
      return c.json({ created, failed: results.length - created, results }, 200);
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
      responses: { 200: withETag(staleableJson(Agent, 'the agent')), ...notFound, ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const { tenantId } = c.get('principal');
      const route = await requireAgent(c.env, tenantId, id);
      // The D1 snapshot names no configuration version: a stale answer has no ETag.
      const stale = async (): Promise<AgentRead | null> => {
        const snapshot = await staleAgent(c.env, tenantId, id);
        return snapshot?.ok ? ok({ agent: snapshot.value }) : snapshot;
      };
      const { agent, version } = unwrap(await callAgent<AgentRead>(c.env, tenantId, id, route, readAgent, { retry: true, fallback: stale }));
      return c.json(agent, 200, { ...staleHeaders(agent), ...(version !== undefined && { etag: versionETag(version) }) });
    },
  )
  .openapi(
    createRoute({
      method: 'patch',
      path: '/v1/agents/{id}',
      tags: ['agents'],
      summary: 'Update an agent (name, instructions, upstream, concurrency, metadata, paused)',
      security,
      description: "`If-Match` (the ETag of GET /v1/agents/{id}: the configuration's version) makes it conditional: 412 `version_mismatch` when it names another version, and nothing changes.",
      request: { params: AgentIdParams, headers: IfMatchHeaders, ...jsonBody(UpdateAgentBody) },
      responses: { 200: { ...json(Agent, 'the agent'), headers: ConfigETagHeaders }, ...notFound, 412: errorResponse('version_mismatch: If-Match names another configuration version, or only weak tags'), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const patch = c.req.valid('json');
      const ifVersion = parseIfMatch(c.req.valid('header')['if-match'], 'GET /v1/agents/{id}');
      const { tenantId } = c.get('principal');
      await checkUpstream(c.env, tenantId, patch.upstream);
      const route = await requireAgent(c.env, tenantId, id);
      // A conditional PATCH is not retried: one applied whose answer was lost would be refused 412 the second time.
      const { agent, version } = unwrap(await callAgent(c.env, tenantId, id, route, (stub) => reconfigureAgent(stub, patch, ifVersion), { retry: ifVersion === undefined }));
      // Where an agent's inputs go (its upstream) and whether it runs are worth a trace; credentials and texts are not logged.
      const details = { fields: Object.keys(patch).sort(), ...(patch.upstream && { upstream: patch.upstream.kind }), ...(patch.paused !== undefined && { paused: patch.paused }) };
      await recordAudit(c.env, auditEntry(c, 'agent.update', id, { details }));
      return c.json(agent, 200, version === undefined ? {} : { etag: versionETag(version) });
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
      responses: { 204: { description: 'deleted' }, ...notFound, 409: lockedResponse('agent_locked: a transaction has prepared this agent; retry when it ends (Retry-After)'), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const { tenantId } = c.get('principal');
      // The row as found, before the object goes: its removal matches on it, so a create that
      // takes the id over meanwhile (the object empty) keeps its row and executions.
      const found = await findRegistration(c.env, tenantId, id);
      if (!found) throw new ApiError('not_found', `agent ${id} not found`);
      // The object destroys only the agent this row was written for: a DELETE that raced
      // another DELETE and a create of the id finds the new agent there, and leaves it.
      const result = await callAgent(c.env, tenantId, id, found.route, (stub) => stub.destroy(found.createdAt), { retry: true });
      // A registry row without an agent (a failed create, a DELETE whose D1 batch failed) is cleaned up the same way.
      if (!result.ok && result.code !== 'not_found') unwrap(result);
      await unregisterAgent(c.env, tenantId, id, found.createdAt);
      forgetRoute(tenantId, id);
      await recordAudit(c.env, auditEntry(c, 'agent.delete', id));
      return c.body(null, 204);
    },
  );
