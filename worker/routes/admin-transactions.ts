import { OpenAPIHono, createRoute } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { ApiError, unwrap } from '../errors';
import { auditEntry, recordAudit } from '../audit/log';
import { callAgent, requireAgent } from '../agents/registry';
import { TenantParams } from '../schemas/admin';
import { AgentId, ResourceId } from '../schemas/common';
import { AgentLock, LockResolution, ResolveLockBody } from '../schemas/transaction';
import { adminErrors, errorResponse, json, jsonBody, security } from './openapi';

const AgentLockParams = TenantParams.extend({ agentId: AgentId });
const ResolveParams = AgentLockParams.extend({ txId: ResourceId });

/**
 * The operator's view and override of an agent's transaction lock (docs/ARCHITECTURE.md,
 * "Heuristic resolution"): for a lock whose coordinator cannot answer, which would otherwise be
 * held until it can.
 */
export const adminTransactions = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/admin/tenants/{tenant}/agents/{agentId}/lock',
      tags: ['admin'],
      summary: "An agent's transaction lock: the transaction, its coordinator, since when, and how asking the coordinator went (operator token)",
      security,
      request: { params: AgentLockParams },
      responses: { 200: json(AgentLock, 'the lock, or null when the agent holds none'), 404: errorResponse('not_found: the tenant has no such agent'), ...adminErrors },
    }),
    async (c) => {
      const { tenant, agentId } = c.req.valid('param');
      const route = await requireAgent(c.env, tenant, agentId);
      const lock = unwrap(await callAgent(c.env, tenant, agentId, route, (stub) => stub.transactionLock(), { retry: true }));
      return c.json({ agentId, lock }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/admin/tenants/{tenant}/agents/{agentId}/transactions/{txId}/resolve',
      tags: ['admin'],
      summary:
        "Resolve one agent's lock of one transaction: the coordinator's decision if it answers, else (past the transaction's deadline) the operator's outcome, recorded as heuristic (operator token)",
      security,
      request: { params: ResolveParams, ...jsonBody(ResolveLockBody) },
      responses: {
        200: json(LockResolution, 'the outcome applied, and whose it was'),
        404: errorResponse('not_found: the tenant has no such agent, or the agent holds no lock for this transaction'),
        409: errorResponse(
          'agent_locked: another transaction holds the agent (details.transactionId); already_finished: the transaction was already decided here (details.status, details.heuristic), other than by a resolve asking this outcome (that one again answers 200 with what it applied, replayed: true); conflict: the coordinator has not decided yet (before the deadline, or within its 1 s of grace after it), or cannot be reached and the deadline has not passed (details.deadlineAt)',
        ),
        ...adminErrors,
      },
    }),
    async (c) => {
      const { tenant, agentId, txId } = c.req.valid('param');
      const body = c.req.valid('json');
      const route = await requireAgent(c.env, tenant, agentId);
      const asked = { agentId, requested: body.outcome, ...(body.reason !== undefined && { reason: body.reason }) };
      // Not retried: a second delivery would find the lock resolved and answer already_finished.
      const answer = await callAgent(c.env, tenant, agentId, route, (stub) => stub.resolveTransaction(txId, body)).catch(async (error: unknown) => {
        // The agent may have applied the outcome before its answer was lost, and a retry then
        // answers already_finished, which records nothing: the attempt is recorded as such.
        if (error instanceof ApiError && error.code === 'agent_unavailable') {
          await recordAudit(c.env, auditEntry(c, 'transaction.resolve', txId, { tenantId: tenant, details: { ...asked, status: 'unknown' } }));
        }
        throw error;
      });
      const resolved = unwrap(answer);
      await recordAudit(c.env, auditEntry(c, 'transaction.resolve', txId, { tenantId: tenant, details: { ...asked, status: resolved.status, source: resolved.source, heuristic: resolved.heuristic, ...(resolved.replayed && { replayed: true }) } }));
      return c.json({ ...resolved, agentId }, 200);
    },
  );
