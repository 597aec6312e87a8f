import { abortAllDurableObjects, createExecutionContext, createScheduledController, env, runDurableObjectAlarm, runInDurableObject, waitOnExecutionContext } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { TRANSACTION_RETENTION_MS } from '../durable/transaction-retention';
import worker from '../worker/index';
import { newId } from '../worker/lib/ids';
import { SWEEP_GRACE_MS, SWEEP_QUERY, sweepTransactions } from '../worker/transactions/sweep';
import { api, newTenant } from './support/api';
import { agentStub, agentWith, contextOf, coordinatorStub, coordinatorTables, inCoordinator, indexRow, locksOf, transfer, withD1Offline } from './support/transactions';

// Retention of coordinators, without waiting a day: the tests move the stored timestamps back
// (completed_at, created_at, …) and run the alarm with runDurableObjectAlarm, which fires it
// whenever it is set for.

interface TxState {
  status: string;
  completed_at: number | null;
  acked: number[];
  alarm: number | null;
}

/** The coordinator's log row, its participants' acks and its alarm. */
const stateOf = (name: string) =>
  inCoordinator(name, async (state): Promise<TxState> => {
    const tx = state.storage.sql.exec<{ status: string; completed_at: number | null }>('SELECT status, completed_at FROM tx').one();
    const acked = state.storage.sql.exec<{ acked: number }>('SELECT acked FROM participants ORDER BY seq').toArray().map((p) => p.acked);
    return { ...tx, acked, alarm: await state.storage.getAlarm() };
  });

/** Moves the log's timestamps back by `ms` (null ones stay null). */
const age = (name: string, ms: number) =>
  inCoordinator(name, (state) => {
    state.storage.sql.exec('UPDATE tx SET created_at = created_at - ?, deadline_at = deadline_at - ?, decided_at = decided_at - ?, completed_at = completed_at - ?', ms, ms, ms, ms);
  });

/**
 * Makes a prepared participant refuse the commit of `txId` (a tombstone says it aborted, and its
 * lock is set aside), without making anything in it throw: an agent's alarm may run meanwhile.
 */
const refuseCommits = (tenantId: string, agentId: string, txId: string) =>
  runInDurableObject(agentStub(tenantId, agentId), (_i, state: DurableObjectState) => {
    state.storage.sql.exec('CREATE TABLE lock_aside AS SELECT * FROM tx_prepared WHERE tx_id = ?', txId);
    state.storage.sql.exec('DELETE FROM tx_prepared WHERE tx_id = ?', txId);
    state.storage.sql.exec("INSERT INTO tx_outcomes (tx_id, outcome, version, decided_at) VALUES (?, 'aborted', NULL, ?)", txId, Date.now());
  });

/** Undoes `refuseCommits`: the lock is back, the tombstone gone. */
const acceptCommits = (tenantId: string, agentId: string, txId: string) =>
  runInDurableObject(agentStub(tenantId, agentId), (_i, state: DurableObjectState) => {
    state.storage.sql.exec('INSERT INTO tx_prepared SELECT * FROM lock_aside');
    state.storage.sql.exec('DROP TABLE lock_aside');
    state.storage.sql.exec('DELETE FROM tx_outcomes WHERE tx_id = ?', txId);
  });

/** Two agents holding 100, and the begin input of a transaction moving 10 from the first to the second. */
async function twoAgents() {
  const { key, tenantId } = await newTenant();
  const agents = [await agentWith(key, { balance: 100 }), await agentWith(key, { balance: 100 })];
  const txId = newId('tx');
  const name = `${tenantId}/${txId}`;
  const route = { jurisdiction: null, locationHint: null };
  const operations = [
    { agentId: agents[0], route, operation: { increment: { balance: -10 }, min: { balance: 0 } } },
    { agentId: agents[1], route, operation: { increment: { balance: 10 } } },
  ];
  const input = { txId, tenantId, coordinatorName: name, fingerprint: null, operations, timeoutMs: 5_000 };
  const balances = async () => Promise.all(agents.map(async (a) => (await contextOf(key, a)).data.balance));
  return { key, tenantId, agents, txId, name, input, balances };
}

