import type { Env } from '../worker/env';
import { coordinator, idName } from '../worker/transactions/coordinator';
import { TRANSACTION_RETENTION_MS } from './transaction-retention';
import type { AliasRow, TransactionLog } from './transaction-log';

// A keyed transaction's coordinator is named from its key, and the edge finds it from the id
// only through D1's `transactions` row. When that row cannot be written before phase one, the
// coordinator leaves a pointer (an alias) at the object named from the id instead: the object
// a GET falls back to when D1 has no row or does not answer. Without it, a GET between D1's
// recovery and the alarm that finally writes the row answered 404 for a committed transfer.

/** The pointer's first check that its coordinator is gone: the coordinator keeps its log a day after completion. */
const ALIAS_FIRST_CHECK_MS = TRANSACTION_RETENTION_MS + 60 * 60_000;
/** Later checks, while the coordinator still holds the transaction or cannot be asked. */
const ALIAS_RECHECK_MS = 60 * 60_000;

/** Writes the pointer to the keyed coordinator at the object named from the id; false when that failed. */
export async function pointFromId(env: Env, tx: { id: string; tenant_id: string; coordinator_name: string }): Promise<boolean> {
  try {
    await coordinator(env, idName(tx.tenant_id, tx.id)).point(tx.tenant_id, tx.id, tx.coordinator_name);
    return true;
  } catch (error) {
    console.error(JSON.stringify({ msg: 'transaction alias write failed', txId: tx.id, error: String(error) }));
    return false;
  }
}

/** Stores the pointer and arms its cleanup; repeats change nothing. */
export async function writeAlias(log: TransactionLog, storage: DurableObjectStorage, a: { txId: string; tenantId: string; coordinatorName: string }): Promise<void> {
  log.writeAlias({ ...a, now: Date.now() });
  if ((await storage.getAlarm()) === null) await storage.setAlarm(Date.now() + ALIAS_FIRST_CHECK_MS);
}

/** The pointer for this tenant's transaction, if this object keeps one. */
export function aliasFor(log: TransactionLog, tenantId: string, txId: string): AliasRow | undefined {
  const alias = log.alias();
  return alias && alias.tenant_id === tenantId && alias.tx_id === txId ? alias : undefined;
}

/**
 * The pointer's alarm: it is removed once its coordinator no longer holds the transaction
 * (retention deleted it, D1's row going first), and checked again later while it does.
 */
export async function aliasAlarm(env: Env, log: TransactionLog, storage: DurableObjectStorage, alias: AliasRow): Promise<void> {
  let gone = false;
  try {
    const found = await coordinator(env, alias.coordinator_name).get(alias.tenant_id, alias.tx_id);
    gone = !found.ok && found.code === 'not_found';
  } catch (error) {
    console.error(JSON.stringify({ msg: 'transaction alias check failed', txId: alias.tx_id, error: String(error) }));
  }
  if (!gone) return storage.setAlarm(Date.now() + ALIAS_RECHECK_MS);
  log.forget();
  try {
    await storage.deleteAlarm();
    await storage.deleteAll();
  } catch (error) {
    log.open();
    throw error;
  }
}
