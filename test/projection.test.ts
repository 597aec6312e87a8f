import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { AgentStore } from '../durable/agent-store';
import { drainOutbox, type ProjectionRow, type ProjectionSink } from '../durable/outbox';
import { projectorFor } from '../durable/projector';
import { api, eventually, newAgent, newTenant, uniqueId } from './support/api';

// The projection stage: agents hand their outbox rows to a projector shard, which writes the
// rows of agents flushing at about the same time to D1 in one batch, and tells each which of
// its rows landed. An agent forgets a row only once D1 has it; one bad row holds back nothing
// but itself; D1 never goes back to an older revision of a record.

/** A projector of its own per test (not one of the shards agents use). */
const projector = () => env.PROJECTOR.get(env.PROJECTOR.idFromName(uniqueId('projector-test')));

function executionRow(tenantId: string, agentId: string, id: string, status: string, rev: number): ProjectionRow {
  const payload = JSON.stringify({ id, agentId, intent: 'projected', status, createdAt: new Date().toISOString() });
  return { tenant_id: tenantId, agent_id: agentId, key: `execution:${id}`, kind: 'execution', rev, payload };
}

const inD1 = (tenantId: string, id: string) =>
  env.DB.prepare('SELECT status, rev FROM executions WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ status: string; rev: number }>();

const agentStub = (tenantId: string, id: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));

/** Queues one outbox row in the agent's object and drains it into the sink (made there: stubs belong to one object's I/O); returns the row if it is still there. */
function drainThrough(tenantId: string, id: string, row: ProjectionRow, sink: () => ProjectionSink) {
  return runInDurableObject(agentStub(tenantId, id), async (instance, state) => {
    const store = (instance as unknown as { store: AgentStore }).store;
    store.enqueueJson(row.key, row.kind, row.rev, row.payload, Date.now());
    await drainOutbox(sink(), store, tenantId, id);
    return state.storage.sql.exec<{ attempts: number; next_at: number; last_error: string | null }>('SELECT attempts, next_at, last_error FROM outbox WHERE key = ?', row.key).toArray()[0];
  });
}

describe('the projection stage', () => {
  it("writes the rows of agents flushing together, and answers each that D1 has them", async () => {
    const { key, tenantId } = await newTenant();
    const agents = [await newAgent(key), await newAgent(key), await newAgent(key)];
    const stub = projector();
    const outcomes = await Promise.all(agents.map((agent, i) => stub.write([executionRow(tenantId, agent, `ex_group_${i}`, 'succeeded', 2)])));
    expect(outcomes).toEqual(agents.map(() => ({ failed: [] })));
    for (const i of [0, 1, 2]) expect(await inD1(tenantId, `ex_group_${i}`)).toEqual({ status: 'succeeded', rev: 2 });
  });

  it('splits hand-overs beyond one batch (50 rows) into the next, and answers all of them', async () => {
    const { key, tenantId } = await newTenant();
    const agents = [await newAgent(key), await newAgent(key), await newAgent(key)];
    const stub = projector();
    const writes = Array.from({ length: 60 }, (_, i) => stub.write([executionRow(tenantId, agents[i % 3] ?? '', `ex_many_${i}`, 'succeeded', 1)]));
    expect(new Set((await Promise.all(writes)).map((o) => JSON.stringify(o)))).toEqual(new Set(['{"failed":[]}']));
    const landed = await env.DB.prepare("SELECT count(*) AS n FROM executions WHERE tenant_id = ? AND id LIKE 'ex_many_%'").bind(tenantId).first<{ n: number }>();
    expect(landed?.n).toBe(60);
  });

  it('never takes D1 back to an older revision (hand-overs may arrive late or twice)', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const stub = projector();
    await stub.write([executionRow(tenantId, id, 'ex_late', 'succeeded', 3)]);
    expect(await stub.write([executionRow(tenantId, id, 'ex_late', 'running', 2)])).toEqual({ failed: [] });
    expect(await inD1(tenantId, 'ex_late')).toEqual({ status: 'succeeded', rev: 3 });
  });

  it('names a row D1 refuses and writes the rows around it, of the same agent and of others', async () => {
    const { key, tenantId } = await newTenant();
    const [a, b] = [await newAgent(key), await newAgent(key)];
    const stub = projector();
    const poison: ProjectionRow = { ...executionRow(tenantId, a, 'ex_bad', 'running', 1), payload: 'not json' };
    const [forA, forB] = await Promise.all([
      stub.write([poison, executionRow(tenantId, a, 'ex_good_a', 'succeeded', 1)]),
      stub.write([executionRow(tenantId, b, 'ex_good_b', 'succeeded', 1)]),
    ]);
    expect(forA?.failed).toEqual([{ key: 'execution:ex_bad', rev: 1, error: expect.stringMatching(/JSON/) }]);
    expect(forB).toEqual({ failed: [] });
    expect(await inD1(tenantId, 'ex_good_a')).toMatchObject({ status: 'succeeded' });
    expect(await inD1(tenantId, 'ex_good_b')).toMatchObject({ status: 'succeeded' });
    expect(await inD1(tenantId, 'ex_bad')).toBeNull();
  });

  it('sends an agent to the same shard every time', () => {
    const first = projectorFor(env, 'tenant-1', 'agent-1').id.toString();
    expect(projectorFor(env, 'tenant-1', 'agent-1').id.toString()).toBe(first);
  });
});

