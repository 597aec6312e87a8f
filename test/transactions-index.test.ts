import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { TRANSACTION_RETENTION_MS } from '../durable/transaction-retention';
import { newId } from '../worker/lib/ids';
import { api, newTenant } from './support/api';
import { agentWith, contextOf, coordinatorStub, coordinatorTables, inCoordinator, indexRow, locksOf, transfer, withD1Offline } from './support/transactions';

// A keyed transaction's coordinator is named from its key, and D1's `transactions` row is the
// only way from its id to that name. These tests take D1 away the way the other transaction
// tests do (the table renamed), while a keyed transaction begins.

/** A transfer of 5 between two agents holding 10, sent with `idempotencyKey` while D1 is down. */
async function keyedDuringOutage(idempotencyKey: string) {
  const { key, tenantId } = await newTenant();
  const a = await agentWith(key, { balance: 10 });
  const b = await agentWith(key, { balance: 10 });
  const body = transfer(a, b, 5);
  const headers = { 'idempotency-key': idempotencyKey };
  const balances = async () => [(await contextOf(key, a)).data.balance, (await contextOf(key, b)).data.balance];
  const { res, during } = await withD1Offline(async () => {
    const res = await api('/v1/transactions', { key, body, headers });
    return { res, during: await api(`/v1/transactions/${res.body.id}`, { key }) };
  });
  return { key, tenantId, body, headers, res, during, balances, name: `${tenantId}/key/${idempotencyKey}`, id: res.body.id as string };
}

/** A tenant with two agents holding 10 each, and the id and coordinator name of a transaction keyed `idempotencyKey`. */
async function keyedTransferSetUp(idempotencyKey: string) {
  const { key, tenantId } = await newTenant();
  const a = await agentWith(key, { balance: 10 });
  const b = await agentWith(key, { balance: 10 });
  return { key, tenantId, a, b, txId: newId('tx'), name: `${tenantId}/key/${idempotencyKey}` };
}

/** Runs a keyed transfer of 5 from `from` to `to` on the coordinator `name` itself, as the edge would. */
function runKeyedTransfer(name: string, tenantId: string, txId: string, [from, to]: [string, string], timeoutMs: number): Promise<{ value: { transaction: Record<string, any> } }> {
  const route = { jurisdiction: null, locationHint: null };
  return coordinatorStub(name).run({
    txId, tenantId, coordinatorName: name, fingerprint: 'f'.repeat(64), timeoutMs,
    operations: [
      { agentId: from, route, operation: { increment: { balance: -5 } } },
      { agentId: to, route, operation: { increment: { balance: 5 } } },
    ],
  });
}