/** Two agents' transaction, decided `committed`, whose second participant refuses the commit for now. */
async function committedAwaitingAck() {
  const s = await twoAgents();
  const coordinator = coordinatorStub(s.name);
  await coordinator.begin(s.input);
  await coordinator.prepareAll();
  expect(await coordinator.decide()).toBe('committed');
  await refuseCommits(s.tenantId, s.agents[1] ?? '', s.txId);
  return s;
}

/** A transfer of 10 between two new agents, run to its end: the answer and its coordinator's name. */
async function committedTransfer() {
  const { key, tenantId } = await newTenant();
  const a = await agentWith(key, { balance: 100 });
  const b = await agentWith(key, { balance: 0 });
  const res = await api('/v1/transactions', { key, body: transfer(a, b, 10) });
  return { key, tenantId, a, res, name: `${tenantId}/${res.body.id}` };
}

describe('transactions: retention of coordinators', () => {
  it('deletes a completed coordinator (storage, alarm, D1 row) a day after completion; GET then answers 404 (503 while D1 is down)', async () => {
    const { key, tenantId, a, res, name } = await committedTransfer();
    expect(res.status).toBe(200);
    const id: string = res.body.id;

    // Completed and indexed: the one alarm left is retention's, a day after completion.
    const done = await stateOf(name);
    expect(done).toMatchObject({ status: 'committed', acked: [1, 1] });
    expect(done.alarm).toBe((done.completed_at ?? 0) + TRANSACTION_RETENTION_MS);
    expect(await indexRow(tenantId, id)).toEqual({ coordinator_name: name, status: 'committed' });

    // Fired early, it deletes nothing and stays set.
    expect(await runDurableObjectAlarm(coordinatorStub(name))).toBe(true);
    expect(await coordinatorTables(name)).toEqual(expect.arrayContaining(['tx', 'participants']));
    expect((await stateOf(name)).alarm).toBe(done.alarm);
    expect((await api(`/v1/transactions/${id}`, { key })).status).toBe(200);

    // A day after completion (as far as the log says): everything goes.
    await age(name, TRANSACTION_RETENTION_MS);
    expect(await runDurableObjectAlarm(coordinatorStub(name))).toBe(true);
    expect(await coordinatorTables(name)).toEqual([]);
    expect(await inCoordinator(name, (state) => state.storage.getAlarm())).toBeNull();
    expect(await indexRow(tenantId, id)).toBeNull();

    const gone = await api(`/v1/transactions/${id}`, { key });
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe('not_found');
    // Without D1 the gateway cannot tell it from a keyed transaction, whose coordinator only D1
    // can name: it answers "retry", never a 404 it cannot be sure of.
    expect((await withD1Offline(() => api(`/v1/transactions/${id}`, { key }))).status).toBe(503);
    // Reading it created nothing again, and the transfer itself stays applied.
    expect(await coordinatorTables(name)).toEqual([]);
    expect((await contextOf(key, a)).data.balance).toBe(90);
  });

  it('replays a keyed outcome within the retention, and runs the key as a new transaction after it', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0 });
    const headers = { 'idempotency-key': 'kept-a-day' };
    const name = `${tenantId}/key/kept-a-day`;
    const first = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    expect(first.status).toBe(200);

    // A minute short of a day: still the recorded outcome, and the alarm deletes nothing.
    await age(name, TRANSACTION_RETENTION_MS - 60_000);
    expect(await runDurableObjectAlarm(coordinatorStub(name))).toBe(true);
    const replay = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    expect(replay.status).toBe(200);
    expect(replay.body).toEqual(first.body);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect((await contextOf(key, a)).data.balance).toBe(90);

    // Past the day: the coordinator is gone, and the key is free.
    await age(name, 60_000);
    expect(await runDurableObjectAlarm(coordinatorStub(name))).toBe(true);
    expect(await coordinatorTables(name)).toEqual([]);
    expect((await api(`/v1/transactions/${first.body.id}`, { key })).status).toBe(404);
    const again = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBeNull();
    expect(again.body.id).not.toBe(first.body.id);
    expect((await contextOf(key, a)).data.balance).toBe(80);
    expect((await api(`/v1/transactions/${again.body.id}`, { key })).body).toMatchObject({ status: 'committed', completed: true });
    expect(await indexRow(tenantId, again.body.id)).toEqual({ coordinator_name: name, status: 'committed' });
    expect((await api(`/v1/transactions/${first.body.id}`, { key })).status).toBe(404);
  });

  it('keeps an undecided coordinator however old: its alarm presumes abort, and retention counts from completion', async () => {
    const s = await twoAgents();
    await coordinatorStub(s.name).begin(s.input);
    expect((await agentStub(s.tenantId, s.agents[0] ?? '').prepare(s.txId, { coordinatorName: s.name, operation: s.input.operations[0]?.operation, deadlineAt: Date.now() + 5_000 })).ok).toBe(true);
    await abortAllDurableObjects();
    // Begun two days ago and never decided (a coordinator that crashed mid-prepare).
    await age(s.name, 2 * TRANSACTION_RETENTION_MS);
    const before = Date.now();

    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    const after = await stateOf(s.name);
    expect(after).toMatchObject({ status: 'aborted', acked: [1, 1] });
    expect(after.completed_at).toBeGreaterThanOrEqual(before);
    expect(after.alarm).toBe((after.completed_at ?? 0) + TRANSACTION_RETENTION_MS);
    expect(await locksOf(s.tenantId, s.agents[0] ?? '')).toBe(0);
    expect(await s.balances()).toEqual([100, 100]);
    expect((await api(`/v1/transactions/${s.txId}`, { key: s.key })).body).toMatchObject({ status: 'aborted', reason: 'timeout', completed: true });
  });

  it('keeps a decided coordinator however old until every participant acknowledged, retrying phase two', async () => {
    const s = await committedAwaitingAck();
    await age(s.name, 2 * TRANSACTION_RETENTION_MS);

    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    const waiting = await stateOf(s.name);
    expect(waiting).toMatchObject({ status: 'committed', completed_at: null, acked: [1, 0] });
    expect(waiting.alarm).not.toBeNull();
    expect(await coordinatorTables(s.name)).toEqual(expect.arrayContaining(['tx', 'participants']));

    await acceptCommits(s.tenantId, s.agents[1] ?? '', s.txId);
    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    const done = await stateOf(s.name);
    expect(done).toMatchObject({ status: 'committed', acked: [1, 1] });
    expect(done.alarm).toBe((done.completed_at ?? 0) + TRANSACTION_RETENTION_MS);
    expect(await s.balances()).toEqual([90, 110]);
    expect(await locksOf(s.tenantId, s.agents[1] ?? '')).toBe(0);
  });

  it('keeps the log while D1 refuses to drop the index row, and deletes both once it answers', async () => {
    const { tenantId, res, name } = await committedTransfer();
    await age(name, TRANSACTION_RETENTION_MS);

    await withD1Offline(async () => {
      expect(await runDurableObjectAlarm(coordinatorStub(name))).toBe(true);
      expect(await coordinatorTables(name)).toEqual(expect.arrayContaining(['tx', 'participants']));
      expect(await inCoordinator(name, (state) => state.storage.getAlarm())).not.toBeNull();
    });
    expect(await indexRow(tenantId, res.body.id)).not.toBeNull();

    expect(await runDurableObjectAlarm(coordinatorStub(name))).toBe(true);
    expect(await coordinatorTables(name)).toEqual([]);
    expect(await indexRow(tenantId, res.body.id)).toBeNull();
  });

  it('arms retention on the next start of a coordinator completed before retention existed (no alarm)', async () => {
    const { key, res, name } = await committedTransfer();
    await inCoordinator(name, (state) => state.storage.deleteAlarm());
    await abortAllDurableObjects();

    expect((await api(`/v1/transactions/${res.body.id}`, { key })).status).toBe(200);
    const state = await stateOf(name);
    expect(state.alarm).toBe((state.completed_at ?? 0) + TRANSACTION_RETENTION_MS);
  });
});

