import type { TransactionDO } from '../../durable/transaction';
import type { Env } from '../env';

/**
 * The coordinator's RPC surface, viewed through the class's own signatures (the generated
 * stub types lose JSON-valued fields, as for agents).
 */
export type CoordinatorRpc = Pick<TransactionDO, 'run' | 'get' | 'replay' | 'sweep'>;

export function coordinator(env: Env, name: string): CoordinatorRpc {
  return env.TRANSACTIONS.get(env.TRANSACTIONS.idFromName(name)) as unknown as CoordinatorRpc;
}