describe("an agent's flush into the projection stage", () => {
  it('removes a row once D1 has it', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const row = executionRow(tenantId, id, 'ex_landed', 'succeeded', 1);
    expect(await drainThrough(tenantId, id, row, () => projectorFor(env, tenantId, id))).toBeUndefined();
    expect(await inD1(tenantId, 'ex_landed')).toEqual({ status: 'succeeded', rev: 1 });
  });

  it('keeps a row D1 refused, backing off', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const row = { ...executionRow(tenantId, id, 'ex_refused', 'running', 1), payload: 'not json' };
    const kept = await drainThrough(tenantId, id, row, () => projectorFor(env, tenantId, id));
    expect(kept).toMatchObject({ attempts: 1, last_error: expect.stringMatching(/JSON/) });
    expect(kept?.next_at).toBeGreaterThan(Date.now());
  });

  it('keeps its rows, backing off, when the stage cannot be reached', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const unreachable: ProjectionSink = { write: () => Promise.reject(new Error('projector unreachable')) };
    const kept = await drainThrough(tenantId, id, executionRow(tenantId, id, 'ex_kept', 'running', 1), () => unreachable);
    expect(kept).toMatchObject({ attempts: 1, last_error: 'Error: projector unreachable' });
    expect(kept?.next_at).toBeGreaterThan(Date.now());
    expect(await inD1(tenantId, 'ex_kept')).toBeNull();
  });

  it('stops waiting for a stage that does not answer, and keeps its rows for a retry', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const silent: ProjectionSink = { write: () => new Promise(() => {}) };
    const kept = await runInDurableObject(agentStub(tenantId, id), async (instance, state) => {
      const store = (instance as unknown as { store: AgentStore }).store;
      const row = executionRow(tenantId, id, 'ex_unanswered', 'running', 1);
      store.enqueueJson(row.key, row.kind, row.rev, row.payload, Date.now());
      expect(await drainOutbox(silent, store, tenantId, id, 50)).toBe(false);
      return state.storage.sql.exec<{ attempts: number; last_error: string }>("SELECT attempts, last_error FROM outbox WHERE key = 'execution:ex_unanswered'").toArray()[0];
    });
    expect(kept).toMatchObject({ attempts: 1, last_error: 'Error: the projection stage did not answer within 50 ms' });
  });

  it('reaches D1 for an execution run through the API', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'projected' } });
    expect(run.status).toBe(200);
    await eventually(async () => (await inD1(tenantId, run.body.id))?.status === 'succeeded');
  });
});
