import type { TransactionDO } from '../../durable/transaction';
import type { Env } from '../env';

/**
 * The coordinator's RPC surface, viewed through the class's own signatures (the generated
 * stub types lose JSON-valued fields, as for agents).
 */
export type CoordinatorRpc = Pick<TransactionDO, 'run' | 'get' | 'replay' | 'sweep' | 'point'>;

export function coordinator(env: Pick<Env, 'TRANSACTIONS'>, name: string): CoordinatorRpc {
  return env.TRANSACTIONS.get(env.TRANSACTIONS.idFromName(name)) as unknown as CoordinatorRpc;
}

/** The object named from a transaction's id: an unkeyed transaction's coordinator, a keyed one's pointer. */
export const idName = (tenantId: string, txId: string) => `${tenantId}/${txId}`;

/** Keyed transactions are named from the key, so a repeat reaches the coordinator that ran the first. */
export const coordinatorName = (tenantId: string, txId: string, key: string | undefined) => (key ? `${tenantId}/key/${key}` : idName(tenantId, txId));
