import { abortAllDurableObjects, env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { AgentStore } from '../durable/agent-store';
import { d1Statements, drainOutbox, type ProjectionRow, type ProjectionSink } from '../durable/outbox';
import { GROUP_MAX_ROWS, projectorFor } from '../durable/projector';
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

function snapshotRow(tenantId: string, agentId: string, name: string, state: string, rev: number): ProjectionRow {
  const payload = JSON.stringify({ agent: { id: agentId, name, state }, contextVersion: rev });
  return { tenant_id: tenantId, agent_id: agentId, key: 'agent', kind: 'agent', rev, payload };
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

  it(`splits hand-overs beyond one group (${GROUP_MAX_ROWS} rows) into the next, and answers all of them`, async () => {
    const { key, tenantId } = await newTenant();
    const agents = [await newAgent(key), await newAgent(key), await newAgent(key)];
    const stub = projector();
    // Hand-overs of 50 rows, as agents send them, adding up to more than one group.
    const handOvers = Math.ceil((GROUP_MAX_ROWS + 100) / 50);
    const writes = Array.from({ length: handOvers }, (_, h) =>
      stub.write(Array.from({ length: 50 }, (_, i) => executionRow(tenantId, agents[h % 3] ?? '', `ex_many_${h}_${i}`, 'succeeded', 1))),
    );
    expect(new Set((await Promise.all(writes)).map((o) => JSON.stringify(o)))).toEqual(new Set(['{"failed":[]}']));
    const landed = await env.DB.prepare("SELECT count(*) AS n FROM executions WHERE tenant_id = ? AND id LIKE 'ex_many_%'").bind(tenantId).first<{ n: number }>();
    expect(landed?.n).toBe(handOvers * 50);
  });

  it('writes every column of a row as the record says, the record itself unchanged', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const createdAt = '2026-12-01T10:00:00.000Z';
    // Text that JSON escapes, and numbers whose text a re-encoding could change.
    const payload = JSON.stringify({ id: 'ex_cols', agentId: id, intent: 'a "quoted" intent', status: 'succeeded', createdAt, output: { x: 0.1, big: 1e21, text: 'line\nbreak ünï' } });
    const rows: ProjectionRow[] = [
      { tenant_id: tenantId, agent_id: id, key: 'execution:ex_cols', kind: 'execution', rev: 4, payload },
      executionRow(tenantId, id, 'ex_cols_other', 'running', 1),
    ];
    expect(await projector().write(rows)).toEqual({ failed: [] });
    const stored = await env.DB.prepare('SELECT agent_id, status, intent, record, rev, created_at FROM executions WHERE tenant_id = ? AND id = ?').bind(tenantId, 'ex_cols').first();
    expect(stored).toEqual({ agent_id: id, status: 'succeeded', intent: 'a "quoted" intent', record: payload, rev: 4, created_at: Date.parse(createdAt) });
  });

  it('keeps the highest revision when one group carries a record twice, in either order', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const stub = projector();
    await Promise.all([
      stub.write([executionRow(tenantId, id, 'ex_twice_a', 'running', 1), executionRow(tenantId, id, 'ex_twice_b', 'succeeded', 2)]),
      stub.write([executionRow(tenantId, id, 'ex_twice_a', 'succeeded', 2), executionRow(tenantId, id, 'ex_twice_b', 'running', 1)]),
    ]);
    expect(await inD1(tenantId, 'ex_twice_a')).toEqual({ status: 'succeeded', rev: 2 });
    expect(await inD1(tenantId, 'ex_twice_b')).toEqual({ status: 'succeeded', rev: 2 });
  });

  it('writes a row too large to share a statement on its own, with the rows around it', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const large = executionRow(tenantId, id, 'ex_large', 'succeeded', 1);
    large.payload = JSON.stringify({ ...(JSON.parse(large.payload) as object), output: 'y'.repeat(700_000) });
    const rows = [executionRow(tenantId, id, 'ex_small_1', 'succeeded', 1), large, executionRow(tenantId, id, 'ex_small_2', 'succeeded', 1)];
    expect(await projector().write(rows)).toEqual({ failed: [] });
    for (const ex of ['ex_small_1', 'ex_large', 'ex_small_2']) expect(await inD1(tenantId, ex)).toEqual({ status: 'succeeded', rev: 1 });
  });

  it('projects no execution of an agent that is not registered, and the rest of its set all the same', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const rows = [executionRow(tenantId, 'ag_never_created', 'ex_orphan', 'succeeded', 1), executionRow(tenantId, id, 'ex_registered', 'succeeded', 1)];
    expect(await projector().write(rows)).toEqual({ failed: [] });
    expect(await inD1(tenantId, 'ex_orphan')).toBeNull();
    expect(await inD1(tenantId, 'ex_registered')).toEqual({ status: 'succeeded', rev: 1 });
  });

  it("writes the snapshots of agents flushing together in one statement, the newest of each, and registers no agent", async () => {
    const { key, tenantId } = await newTenant();
    const [a, b] = [await newAgent(key), await newAgent(key)];
    const stub = projector();
    const outcomes = await Promise.all([
      stub.write([snapshotRow(tenantId, a, 'a newest', 'running', 5), executionRow(tenantId, a, 'ex_snap_a', 'running', 2)]),
      stub.write([snapshotRow(tenantId, a, 'a older', 'idle', 3)]),
      stub.write([snapshotRow(tenantId, b, 'b', 'idle', 2)]),
      stub.write([snapshotRow(tenantId, 'ag_never_created', 'ghost', 'idle', 1)]),
    ]);
    expect(outcomes).toEqual([{ failed: [] }, { failed: [] }, { failed: [] }, { failed: [] }]);
    const agents = await env.DB.prepare('SELECT id, name, state, rev, json_extract(snapshot, \'$.contextVersion\') AS version FROM agents WHERE tenant_id = ? ORDER BY name').bind(tenantId).all();
    expect(agents.results).toEqual([
      { id: a, name: 'a newest', state: 'running', rev: 5, version: 5 },
      { id: b, name: 'b', state: 'idle', rev: 2, version: 2 },
    ]);
    // A later, older snapshot changes nothing.
    expect(await stub.write([snapshotRow(tenantId, b, 'b stale', 'running', 1)])).toEqual({ failed: [] });
    expect(await env.DB.prepare('SELECT name, rev FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, b).first()).toEqual({ name: 'b', rev: 2 });
  });

  it('puts every agent snapshot of a batch in one statement, and every execution row in one more', () => {
    const rows = [snapshotRow('tn', 'a', 'a', 'idle', 2), executionRow('tn', 'a', 'ex_1', 'succeeded', 4), snapshotRow('tn', 'b', 'b', 'idle', 7), executionRow('tn', 'b', 'ex_2', 'succeeded', 4)];
    expect(d1Statements(env.DB, rows, Date.now())).toHaveLength(2);
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

  // A deleted agent's last rows could land after a create had made the id's next agent.
  it('lands the rows of an agent only in the registry row of that agent, by its creation time, small rows and large ones alike', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { name: 'current' });
    const { created_at: createdAt } = (await env.DB.prepare('SELECT created_at FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ created_at: number }>())!;
    const large = 'x'.repeat(700_000);
    const rows = (agentCreatedAt: number, name: string, rev: number): ProjectionRow[] => [
      { ...snapshotRow(tenantId, id, name, 'idle', rev), agent_created_at: agentCreatedAt },
      { ...executionRow(tenantId, id, `ex_small_${agentCreatedAt}`, 'succeeded', rev), agent_created_at: agentCreatedAt },
      { ...executionRow(tenantId, id, `ex_large_${agentCreatedAt}`, 'succeeded', rev), payload: JSON.stringify({ id: `ex_large_${agentCreatedAt}`, agentId: id, intent: 'projected', status: 'succeeded', createdAt: new Date().toISOString(), output: large }), agent_created_at: agentCreatedAt },
    ];
    const named = () => env.DB.prepare('SELECT name FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ name: string }>();
    const executions = async () => (await env.DB.prepare('SELECT id FROM executions WHERE tenant_id = ? AND agent_id = ? ORDER BY id').bind(tenantId, id).all<{ id: string }>()).results.map((r) => r.id);
    // An agent created earlier under the id, its snapshot alone too large to share a statement.
    const earlier = rows(createdAt - 1, 'earlier', 5);
    expect(await projector().write([{ ...earlier[0]!, payload: JSON.stringify({ agent: { id, name: 'earlier', state: 'idle', pad: large }, contextVersion: 5 }) }, ...earlier.slice(1)])).toEqual({ failed: [] });
    expect(await projector().write(earlier)).toEqual({ failed: [] });
    expect(await named()).toEqual({ name: 'current' });
    expect(await executions()).toEqual([]);
    expect(await projector().write(rows(createdAt, 'renamed', 6))).toEqual({ failed: [] });
    expect(await named()).toEqual({ name: 'renamed' });
    expect(await executions()).toEqual([`ex_large_${createdAt}`, `ex_small_${createdAt}`]);
  });

  // A D1 outage refuses every statement alike: trying each hand-over, then each row, on its own
  // only multiplied the calls on a database that could not answer (50 rows: 52 calls a flush).
  it('answers every row of a group refused for a transient reason (D1 unreachable) at once, without trying them one by one', async () => {
    const { key, tenantId } = await newTenant();
    const [a, b] = [await newAgent(key), await newAgent(key)];
    const stub = projector();
    const batches = await runInDurableObject(stub, (instance) => {
      const calls = { n: 0 };
      const down = new Proxy(env.DB, {
        get: (target, prop) => {
          if (prop === 'batch') return () => { calls.n++; return Promise.reject(new Error('D1_ERROR: Network connection lost.')); };
          const value: unknown = Reflect.get(target, prop, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      Object.defineProperty(instance, 'env', { value: { ...env, DB: down } });
      return calls;
    });
    const rowsOf = (agent: string, tag: string) => Array.from({ length: 10 }, (_, i) => executionRow(tenantId, agent, `ex_down_${tag}_${i}`, 'succeeded', 1));
    const [forA, forB] = await Promise.all([stub.write(rowsOf(a, 'a')), stub.write(rowsOf(b, 'b'))]);
    for (const outcome of [forA, forB]) {
      expect(outcome?.failed).toHaveLength(10);
      expect(outcome?.failed.every((f) => /Network connection lost/.test(f.error))).toBe(true);
    }
    const calls = await runInDurableObject(stub, () => batches.n);
    expect(calls).toBe(1);
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
      expect(await drainOutbox(silent, store, tenantId, id, { timeoutMs: 50 })).toEqual({ more: false, held: true, landed: false, outage: true });
      return state.storage.sql.exec<{ attempts: number; last_error: string }>("SELECT attempts, last_error FROM outbox WHERE key = 'execution:ex_unanswered'").toArray()[0];
    });
    expect(kept).toMatchObject({ attempts: 1, last_error: 'Error: the projection stage did not answer within 50 ms' });
  });

  it("hands over the agent's snapshot with the flush without writing it, and removes an older one left in the outbox once it lands", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const handedOver: ProjectionRow[][] = [];
    const outbox = await runInDurableObject(agentStub(tenantId, id), async (instance, state) => {
      const store = (instance as unknown as { store: AgentStore }).store;
      const older = snapshotRow(tenantId, id, 'older', 'idle', 1);
      store.enqueueJson(older.key, older.kind, older.rev, older.payload, Date.now());
      const pending = { ...snapshotRow(tenantId, id, 'newer', 'idle', 2), attempts: 0, next_at: Date.now() };
      const stage = projector();
      const recording: ProjectionSink = { write: (rows) => { handedOver.push([...rows]); return stage.write(rows); } };
      expect(await drainOutbox(recording, store, tenantId, id, { pending })).toEqual({ more: false, held: false, landed: true, outage: false });
      return state.storage.sql.exec('SELECT key FROM outbox').toArray();
    });
    // One hand-over with the newer snapshot only; the older one went with it.
    expect(handedOver.map((rows) => rows.map((r) => r.rev))).toEqual([[2]]);
    expect(outbox).toEqual([]);
    expect(await env.DB.prepare('SELECT name, rev FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first()).toEqual({ name: 'newer', rev: 2 });
  });

  it('numbers snapshots from a block each instance reserves with one write, so revisions only grow across instances', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const take = () => runInDurableObject(agentStub(tenantId, id), (instance, state) => {
      const store = (instance as unknown as { store: AgentStore }).store;
      const revs = [store.nextCounter('probe_rev'), store.nextCounter('probe_rev'), store.nextCounter('probe_rev')];
      return { revs, reserved: state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'probe_rev'").one().value };
    });
    expect(await take()).toEqual({ revs: [1, 2, 3], reserved: '1000' });
    await abortAllDurableObjects(); // a new instance: it starts above what the last one reserved
    expect(await take()).toEqual({ revs: [1001, 1002, 1003], reserved: '2000' });
  });

  it("writes a refused snapshot to the outbox, with its revision, for the retry", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const unreachable: ProjectionSink = { write: () => Promise.reject(new Error('projector unreachable')) };
    const kept = await runInDurableObject(agentStub(tenantId, id), async (instance, state) => {
      const store = (instance as unknown as { store: AgentStore }).store;
      const pending = { ...snapshotRow(tenantId, id, 'refused', 'idle', 7), attempts: 0, next_at: Date.now() };
      expect(await drainOutbox(unreachable, store, tenantId, id, { pending })).toEqual({ more: false, held: true, landed: false, outage: true });
      return state.storage.sql.exec<{ kind: string; rev: number; payload: string; next_at: number }>("SELECT kind, rev, payload, next_at FROM outbox WHERE key = 'agent'").toArray();
    });
    expect(kept).toHaveLength(1);
    expect(kept[0]).toMatchObject({ kind: 'agent', rev: 7 });
    expect(JSON.parse(kept[0]?.payload ?? '{}')).toMatchObject({ agent: { name: 'refused' } });
    expect(kept[0]?.next_at).toBeGreaterThan(Date.now());
  });

  it('reaches D1 for an execution run through the API', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'projected' } });
    expect(run.status).toBe(200);
    await eventually(async () => (await inD1(tenantId, run.body.id))?.status === 'succeeded');
  });
});
