import type { Env } from '../env';
import { executionRetention, executionRetentionCutoff } from './execution-retention-policy';

/** Rows one DELETE removes: a short write, so the projection's batches wait little behind it. */
export const RETENTION_BATCH = 1_000;
/** DELETEs per cron tick at most: a backlog drains at 5,000 rows a minute, the oldest first. */
export const RETENTION_STATEMENTS = 5;

/**
 * Finished executions last changed before the cutoff, oldest first, through the partial index
 * `executions_done_by_update` (migration 0013), by rowid: D1's SQLite has no DELETE … LIMIT.
 * The status list is the index's own, so the planner can use it; queued and running rows are
 * not in that index and never match.
 */
export const RETENTION_QUERY = `DELETE FROM executions WHERE rowid IN (
  SELECT rowid FROM executions WHERE status IN ('succeeded', 'failed', 'cancelled') AND updated_at < ? ORDER BY updated_at LIMIT ?)`;

export interface RetentionSummary {
  days: number;
  deleted: number;
  /** A DELETE came back full: older rows may remain for the next tick. */
  more: boolean;
}

/**
 * Deletes D1's rows of executions that finished (their last change landed) more than the
 * retention's days ago, across every tenant, in at most `statements` DELETEs of `batch` rows.
 * Null when D1 keeps every execution (`D1_EXECUTION_RETENTION_DAYS` = 0). A setting that cannot
 * be read deletes nothing and throws, so the cron logs it as an error.
 */
export async function pruneExecutions(env: Env, now = Date.now(), { batch = RETENTION_BATCH, statements = RETENTION_STATEMENTS } = {}): Promise<RetentionSummary | null> {
  const retention = executionRetention(env);
  if (!retention.ok) throw new Error(retention.error);
  const cutoff = executionRetentionCutoff(env, now);
  if (cutoff === null) return null;
  const summary: RetentionSummary = { days: retention.days, deleted: 0, more: false };
  for (let i = 0; i < statements; i++) {
    const { meta } = await env.DB.prepare(RETENTION_QUERY).bind(cutoff, batch).run();
    summary.deleted += meta.changes;
    summary.more = meta.changes >= batch;
    if (!summary.more) break;
  }
  return summary;
}
