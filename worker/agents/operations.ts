import type { AgentSnapshot } from '../../durable/outbox';
import type { ExecuteResult, TokenCharge } from '../../durable/agent-rpc';
import type { Env } from '../env';
import { ApiError, LOCK_RETRY_AFTER_S, unwrap, type Result } from '../errors';
import { newId } from '../lib/ids';
import type { Agent } from '../schemas/agent';
import type { CreateExecutionBody, Execution } from '../schemas/execution';
import { withChargeDoubt } from '../limits/charge-doubt';
import { retryAfterSeconds } from '../upstream/resume-times';
import { executionFingerprints } from './fingerprint';
import { decodeAgentCursor, encodeAgentCursor } from './list-cursor';
import { PAGE_BYTES } from './execution-list';
import { agentObjectId, callAgent, requireAgent, type AgentRpc } from './registry';
import { prunedExecution, staleExecution } from './snapshots';

/**
 * What the API does to a tenant's agents, shared by every front door (REST under /v1, MCP at
 * /mcp), so the protocols differ only in how they carry requests and errors.
 */

/** Resolves the tenant's agent and runs one RPC on it, unwrapping its result. */
export async function onTenantAgent<T>(
  env: Env,
  tenantId: string,
  agentId: string,
  fn: (stub: AgentRpc) => Promise<Result<T>>,
  options: { retry?: boolean; fallback?: () => Promise<Result<T> | null> } = {},
): Promise<T> {
  const route = await requireAgent(env, tenantId, agentId);
  return unwrap(await callAgent(env, tenantId, agentId, route, fn, options));
}

/**
 * One execution: from its agent (exact); from the D1 snapshot, stale, while the agent cannot be
 * reached; and from D1 when the agent answers that it has let a finished one go (`prunedExecution`).
 */
export async function readExecution(env: Env, tenantId: string, agentId: string, executionId: string): Promise<Execution> {
  try {
    return await onTenantAgent(env, tenantId, agentId, (stub) => stub.getExecution(executionId), { retry: true, fallback: () => staleExecution(env, tenantId, agentId, executionId) });
  } catch (error) {
    return prunedOrRethrow(error, env, tenantId, agentId, executionId);
  }
}

/** Cancels an execution; one the agent has let go had finished, so it is 409 already_finished, as for every finished one. */
export async function cancelExecution(env: Env, tenantId: string, agentId: string, executionId: string): Promise<Execution> {
  try {
    return await onTenantAgent(env, tenantId, agentId, (stub) => stub.cancel(executionId));
  } catch (error) {
    const pruned = await prunedOrRethrow(error, env, tenantId, agentId, executionId);
    throw new ApiError('already_finished', `execution ${executionId} already ${pruned.status}`, { execution: pruned });
  }
}

/** For the agent's `not_found` of an execution, the finished record D1 still keeps of it; any other error, or none there, is thrown again. */
async function prunedOrRethrow(error: unknown, env: Env, tenantId: string, agentId: string, executionId: string): Promise<Execution> {
  if (!(error instanceof ApiError) || error.code !== 'not_found') throw error;
  const pruned = await prunedExecution(env, tenantId, agentId, executionId);
  if (!pruned) throw error;
  return pruned;
}

export interface AgentPage {
  data: Agent[];
  nextCursor: string | null;
}

/**
 * A page of the tenant's agents from the D1 registry, ordered by id (eventually consistent): at
 * most `limit`, and fewer when their snapshots would exceed PAGE_BYTES (always at least one);
 * `nextCursor` pages on in either case. A snapshot holds the agent's instructions, metadata and
 * A2A card, up to about 1 MB: a page of 100 was about 100 MB read into the Worker at once.
 * Snapshots past the budget come back as their ids alone, which is how the page knows more follow.
 */
export async function listAgents(env: Env, tenantId: string, limit: number, cursor: string | undefined): Promise<AgentPage> {
  const after = (await decodeAgentCursor(tenantId, cursor)) ?? '';
  const { results } = await env.DB.prepare(
    `SELECT id, fits, CASE WHEN fits THEN snapshot END AS snapshot
     FROM (SELECT id, snapshot, sum(bytes) OVER (ORDER BY id) - bytes < ? AS fits
           FROM (SELECT id, snapshot, coalesce(length(CAST(snapshot AS BLOB)), 0) AS bytes FROM agents WHERE tenant_id = ? AND id > ? ORDER BY id LIMIT ?))
     ORDER BY id`,
  )
    .bind(PAGE_BYTES, tenantId, after, limit + 1)
    .all<{ id: string; fits: number; snapshot: string }>();
  const rows: { id: string; snapshot: string }[] = [];
  for (const row of results) {
    if (rows.length === limit || !row.fits) break;
    rows.push(row);
  }
  const data = rows.map((r) => (JSON.parse(r.snapshot) as AgentSnapshot).agent);
  const last = rows.at(-1);
  return { data, nextCursor: results.length > rows.length && last ? await encodeAgentCursor(tenantId, last.id) : null };
}

