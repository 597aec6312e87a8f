import type { TxRow } from './transaction-log';

/**
 * How long a coordinator keeps a completed transaction before it deletes itself: a day from
 * `completed_at`, the same as an execution's Idempotency-Key (agent-store) and a participant's
 * outcome tombstone (agent-transactions). A constant like those, not an operator variable: a
 * shorter period would shorten the Idempotency-Key promise, and no retry of the gateway's own
 * needs the log once every participant has acknowledged.
 */
export const TRANSACTION_RETENTION_MS = 24 * 60 * 60_000;

/**
 * When the coordinator may delete itself, or null while it must stay. Only after phase two is
 * complete: a participant still holding a lock asks the coordinator, and a coordinator with no
 * record answers `aborted` (presumed abort), which would contradict a logged commit. Only once
 * the D1 index is written too: no index write can then be in flight to re-create the row that
 * the deletion removes.
 */
export function expiresAt(tx: TxRow): number | null {
  if (tx.completed_at === null || tx.indexed_status !== tx.status) return null;
  return tx.completed_at + TRANSACTION_RETENTION_MS;
}

/**
 * Removes the transaction's D1 index row, which would otherwise point at an empty coordinator
 * forever. Returns false when D1 refused; the coordinator then keeps its log and retries, so
 * the row is never left behind without the log.
 */
export async function dropIndexRow(db: D1Database, tx: TxRow): Promise<boolean> {
  try {
    await db.prepare('DELETE FROM transactions WHERE tenant_id = ? AND id = ?').bind(tx.tenant_id, tx.id).run();
    return true;
  } catch (error) {
    console.error(JSON.stringify({ msg: 'transaction index delete failed', txId: tx.id, error: String(error) }));
    return false;
  }
}
