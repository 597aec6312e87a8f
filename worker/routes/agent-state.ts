import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { parseIfMatch, versionETag as etag } from '../lib/if-match';
import { AgentContext, AgentStatus, ContextPatch } from '../schemas/agent';
import { AgentIdParams, VersionETagHeaders } from '../schemas/common';
import { onAgent } from './executions';
import { staleHeaders, staleStatus } from '../agents/snapshots';
import { commonErrors, errorResponse, json, lockedResponse, security, staleableJson } from './openapi';

export const agentState = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}/status',
      tags: ['agents'],
      summary: 'State of the agent: running and queued counts, context version, last execution',
      security,
      request: { params: AgentIdParams },
      responses: { 200: staleableJson(AgentStatus, 'the status'), 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const { tenantId } = c.get('principal');
      const status = await onAgent(c, id, (stub) => stub.status(), { retry: true, fallback: () => staleStatus(c.env, tenantId, id) });
      return c.json(status, 200, staleHeaders(status));
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}/context',
      tags: ['context'],
      summary: "The agent's context document and its version (also the ETag)",
      security,
      request: { params: AgentIdParams },
      responses: { 200: { ...json(AgentContext, 'the context'), headers: VersionETagHeaders }, 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const context = await onAgent(c, c.req.valid('param').id, (stub) => stub.getContext(), { retry: true });
      return c.json(context, 200, { etag: etag(context.version) });
    },
  )
  .openapi(
    createRoute({
      method: 'patch',
      path: '/v1/agents/{id}/context',
      tags: ['context'],
      summary: 'Apply a JSON Merge Patch (RFC 7396) to the context; If-Match makes it conditional',
      security,
      request: {
        params: AgentIdParams,
        headers: z.object({ 'if-match': z.string().max(100).optional().openapi({ description: 'the ETag of GET /context (a list: any of them); compared strongly, so a weak tag W/"3" never matches', example: '"3"' }) }),
        body: {
          required: true,
          content: { 'application/merge-patch+json': { schema: ContextPatch }, 'application/json': { schema: ContextPatch } },
        },
      },
      responses: {
        200: { ...json(AgentContext, 'the patched context'), headers: VersionETagHeaders },
        404: errorResponse('not_found'),
        409: lockedResponse('agent_locked: a transaction has prepared this agent; retry when it ends (Retry-After)'),
        412: errorResponse('version_mismatch: If-Match names an older version, or only weak tags'),
        ...commonErrors,
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const versions = parseIfMatch(c.req.valid('header')['if-match'], 'GET /context');
      // One version goes as a number, the form objects of releases before If-Match lists read:
      // in a gradual deployment this edge may call an agent object of such a release.
      const ifVersion = versions?.length === 1 ? versions[0] : versions;
      const patch = c.req.valid('json');
      const context = await onAgent(c, id, (stub) => stub.patchContext(patch, ifVersion));
      return c.json(context, 200, { etag: etag(context.version) });
    },
  );
