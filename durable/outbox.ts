import type { Agent } from '../worker/schemas/agent';
import type { Execution } from '../worker/schemas/execution';
import type { OutboxRow } from './agent-rows';
import type { AgentStore } from './agent-store';

export interface AgentSnapshot {
  agent: Agent;
  contextVersion: number;
}

/** Rows per D1 batch: a flush that sent fewer has sent everything that was due. */
export const OUTBOX_BATCH = 50;
const MAX_BACKOFF_MS = 5 * 60_000;

/** Backoff for a row D1 refused: 1 s, 2 s, 4 s … capped at 5 minutes, with jitter. */
export function outboxBackoffMs(attempts: number, random = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempts);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * The statement that projects one outbox row into D1. Rows carry a revision and D1 keeps the
 * highest, so a late or repeated delivery never rolls a record back. Agent rows only ever
 * update the registry row that creation wrote (never re-create a deleted agent), and
 * execution rows land only while their agent is registered.
 */
function statement(db: D1Database, row: OutboxRow, tenantId: string, agentId: string, now: number): D1PreparedStatement {
  if (row.kind === 'agent') {
    const snapshot = JSON.parse(row.payload) as AgentSnapshot;
    return db
      .prepare('UPDATE agents SET name = ?, state = ?, snapshot = ?, rev = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND rev < ?')
      .bind(snapshot.agent.name, snapshot.agent.state, row.payload, row.rev, now, tenantId, agentId, row.rev);
  }
  const execution = JSON.parse(row.payload) as Execution;
  return db
    .prepare(
      `INSERT INTO executions (tenant_id, agent_id, id, status, intent, record, rev, created_at, updated_at)
       SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM agents WHERE tenant_id = ? AND id = ?)
       ON CONFLICT (tenant_id, agent_id, id) DO UPDATE SET status = excluded.status, record = excluded.record,
         rev = excluded.rev, updated_at = excluded.updated_at WHERE excluded.rev > executions.rev`,
    )
    .bind(tenantId, agentId, execution.id, execution.status, execution.intent, row.payload, row.rev, Date.parse(execution.createdAt), now, tenantId, agentId);
}

/**
 * Sends due outbox rows to D1 in one batch (atomic); if the batch fails, row by row, so one
 * poison row cannot hold the others back. Failed rows are retried later with backoff.
 * Returns how many rows landed.
 */
export async function drainOutbox(db: D1Database, store: AgentStore, tenantId: string, agentId: string): Promise<number> {
  const now = Date.now();
  const rows = store.dueOutbox(now, OUTBOX_BATCH);
  if (rows.length === 0) return 0;
  try {
    await db.batch(rows.map((row) => statement(db, row, tenantId, agentId, now)));
    store.ackOutbox(rows);
    return rows.length;
  } catch (batchError) {
    if (rows.length === 1) {
      const [row] = rows as [OutboxRow];
      store.retryOutbox(row, Date.now() + outboxBackoffMs(row.attempts), String(batchError));
      return 0;
    }
  }
  let landed = 0;
  for (const row of rows) {
    try {
      await statement(db, row, tenantId, agentId, now).run();
      store.ackOutbox([row]);
      landed++;
    } catch (error) {
      store.retryOutbox(row, Date.now() + outboxBackoffMs(row.attempts), String(error));
    }
  }
  return landed;
}
