import { TRANSACTION_RETENTION_MS } from '../../durable/transaction-retention';
import type { Env } from '../env';
import { coordinator } from './coordinator';
import { rpcMethodMissing } from '../lib/rpc-missing';

/** Rows looked at per cron run: a backlog drains at this many a minute, in the oldest first. */
export const SWEEP_BATCH = 25;
/**
 * How far past retention an index row must be before the sweep looks at it: a coordinator's
 * own alarm deletes it on time, so the sweep only meets those that never armed one (completed
 * before retention existed and never started since) or whose deletion keeps failing.
 */
export const SWEEP_GRACE_MS = 60 * 60_000;

/** Old completed rows, oldest first, through the partial index `transactions_done_by_age`. */
export const SWEEP_QUERY = "SELECT tenant_id, id, coordinator_name FROM transactions WHERE status != 'preparing' AND updated_at < ? ORDER BY updated_at LIMIT ?";

export interface SweepSummary {
  looked: number;
  deleted: number;
  kept: number;
  stale: number;
  failed: number;
}

/**
 * Asks the coordinators behind old completed index rows to apply retention. The coordinator's
 * log decides: one past its day deletes itself and its row; one that must stay (a participant
 * has not acknowledged) keeps both, and its row moves to the back of the queue so it cannot
 * hold up the rest; a row whose coordinator holds another transaction or none is dropped.
 */
export async function sweepTransactions(env: Env, now = Date.now(), limit = SWEEP_BATCH): Promise<SweepSummary> {
  const { results } = await env.DB.prepare(SWEEP_QUERY)
    .bind(now - TRANSACTION_RETENTION_MS - SWEEP_GRACE_MS, limit)
    .all<{ tenant_id: string; id: string; coordinator_name: string }>();
  const summary: SweepSummary = { looked: results.length, deleted: 0, kept: 0, stale: 0, failed: 0 };
  for (const row of results) {
    try {
      const outcome = await coordinator(env, row.coordinator_name).sweep(row.tenant_id, row.id);
      summary[outcome]++;
      if (outcome === 'kept') await env.DB.prepare('UPDATE transactions SET updated_at = ? WHERE tenant_id = ? AND id = ?').bind(now, row.tenant_id, row.id).run();
      if (outcome === 'stale') await env.DB.prepare('DELETE FROM transactions WHERE tenant_id = ? AND id = ? AND coordinator_name = ?').bind(row.tenant_id, row.id, row.coordinator_name).run();
    } catch (error) {
      summary.failed++;
      // A coordinator of a release before retention (a gradual deployment) is swept once it is updated.
      const level = rpcMethodMissing(error) ? 'warn' : 'error';
      console[level](JSON.stringify({ level, msg: 'transaction sweep failed', txId: row.id, error: String(error) }));
    }
  }
  return summary;
}
