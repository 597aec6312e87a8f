import { env, runInDurableObject } from 'cloudflare:test';
import { api, newAgent } from './api';

export const agentStub = (tenantId: string, agentId: string): any => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));

export const coordinatorStub = (name: string): any => env.TRANSACTIONS.get(env.TRANSACTIONS.idFromName(name));

/** Creates an agent whose context is `data` (version 1), and returns its id. */
export async function agentWith(key: string, data: Record<string, unknown>): Promise<string> {
  const id = await newAgent(key);
  const res = await api(`/v1/agents/${id}/context`, { method: 'PATCH', key, body: data });
  if (res.status !== 200) throw new Error(`context patch failed: ${res.status}`);
  return id;
}

export async function contextOf(key: string, agentId: string): Promise<{ version: number; data: Record<string, any> }> {
  const res = await api(`/v1/agents/${agentId}/context`, { key });
  if (res.status !== 200) throw new Error(`context read failed: ${res.status}`);
  return res.body;
}

/** Prepared transactions (locks) the agent holds, read from its storage (no table yet: none). */
export function locksOf(tenantId: string, agentId: string): Promise<number> {
  return runInDurableObject(agentStub(tenantId, agentId), (_instance, state) => {
    const created = state.storage.sql.exec("SELECT 1 FROM sqlite_master WHERE name = 'tx_prepared'").toArray().length > 0;
    return created ? state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM tx_prepared').one().n : 0;
  });
}

/** The tables a coordinator's storage holds (none: it keeps nothing). */
export function coordinatorTables(name: string): Promise<string[]> {
  return runInDurableObject(coordinatorStub(name), (_instance, state) =>
    state.storage.sql
      .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
      .toArray()
      .map((row) => row.name)
      .filter((table) => !table.startsWith('_cf_')), // the runtime's own
  );
}

/** Moves the agent's prepared rows past their expiry, as if the coordinator had gone silent. */
export function expirePrepared(tenantId: string, agentId: string): Promise<void> {
  return runInDurableObject(agentStub(tenantId, agentId), (_instance, state) => {
    state.storage.sql.exec('UPDATE tx_prepared SET expires_at = ?', Date.now() - 1);
  });
}

export const transfer = (from: string, to: string, amount: number) => ({
  operations: [
    { agentId: from, increment: { balance: -amount }, min: { balance: 0 } },
    { agentId: to, increment: { balance: amount } },
  ],
});

/** Runs `fn` inside a coordinator object, on its storage. */
export const inCoordinator = <T>(name: string, fn: (state: DurableObjectState) => T) => runInDurableObject(coordinatorStub(name), (_i, state: DurableObjectState) => fn(state));

/** The transaction's D1 index row (id → coordinator name, status), if any. */
export const indexRow = (tenantId: string, id: string) => env.DB.prepare('SELECT coordinator_name, status FROM transactions WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first();

/** Runs `fn` while D1's transaction index cannot be written or read (its table renamed). */
export async function withD1Offline<T>(fn: () => Promise<T>): Promise<T> {
  await env.DB.exec('ALTER TABLE transactions RENAME TO transactions_offline');
  try {
    return await fn();
  } finally {
    await env.DB.exec('ALTER TABLE transactions_offline RENAME TO transactions');
  }
}