/** Moves the transaction's D1 index row back by `ms`, as if it had been written that long ago. */
const ageIndexRow = (tenantId: string, id: string, ms: number) =>
  env.DB.prepare('UPDATE transactions SET created_at = created_at - ?, updated_at = updated_at - ? WHERE tenant_id = ? AND id = ?').bind(ms, ms, tenantId, id).run();

const indexUpdatedAt = async (tenantId: string, id: string) =>
  (await env.DB.prepare('SELECT updated_at FROM transactions WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ updated_at: number }>())?.updated_at;

async function runCron(): Promise<void> {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ cron: '* * * * *' }), env, ctx);
  await waitOnExecutionContext(ctx);
}

const LONG_AGO = 2 * TRANSACTION_RETENTION_MS + SWEEP_GRACE_MS;

describe('transactions: the cron sweeps coordinators that outlived their retention', () => {
  it('deletes a coordinator completed before retention existed that never started again (no alarm, never touched)', async () => {
    const { key, tenantId, a, res, name } = await committedTransfer();
    const id: string = res.body.id;
    await inCoordinator(name, (state) => state.storage.deleteAlarm());
    await age(name, LONG_AGO);
    await ageIndexRow(tenantId, id, LONG_AGO);
    await abortAllDurableObjects();

    await runCron();

    expect(await coordinatorTables(name)).toEqual([]);
    expect(await inCoordinator(name, (state) => state.storage.getAlarm())).toBeNull();
    expect(await indexRow(tenantId, id)).toBeNull();
    expect((await api(`/v1/transactions/${id}`, { key })).status).toBe(404);
    expect((await contextOf(key, a)).data.balance).toBe(90);
  });

  it('keeps a coordinator still owed an acknowledgement, arming its alarm and moving its row to the back of the queue', async () => {
    const s = await committedAwaitingAck();
    const coordinator = coordinatorStub(s.name);
    expect(await runDurableObjectAlarm(coordinator)).toBe(true);
    // Its alarm lost (as a coordinator's from before retention was, at completion).
    await inCoordinator(s.name, (state) => state.storage.deleteAlarm());
    await age(s.name, LONG_AGO);
    await ageIndexRow(s.tenantId, s.txId, LONG_AGO);
    const before = Date.now();

    const summary = await sweepTransactions(env, before);
    expect(summary.kept).toBeGreaterThanOrEqual(1);
    const kept = await stateOf(s.name);
    expect(kept).toMatchObject({ status: 'committed', completed_at: null, acked: [1, 0] });
    expect(kept.alarm).not.toBeNull();
    expect(await indexUpdatedAt(s.tenantId, s.txId)).toBe(before);

    // The alarm it armed finishes phase two once the participant answers.
    await acceptCommits(s.tenantId, s.agents[1] ?? '', s.txId);
    expect(await runDurableObjectAlarm(coordinator)).toBe(true);
    expect(await stateOf(s.name)).toMatchObject({ status: 'committed', acked: [1, 1] });
    expect(await s.balances()).toEqual([90, 110]);
  });

  it('drops an index row whose coordinator holds no such transaction, and leaves rows still preparing alone', async () => {
    const { tenantId } = await newTenant();
    const stale = newId('tx');
    const preparing = newId('tx');
    const old = Date.now() - LONG_AGO;
    await env.DB.batch([
      env.DB.prepare('INSERT INTO transactions (tenant_id, id, coordinator_name, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)').bind(tenantId, stale, `${tenantId}/${stale}`, 'committed', old, old),
      env.DB.prepare('INSERT INTO transactions (tenant_id, id, coordinator_name, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)').bind(tenantId, preparing, `${tenantId}/${preparing}`, 'preparing', old, old),
    ]);

    await sweepTransactions(env);

    expect(await indexRow(tenantId, stale)).toBeNull();
    expect(await indexRow(tenantId, preparing)).toEqual({ coordinator_name: `${tenantId}/${preparing}`, status: 'preparing' });
    expect(await coordinatorTables(`${tenantId}/${stale}`)).toEqual([]);
  });

  it('finds its rows through the partial index, not by scanning the table', async () => {
    const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${SWEEP_QUERY}`).bind(0, 25).all<{ detail: string }>();
    expect(results.map((r) => r.detail).join('\n')).toMatch(/USING INDEX transactions_done_by_age/);
  });
});

describe('transactions: what a deleted agent keeps', () => {
  it("writes nothing into a deleted agent's object when phase two tells it the abort (or a commit)", async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { n: 1 });
    const gone = await agentWith(key, { n: 1 });
    expect((await api(`/v1/agents/${gone}`, { key, method: 'DELETE' })).status).toBe(204);
    const tablesOfGone = () =>
      runInDurableObject(agentStub(tenantId, gone), (_instance, state) =>
        state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '_cf_%' ORDER BY name").toArray().map((r) => r.name),
      );
    const left = await tablesOfGone();
    const txId = newId('tx');
    const name = `${tenantId}/${txId}`;
    const route = { jurisdiction: null, locationHint: null };
    const result = await coordinatorStub(name).run({
      txId, tenantId, coordinatorName: name, fingerprint: null, timeoutMs: 5_000,
      operations: [{ agentId: a, route, operation: { increment: { n: 1 } } }, { agentId: gone, route, operation: { increment: { n: 1 } } }],
    });
    // The deleted agent voted no and was still told the abort, which it acknowledged.
    expect(result.value.transaction).toMatchObject({ status: 'aborted', reason: 'not_found', agentId: gone, completed: true });
    expect(await agentStub(tenantId, gone).abort(txId)).toEqual({ ok: true, value: { aborted: true } });
    expect(await agentStub(tenantId, gone).commit(newId('tx'))).toMatchObject({ ok: true });
    expect(left).not.toContain('tx_outcomes');
    expect(await tablesOfGone()).toEqual(left);
  });

  it('keeps the version a commit wrote in GET when its acknowledgement comes again from an agent deleted and created since', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const b = await agentWith(key, { balance: 0 });
    const done = await api('/v1/transactions', { key, body: transfer(a, b, 5) });
    expect(done.body).toMatchObject({ status: 'committed', versions: { [a]: 2, [b]: 2 } });
    // b's acknowledgement was lost; b is deleted and created again, and written a few times.
    await inCoordinator(`${tenantId}/${done.body.id}`, (state) => {
      state.storage.sql.exec('UPDATE participants SET acked = 0 WHERE agent_id = ?', b);
      state.storage.sql.exec('UPDATE tx SET completed_at = NULL');
    });
    expect((await api(`/v1/agents/${b}`, { key, method: 'DELETE' })).status).toBe(204);
    expect((await api('/v1/agents', { key, body: { id: b } })).status).toBe(201);
    for (const n of [1, 2, 3]) expect((await api(`/v1/agents/${b}/context`, { key, method: 'PATCH', body: { n } })).status).toBe(200);
    expect(await coordinatorStub(`${tenantId}/${done.body.id}`).phaseTwo()).toBe(true);
    const tx = await api(`/v1/transactions/${done.body.id}`, { key });
    // The new agent's version 3 is no version of this transaction's.
    expect(tx.body).toMatchObject({ status: 'committed', completed: true, versions: { [a]: 2, [b]: 2 } });
  });
});

describe("transactions: a participant's tombstone and the coordinator's retries", () => {
  /** The agent's transaction events (type, transactionId), from its storage. */
  const outcomeEvents = (tenantId: string, agentId: string) =>
    runInDurableObject(agentStub(tenantId, agentId), (_instance, state: DurableObjectState) =>
      state.storage.sql.exec<{ type: string; data: string }>("SELECT type, data FROM events WHERE type LIKE 'transaction.%' ORDER BY seq").toArray().map((e) => `${e.type} ${(JSON.parse(e.data) as { transactionId: string }).transactionId}`),
    );

  /**
   * Moves the agent's creation and outcome tombstones back by `ms` (it was created before the
   * transaction began, however far back that is moved) and runs its retention, as its alarm does.
   */
  const ageAgent = (tenantId: string, agentId: string, ms: number) =>
    runInDurableObject(agentStub(tenantId, agentId), (instance, state: DurableObjectState) => {
      state.storage.sql.exec('UPDATE agent SET created_at = created_at - ?', ms);
      state.storage.sql.exec('UPDATE tx_outcomes SET decided_at = decided_at - ?', ms);
      (instance as unknown as { prune(now: number): void }).prune(Date.now());
    });

  const tombstones = (tenantId: string, agentId: string) =>
    runInDurableObject(agentStub(tenantId, agentId), (_instance, state: DurableObjectState) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM tx_outcomes').one().n);

  it('records transaction.aborted once on each participant when the abort comes again after its tombstone was pruned', async () => {
    const s = await twoAgents();
    // The first agent's guard fails: it votes no, holding no lock; the second votes yes.
    const input = { ...s.input, operations: [{ ...s.input.operations[0], operation: { increment: { balance: -500 }, min: { balance: 0 } } }, s.input.operations[1]] };
    const coordinator = coordinatorStub(s.name);
    await coordinator.begin(input);
    await coordinator.prepareAll();
    expect(await coordinator.decide()).toBe('aborted');
    expect(await coordinator.phaseTwo()).toBe(true);
    const once = s.agents.map(() => [`transaction.aborted ${s.txId}`]);
    expect(await Promise.all(s.agents.map((a) => outcomeEvents(s.tenantId, a)))).toEqual(once);

    // Both acknowledgements were lost, and the participants could not be reached for more than a
    // day (the coordinator retries until every ack is in): their tombstones are pruned meanwhile.
    await inCoordinator(s.name, (state) => {
      state.storage.sql.exec('UPDATE participants SET acked = 0');
      state.storage.sql.exec('UPDATE tx SET completed_at = NULL');
    });
    await age(s.name, 2 * TRANSACTION_RETENTION_MS);
    for (const a of s.agents) await ageAgent(s.tenantId, a, 3 * TRANSACTION_RETENTION_MS);
    await abortAllDurableObjects(); // the agents read their rows again
    expect(await Promise.all(s.agents.map((a) => tombstones(s.tenantId, a)))).toEqual([0, 0]);

    // The abort comes again: acknowledged, and announced no second time.
    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    expect(await stateOf(s.name)).toMatchObject({ status: 'aborted', acked: [1, 1] });
    expect(await Promise.all(s.agents.map((a) => outcomeEvents(s.tenantId, a)))).toEqual(once);
    expect(await s.balances()).toEqual([100, 100]);
    expect([await locksOf(s.tenantId, s.agents[0] ?? ''), await locksOf(s.tenantId, s.agents[1] ?? '')]).toEqual([0, 0]);
  });

  it('still records the abort, once, on a participant that holds the lock however late the abort comes', async () => {
    const s = await twoAgents();
    const coordinator = coordinatorStub(s.name);
    await coordinator.begin(s.input);
    await coordinator.prepareAll();
    // Decided abort (a participant's inquiry past the deadline would), both still locked, begun two days ago.
    await inCoordinator(s.name, (state) => void state.storage.sql.exec("UPDATE tx SET status = 'aborted', reason = 'timeout', decided_at = ?", Date.now()));
    await age(s.name, 2 * TRANSACTION_RETENTION_MS);
    for (const a of s.agents) await ageAgent(s.tenantId, a, 3 * TRANSACTION_RETENTION_MS);
    await abortAllDurableObjects();
    expect(await coordinatorStub(s.name).phaseTwo()).toBe(true);
    expect(await Promise.all(s.agents.map((a) => outcomeEvents(s.tenantId, a)))).toEqual(s.agents.map(() => [`transaction.aborted ${s.txId}`]));
    expect([await locksOf(s.tenantId, s.agents[0] ?? ''), await locksOf(s.tenantId, s.agents[1] ?? '')]).toEqual([0, 0]);
  });
});
