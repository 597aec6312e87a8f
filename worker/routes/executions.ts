import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { ApiError, type Result } from '../errors';
import { requireAgent, type AgentRpc } from '../agents/registry';
import { cancelExecution, onTenantAgent, readExecution, startExecution, syncFailure } from '../agents/operations';
import { answerWhileKeyValid } from '../auth/key-watch';
import { staleHeaders } from '../agents/snapshots';
import { noteWork, startedWork } from '../limits/work';
import { listExecutions } from '../agents/execution-list';
import { newId } from '../lib/ids';
import { AgentIdParams, page, idempotencyHeaders, writtenHeaders } from '../schemas/common';
import { CreateExecutionBody, Execution, ExecutionParams, ListExecutionsQuery } from '../schemas/execution';
import { commonErrors, errorResponse, json, jsonBody, LockedRetryAfter, security, staleableJson, unauthorizedResponse } from './openapi';
import { router } from './router';

const IdempotencyHeaders = idempotencyHeaders('the same key for the same agent returns the first execution and never runs it twice');
const ExecutionHeaders = writtenHeaders('the execution', '/v1/agents/support-bot/executions/ex_01jd8x3v7c9q2m4n6p8r0s2t4v');
const NotRetriedHeaders = ExecutionHeaders.extend({
  'x-should-retry': z.enum(['false']).optional().openapi({
    description: "`false` when the gateway stopped without another attempt (the record's `error.retryable: false`): one would fail alike, or do again work the back end may have done. OpenAI-style clients, which retry 5xx by default, obey it",
  }),
});

/** Resolves the caller's agent and runs one RPC on it, unwrapping its result. */
export async function onAgent<T>(
  c: Context<AppEnv>,
  agentId: string,
  fn: (stub: AgentRpc) => Promise<Result<T>>,
  options: { retry?: boolean; fallback?: () => Promise<Result<T> | null> } = {},
): Promise<T> {
  return onTenantAgent(c.env, c.get('principal').tenantId, agentId, fn, options);
}

export const executions = router()
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/agents/{id}/executions',
      tags: ['executions'],
      summary: 'Run an intent on the agent: sync (default) waits for the result, async answers 202',
      security,
      request: { params: AgentIdParams, headers: IdempotencyHeaders, ...jsonBody(CreateExecutionBody) },
      responses: {
        200: { ...json(Execution, 'sync: the succeeded execution'), headers: ExecutionHeaders },
        202: { ...json(Execution, 'async: the queued execution; poll its Location'), headers: ExecutionHeaders },
        404: errorResponse('not_found: no such agent; or the agent was deleted while this sync execution ran (details: {executionId, agentDeleted: true}; it counts against budgets)'),
        // A sync run that ended badly still names its execution, as a 200 does.
        409: { ...errorResponse('execution_cancelled (with Location), agent_paused, or agent_locked (a transaction held the context its answer patched; with Location and Retry-After, but a replay of its Idempotency-Key has no Retry-After: the key answers this refusal for as long as it lasts)'), headers: ExecutionHeaders.partial().extend({ 'Retry-After': LockedRetryAfter }) },
        422: errorResponse('idempotency_key_reused: same key, different body'),
        502: {
          ...errorResponse('upstream_failed (details.executionId)'),
          headers: NotRetriedHeaders.extend({
            'retry-after': z.string().regex(/^\d+$/).optional().openapi({
              description: "when every failed attempt's upstream asked to wait (a 429 or 503 with Retry-After): seconds until the soonest said it would take work again (at most 300; the record's error.retryAt)",
            }),
          }),
        },
        504: { ...errorResponse('upstream_timeout (details.executionId)'), headers: NotRetriedHeaders },
        ...commonErrors,
        401: unauthorizedResponse('unauthorized: missing, invalid or revoked key; or the key was revoked while this sync execution ran (details: {executionId, keyRevoked: true}, or {idempotencyKey, keyRevoked: true} for a keyed one; it runs on and counts against budgets)'),
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const body = c.req.valid('json');
      const idempotencyKey = c.req.valid('header')['idempotency-key'];
      const { tenantId, keyId } = c.get('principal');
      const executionId = newId('ex');
      // The key's budget is used up: only the key's recorded execution may answer (limits middleware).
      const started = startExecution(c.env, tenantId, id, body, idempotencyKey, c.get('replayOnly') !== undefined, c.get('tokenCharge'), executionId);
      // A sync answer goes only to a key still valid when it comes; a keyed one may be the key's
      // earlier execution, so its 401 names the key rather than an id that may not be it.
      const answered = body.mode === 'sync' ? answerWhileKeyValid(c.env.DB, keyId, started, idempotencyKey === undefined ? { executionId } : { idempotencyKey }) : started;
      const { execution, replayed } = await answered.catch((error: unknown) => {
        if (startedWork(error)) noteWork(c, 'started'); // its agent was deleted while it ran (404), or its key revoked (401): it counts
        throw error;
      });
      // Counted even when it then answers a 4xx (a sync run cancelled while it ran: 409); a
      // repeated Idempotency-Key's recorded answer called no upstream, so it is given back.
      noteWork(c, replayed ? 'replayed' : 'started');
      Object.assign(c.get('log'), { agent: id, execution: execution.id, executionStatus: execution.status, upstream: execution.upstream, attempts: execution.attempts, durationMs: execution.durationMs });
      const headers: Record<string, string> = { location: `/v1/agents/${id}/executions/${execution.id}` };
      if (replayed && idempotencyKey !== undefined) headers['idempotent-replayed'] = 'true';
      if (body.mode === 'async') return c.json(execution, 202, headers);
      if (execution.status !== 'succeeded') {
        const failure = syncFailure(execution, replayed && idempotencyKey !== undefined);
        throw new ApiError(failure.code, failure.message, failure.details, { ...failure.headers, ...headers });
      }
      return c.json(execution, 200, headers);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}/executions',
      tags: ['executions'],
      summary: "List the agent's executions, newest first (from D1; eventually consistent)",
      security,
      request: { params: AgentIdParams, query: ListExecutionsQuery },
      responses: { 200: json(page(Execution), 'a page of executions'), 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const { status, limit, cursor } = c.req.valid('query');
      const { tenantId } = c.get('principal');
      await requireAgent(c.env, tenantId, id);
      return c.json(await listExecutions(c.env, tenantId, id, { ...(status && { status }), limit, ...(cursor !== undefined && { cursor }) }), 200);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents/{id}/executions/{eid}',
      tags: ['executions'],
      summary: 'Read one execution (from the agent: strongly consistent)',
      security,
      request: { params: ExecutionParams },
      responses: { 200: staleableJson(Execution, 'the execution'), 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const { id, eid } = c.req.valid('param');
      const { tenantId } = c.get('principal');
      const execution = await readExecution(c.env, tenantId, id, eid);
      return c.json(execution, 200, staleHeaders(execution));
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/agents/{id}/executions/{eid}/cancel',
      tags: ['executions'],
      summary: 'Cancel a queued or running execution (a running upstream call is aborted)',
      security,
      request: { params: ExecutionParams },
      responses: { 200: json(Execution, 'the cancelled execution'), 404: errorResponse('not_found'), 409: errorResponse('already_finished'), ...commonErrors },
    }),
    async (c) => {
      const { id, eid } = c.req.valid('param');
      return c.json(await cancelExecution(c.env, c.get('principal').tenantId, id, eid), 200);
    },
  );
