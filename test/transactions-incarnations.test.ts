import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { newId } from '../worker/lib/ids';
import { api, mockUrl, newTenant } from './support/api';
import { agentStub, agentWith, contextOf, coordinatorStub, locksOf } from './support/transactions';

// An agent id deleted and created again is another agent (its object wiped, a new creation
// time). A transaction that began before the new one was created never takes part in it:
// neither a prepare still in flight nor a phase-two message may lock it, write an event on it
// or send its webhooks anything.

const route = { jurisdiction: null, locationHint: null };

/** The agent's event types, its webhook deliveries and the transaction tables it holds, from its storage. */
function traceOf(tenantId: string, agentId: string): Promise<{ events: string[]; deliveries: number; txTables: string[] }> {
  return runInDurableObject(agentStub(tenantId, agentId), (_instance, state) => {
    const tables = state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'").toArray().map((r) => r.name);
    const events = state.storage.sql.exec<{ type: string }>('SELECT type FROM events ORDER BY seq').toArray().map((r) => r.type);
    const deliveries = tables.includes('deliveries') ? state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM deliveries').one().n : 0;
    return { events, deliveries, txTables: tables.filter((t) => t.startsWith('tx_')) };
  });
}

/** Deletes the agent and creates it again under the same id, with a webhook for transaction outcomes. */
async function recreate(key: string, agentId: string): Promise<void> {
  expect((await api(`/v1/agents/${agentId}`, { key, method: 'DELETE' })).status).toBe(204);
  expect((await api('/v1/agents', { key, body: { id: agentId } })).status).toBe(201);
  const hook = await api(`/v1/agents/${agentId}/webhooks`, { key, body: { url: mockUrl('/hook'), events: ['transaction.committed', 'transaction.aborted'] } });
  expect(hook.status).toBe(201);
}

describe('transactions: an agent deleted and created again since its transaction began', () => {
  it('hears nothing of a phase-two abort meant for the agent that voted before it: no event, no webhook, no tombstone', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 0 });
    const b = await agentWith(key, { balance: 0 });
    const txId = newId('tx');
    const name = `${tenantId}/${txId}`;
    const coordinator = coordinatorStub(name);
    await coordinator.begin({
      txId, tenantId, coordinatorName: name, fingerprint: null, timeoutMs: 5_000,
      operations: [{ agentId: a, route, operation: { increment: { balance: -5 }, min: { balance: 0 } } }, { agentId: b, route, operation: { increment: { balance: 5 } } }],
    });
    await coordinator.prepareAll(); // a votes no (guard_failed): it holds no lock, so it can be deleted
    expect(await coordinator.decide()).toBe('aborted');
    await recreate(key, a);

    expect(await coordinator.phaseTwo()).toBe(true);
    expect(await traceOf(tenantId, a)).toEqual({ events: [], deliveries: 0, txTables: [] });
    expect(await locksOf(tenantId, b)).toBe(0);
    expect((await api(`/v1/transactions/${txId}`, { key })).body).toMatchObject({ status: 'aborted', reason: 'guard_failed', agentId: a, completed: true });
  });

  it('votes no (not_found) on a prepare still in flight from before it was created, and is not locked', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { n: 1 });
    const b = await agentWith(key, { n: 1 });
    const txId = newId('tx');
    const name = `${tenantId}/${txId}`;
    const coordinator = coordinatorStub(name);
    await coordinator.begin({
      txId, tenantId, coordinatorName: name, fingerprint: null, timeoutMs: 5_000,
      operations: [{ agentId: a, route, operation: { increment: { n: 1 } } }, { agentId: b, route, operation: { increment: { n: 1 } } }],
    });
    // The prepares were sent to the agent that existed when the transaction began; a's lands
    // after it was deleted and created again.
    await recreate(key, a);
    await coordinator.prepareAll();
    expect(await coordinator.decide()).toBe('aborted');
    expect(await locksOf(tenantId, a)).toBe(0);
    // The new agent takes writes at once, not 409 agent_locked until 2 s past the deadline.
    expect((await api(`/v1/agents/${a}/context`, { key, method: 'PATCH', body: { fresh: true } })).status).toBe(200);
    expect(await coordinator.phaseTwo()).toBe(true);
    const tx = await api(`/v1/transactions/${txId}`, { key });
    expect(tx.body).toMatchObject({ status: 'aborted', reason: 'not_found', agentId: a, completed: true });
    expect(await contextOf(key, a)).toEqual({ version: 1, data: { fresh: true } });
    expect(await contextOf(key, b)).toEqual({ version: 1, data: { n: 1 } });
    expect(await traceOf(tenantId, a)).toMatchObject({ deliveries: 0, txTables: [] });
    expect((await traceOf(tenantId, a)).events.filter((t) => t.startsWith('transaction.'))).toEqual([]);
  });

  it('still takes part when it was created before the transaction began, as an agent does', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { n: 1 });
    await recreate(key, a);
    const b = await agentWith(key, { n: 1 });
    const res = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, increment: { n: 1 } }, { agentId: b, increment: { n: 1 } }] } });
    expect(res.body).toMatchObject({ status: 'committed', versions: { [a]: 1, [b]: 2 } });
    expect(await contextOf(key, a)).toEqual({ version: 1, data: { n: 1 } });
    expect((await traceOf(tenantId, a)).events).toContain('transaction.committed');
  });
});