/**
 * Runs an intent on the tenant's agent: sync waits for the end, async returns it queued. Only a
 * client's idempotency key can be reused with another body; without one the edge names the
 * execution itself, so retrying the RPC after a transient platform error finds it by that id
 * and can never run it twice. The edge names it with a key too, so such a retry is not taken
 * for a replay (which gives the key's budget back) when it finds the execution it started.
 * `replayOnly`: answer the key's recorded execution or not_found, starting nothing. `charge`: the key's token reservation, which the agent settles once the
 * execution has ended (a replay leaves it to the limits middleware to give back). `executionId`: the
 * name of a new execution (a replay answers the key's recorded one instead). `decided`: called
 * back once the agent has inserted the execution or found the replay, before a sync run ends.
 */
export async function startExecution(env: Env, tenantId: string, agentId: string, body: CreateExecutionBody, idempotencyKey?: string, replayOnly = false, charge?: TokenCharge, executionId = newId('ex'), decided?: (replayed: boolean) => void): Promise<ExecuteResult> {
  const route = await requireAgent(env, tenantId, agentId);
  // Named here even with a key: a retried delivery finds its own execution, which is no replay.
  const keyed = idempotencyKey === undefined
    ? { executionId, fingerprint: 'edge' }
    : { idempotencyKey, executionId, ...(await executionFingerprints(body)) };
  let deliveries = 0;
  const started = await withChargeDoubt(env, charge, () => agentObjectId(env, tenantId, agentId, route), () =>
    callAgent(
      env, tenantId, agentId, route,
      (stub) => stub.execute({
        intent: body.intent, input: body.input ?? null, mode: body.mode, ...(body.timeoutMs !== undefined && { timeoutMs: body.timeoutMs }),
        ...keyed, freshKey: idempotencyKey === undefined && deliveries++ === 0, ...(replayOnly && { replayOnly }), ...(charge && { charge }), ...(decided && { decided }),
      }),
      { retry: true },
    ),
  );
  return unwrap(started);
}

/**
 * A finished sync execution that did not succeed is an error whose details carry the record.
 * `replayed`: the recorded execution of a repeated Idempotency-Key, which waiting cannot change.
 */
export function syncFailure(execution: Execution, replayed = false): ApiError {
  const details = { executionId: execution.id, execution };
  if (execution.status === 'cancelled') return new ApiError('execution_cancelled', 'the execution was cancelled', details);
  // A transaction held the context the run's answer would have patched: a write refused by a
  // lock is 409 agent_locked wherever it comes from, and the client may run it again shortly.
  // Not under the same key: that answers this record for as long as the key lasts, so a replay
  // carries no Retry-After, which would send the client round the same refusal again.
  if (execution.error?.code === 'agent_locked') {
    if (replayed) return new ApiError('agent_locked', `${execution.error.message} (the recorded answer of this Idempotency-Key: run it again with a new Idempotency-Key)`, details);
    return new ApiError('agent_locked', execution.error.message, details, { 'retry-after': String(LOCK_RETRY_AFTER_S) });
  }
  // The gateway stopped because another attempt would fail alike or could do the work again:
  // so would the client's own retry (OpenAI's clients retry 5xx unless told not to).
  const notRetried: Record<string, string> = execution.error?.retryable === false ? { 'x-should-retry': 'false' } : {};
  if (execution.status !== 'failed' || execution.error?.code === 'upstream_timeout') {
    return new ApiError('upstream_timeout', execution.error?.message ?? 'the execution did not finish before its deadline', details, notRetried);
  }
  return new ApiError('upstream_failed', execution.error?.message ?? 'the upstream failed', details, { ...retryAfterHeader(execution), ...notRetried });
}

/** A Retry-After header (whole seconds from now) for a failure whose upstream said when to come back. */
export function retryAfterHeader(execution: Execution): Record<string, string> {
  const retryAt = execution.error?.retryAt;
  if (retryAt === undefined) return {};
  return { 'retry-after': retryAfterSeconds(Date.parse(retryAt)) };
}