describe('transactions: a keyed transaction whose D1 index write failed', () => {
  it('is found by GET and replayed by its key as soon as D1 answers again, before its alarm writes the index', async () => {
    const t = await keyedDuringOutage('index-gap');
    expect(t.res.status).toBe(200);
    // Its alarm would write the index within 5 s; set aside, the window after recovery stays open.
    await inCoordinator(t.name, (state) => state.storage.deleteAlarm());
    expect(await indexRow(t.tenantId, t.id)).toBeNull();

    // D1 answers and has no row: a 404 here would tell the client the transfer never happened.
    const got = await api(`/v1/transactions/${t.id}`, { key: t.key });
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: t.id, status: 'committed', completed: true });
    const again = await api('/v1/transactions', { key: t.key, body: t.body, headers: t.headers });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(t.id);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await t.balances()).toEqual([5, 15]);

    await inCoordinator(t.name, (state) => state.storage.setAlarm(Date.now() + 60_000));
    expect(await runDurableObjectAlarm(coordinatorStub(t.name))).toBe(true);
    expect(await indexRow(t.tenantId, t.id)).toEqual({ coordinator_name: t.name, status: 'committed' });
  });

  it('is found by GET while D1 is still down, through a pointer kept at the object named from its id', async () => {
    const t = await keyedDuringOutage('index-down');
    expect(t.res.status).toBe(200);
    expect(t.during.status).toBe(200);
    expect(t.during.body).toMatchObject({ id: t.id, status: 'committed', versions: t.res.body.versions });
    expect(await coordinatorTables(`${t.tenantId}/${t.id}`)).toContain('alias');
    // Another tenant asking for the id is still told nothing.
    const other = await newTenant();
    expect((await api(`/v1/transactions/${t.id}`, { key: other.key })).status).toBe(404);
  });

  it('aborts before phase one, locking nothing, when neither the index nor the pointer can be written', async () => {
    const { key, tenantId, a, b, txId, name } = await keyedTransferSetUp('both-down');
    // The object named from the id fails every write, as one whose storage is broken would.
    await inCoordinator(`${tenantId}/${txId}`, (state) => {
      state.storage.sql.exec("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema_version', '999')");
    });
    const result = await withD1Offline(() => runKeyedTransfer(name, tenantId, txId, [a, b], 5_000));
    expect(result.value.transaction).toMatchObject({ id: txId, status: 'aborted', reason: 'unavailable', completed: true });
    expect(result.value.transaction.participants.map((p: { vote: unknown }) => p.vote)).toEqual([null, null]);
    expect([(await contextOf(key, a)).data.balance, (await contextOf(key, b)).data.balance]).toEqual([10, 10]);
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);
  });

  it('keeps its deadline when D1 stalls the index write: the pointer is written instead and phase one runs', async () => {
    const { key, tenantId, a, b, txId, name } = await keyedTransferSetUp('index-stalled');
    // This coordinator's D1 answers writes only after 3 s: a stall, not a refusal (a query that
    // held local D1 would hold the whole local runtime, which runs on one thread).
    let landed = false;
    await runInDurableObject(coordinatorStub(name), (object: DurableObject) => {
      const instance = object as unknown as { env: { DB: D1Database } };
      const db = instance.env.DB;
      const slow = {
        prepare: (sql: string) => ({
          bind: (...values: unknown[]) => ({
            run: async () => {
              await new Promise((resolve) => setTimeout(resolve, 3_000));
              const result = await db.prepare(sql).bind(...values).run();
              landed = true;
              return result;
            },
          }),
        }),
      };
      instance.env = { ...instance.env, DB: slow as unknown as D1Database };
    });
    const result = await runKeyedTransfer(name, tenantId, txId, [a, b], 1_000);
    // The answer came before the index write landed, and the transfer happened.
    expect(landed).toBe(false);
    expect(result.value.transaction).toMatchObject({ id: txId, status: 'committed' });
    expect(await coordinatorTables(`${tenantId}/${txId}`)).toContain('alias');
    expect([(await contextOf(key, a)).data.balance, (await contextOf(key, b)).data.balance]).toEqual([5, 15]);
    expect((await api(`/v1/transactions/${txId}`, { key })).body).toMatchObject({ id: txId, status: 'committed' });
    // The stalled write lands, and the index comes up to the decision.
    await vi.waitFor(() => expect(landed).toBe(true), { timeout: 10_000, interval: 100 });
    await vi.waitFor(async () => expect(await indexRow(tenantId, txId)).toEqual({ coordinator_name: name, status: 'committed' }), { timeout: 10_000, interval: 200 });
  });

  it('drops the pointer once the keyed coordinator has expired, and keeps it until then', async () => {
    const t = await keyedDuringOutage('index-expiry');
    const pointer = `${t.tenantId}/${t.id}`;
    // The keyed coordinator indexes itself once D1 is back.
    await inCoordinator(t.name, (state) => state.storage.setAlarm(Date.now() + 60_000));
    await runDurableObjectAlarm(coordinatorStub(t.name));
    expect(await indexRow(t.tenantId, t.id)).not.toBeNull();

    expect(await runDurableObjectAlarm(coordinatorStub(pointer))).toBe(true);
    expect(await coordinatorTables(pointer)).toContain('alias');
    expect(await inCoordinator(pointer, (state) => state.storage.getAlarm())).not.toBeNull();

    await inCoordinator(t.name, (state) => {
      state.storage.sql.exec('UPDATE tx SET completed_at = completed_at - ?', TRANSACTION_RETENTION_MS + 1);
    });
    await runDurableObjectAlarm(coordinatorStub(t.name));
    expect(await coordinatorTables(t.name)).toEqual([]);
    expect(await runDurableObjectAlarm(coordinatorStub(pointer))).toBe(true);
    expect(await coordinatorTables(pointer)).toEqual([]);
    expect((await api(`/v1/transactions/${t.id}`, { key: t.key })).status).toBe(404);
  });
});
