import type { AgentSnapshot } from '../../durable/outbox';
import type { Env } from '../env';
import { ok, type Result } from '../errors';
import type { Agent, AgentStatus } from '../schemas/agent';
import type { Execution } from '../schemas/execution';

/**
 * Degraded reads for when an agent's Durable Object cannot be reached: the last snapshot the
 * outbox projected into D1, marked `stale: true`. Null when D1 has nothing to offer either.
 */
export async function staleAgent(env: Env, tenantId: string, agentId: string): Promise<Result<Agent> | null> {
  const row = await env.DB.prepare('SELECT snapshot FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, agentId).first<{ snapshot: string | null }>();
  if (!row?.snapshot) return null;
  return ok({ ...(JSON.parse(row.snapshot) as AgentSnapshot).agent, stale: true });
}

export async function staleStatus(env: Env, tenantId: string, agentId: string): Promise<Result<AgentStatus> | null> {
  const [agent, counts, last] = await env.DB.batch([
    env.DB.prepare('SELECT snapshot FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, agentId),
    env.DB.prepare("SELECT status, count(*) AS n FROM executions WHERE tenant_id = ? AND agent_id = ? AND status IN ('queued', 'running') GROUP BY status").bind(tenantId, agentId),
    env.DB.prepare('SELECT record FROM executions WHERE tenant_id = ? AND agent_id = ? ORDER BY id DESC LIMIT 1').bind(tenantId, agentId),
  ]);
  const snapshotText = (agent?.results[0] as { snapshot: string | null } | undefined)?.snapshot;
  if (!snapshotText) return null;
  const snapshot = JSON.parse(snapshotText) as AgentSnapshot;
  const byStatus = (counts?.results ?? []) as { status: string; n: number }[];
  const lastRecord = (last?.results[0] as { record: string } | undefined)?.record;
  const lastExecution = lastRecord ? (JSON.parse(lastRecord) as Execution) : null;
  return ok({
    state: snapshot.agent.state,
    running: byStatus.find((r) => r.status === 'running')?.n ?? 0,
    queued: byStatus.find((r) => r.status === 'queued')?.n ?? 0,
    contextVersion: snapshot.contextVersion,
    lastExecution: lastExecution ? { id: lastExecution.id, status: lastExecution.status, finishedAt: lastExecution.finishedAt ?? null } : null,
    stale: true,
  });
}

export async function staleExecution(env: Env, tenantId: string, agentId: string, executionId: string): Promise<Result<Execution> | null> {
  const row = await env.DB.prepare('SELECT record FROM executions WHERE tenant_id = ? AND agent_id = ? AND id = ?').bind(tenantId, agentId, executionId).first<{ record: string }>();
  return row ? ok({ ...(JSON.parse(row.record) as Execution), stale: true }) : null;
}

/**
 * A finished execution its agent no longer keeps (it keeps the newest 1,000 finished, and those a
 * kept idempotency key names) while D1 keeps it for its retention (`D1_EXECUTION_RETENTION_DAYS`),
 * so the list shows it: a finished record no longer changes, so D1's is exact, not stale. Null
 * when D1 has no finished record of it (past that retention too).
 */
export async function prunedExecution(env: Env, tenantId: string, agentId: string, executionId: string): Promise<Execution | null> {
  const row = await env.DB.prepare("SELECT record FROM executions WHERE tenant_id = ? AND agent_id = ? AND id = ? AND status IN ('succeeded', 'failed', 'cancelled')")
    .bind(tenantId, agentId, executionId)
    .first<{ record: string }>();
  return row ? (JSON.parse(row.record) as Execution) : null;
}

/** Response headers for a value that may come from a stale snapshot. */
export const staleHeaders = (value: { stale?: boolean }): Record<string, string> => (value.stale ? { 'x-gateway-stale': '1' } : {});
