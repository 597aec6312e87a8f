import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { AgentStore } from '../durable/agent-store';
import { drainOutbox, type ProjectionRow } from '../durable/outbox';
import { projectorFor } from '../durable/projector';
import { api, eventually, newAgent, newTenant, uniqueId } from './support/api';

// The projection stage: agents hand their outbox rows to a projector shard, which writes the
// rows of many agents to D1 together. It must never lose a row it accepted, never roll a
// record back, and never let one bad row hold the others.

/** A projector of its own per test (not one of the shards agents use), so tests cannot meet each other's rows. */
const projector = (name = uniqueId('projector-test')) => env.PROJECTOR.get(env.PROJECTOR.idFromName(name));

function executionRow(tenantId: string, agentId: string, id: string, status: string, rev: number): ProjectionRow {
  const payload = JSON.stringify({ id, agentId, intent: 'projected', status, createdAt: new Date().toISOString() });
  return { tenant_id: tenantId, agent_id: agentId, key: `execution:${id}`, kind: 'execution', rev, payload };
}

const inD1 = (tenantId: string, id: string) =>
  env.DB.prepare('SELECT status, rev FROM executions WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ status: string; rev: number }>();

const pendingOf = (stub: DurableObjectStub) =>
  runInDurableObject(stub, (_i, state) => state.storage.sql.exec<{ key: string; rev: number; attempts: number; next_at: number; last_error: string | null }>('SELECT key, rev, attempts, next_at, last_error FROM pending ORDER BY key').toArray());

describe('the projection stage', () => {
  it('writes the rows of several agents to D1, each record at its newest revision', async () => {
    const { key, tenantId } = await newTenant();
    const [a, b] = [await newAgent(key), await newAgent(key)];
    const stub = projector();
    // Out of order, as flushes of different instances may arrive: rev 3 first, then rev 2.
    await stub.append([executionRow(tenantId, a, 'ex_pa', 'succeeded', 3), executionRow(tenantId, b, 'ex_pb', 'running', 2)]);
    await stub.append([executionRow(tenantId, a, 'ex_pa', 'running', 2)]);
    await eventually(async () => (await inD1(tenantId, 'ex_pb'))?.status === 'running');
    expect(await inD1(tenantId, 'ex_pa')).toEqual({ status: 'succeeded', rev: 3 });
    await eventually(async () => (await pendingOf(stub)).length === 0);
    // Delivered again (a retried hand-over): D1 keeps the newer record it has.
    await stub.append([executionRow(tenantId, a, 'ex_pa', 'running', 2)]);
    await eventually(async () => (await pendingOf(stub)).length === 0);
    expect(await inD1(tenantId, 'ex_pa')).toEqual({ status: 'succeeded', rev: 3 });
  });

  it('keeps a row D1 refuses for a later retry, with backoff, and delivers the rows around it', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const stub = projector();
    const poison: ProjectionRow = { ...executionRow(tenantId, id, 'ex_bad', 'running', 1), payload: 'not json' };
    await stub.append([poison, executionRow(tenantId, id, 'ex_good', 'succeeded', 1)]);
    await eventually(async () => (await inD1(tenantId, 'ex_good'))?.status === 'succeeded');
    const [left] = await eventually(async () => {
      const rows = await pendingOf(stub);
      return rows.length === 1 && rows[0]?.attempts === 1 && rows;
    });
    expect(left).toMatchObject({ key: 'execution:ex_bad', attempts: 1 });
    expect(left?.next_at).toBeGreaterThan(Date.now());
    expect(left?.last_error).toMatch(/JSON/);
    // Its retry is armed.
    expect(await runInDurableObject(stub, (_i, state) => state.storage.getAlarm())).not.toBeNull();
  });

  it('delivers rows it accepted after a restart, from its alarm', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const name = uniqueId('projector-test');
    await projector(name).append([executionRow(tenantId, id, 'ex_restart', 'succeeded', 1)]);
    await abortAllDurableObjects(); // before its flush: the rows are only in its storage now
    expect(await inD1(tenantId, 'ex_restart')).toBeNull();
    expect(await runDurableObjectAlarm(projector(name))).toBe(true);
    expect(await inD1(tenantId, 'ex_restart')).toEqual({ status: 'succeeded', rev: 1 });
    expect(await pendingOf(projector(name))).toEqual([]);
  });

  it('sends an agent to the same shard every time', () => {
    const first = projectorFor(env, 'tenant-1', 'agent-1').id.toString();
    expect(projectorFor(env, 'tenant-1', 'agent-1').id.toString()).toBe(first);
  });
});

describe("an agent's flush into the projection stage", () => {
  it('keeps its outbox rows, backing off, when the stage cannot take them', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const rows = await runInDurableObject(stub, async (instance, state) => {
      const store = (instance as unknown as { store: AgentStore }).store;
      store.enqueueJson('execution:ex_kept', 'execution', 1, executionRow(tenantId, id, 'ex_kept', 'running', 1).payload, Date.now());
      const more = await drainOutbox({ append: () => Promise.reject(new Error('projector unreachable')) }, store, tenantId, id);
      expect(more).toBe(false);
      return state.storage.sql.exec<{ key: string; attempts: number; next_at: number; last_error: string }>("SELECT key, attempts, next_at, last_error FROM outbox WHERE key = 'execution:ex_kept'").toArray();
    });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ attempts: 1, last_error: 'Error: projector unreachable' });
    expect(rows[0]?.next_at).toBeGreaterThan(Date.now());
  });

  it('reaches D1 for an execution run through the API', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'projected' } });
    expect(run.status).toBe(200);
    await eventually(async () => (await inD1(tenantId, run.body.id))?.status === 'succeeded');
  });
});
