import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { interceptAgentSql, type SqlValue } from './support/agent-sql';
import { api, eventually, newAgent, newTenant } from './support/api';

// The agent's SQL hot path, measured by statement rather than by clock (the machine's speed
// does not matter): every statement an execution runs is recorded, then planned with EXPLAIN
// QUERY PLAN against the same object's schema.

interface Recorded { query: string; params: SqlValue[] }

const stubOf = (tenantId: string, agentId: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));

/** Records every statement the object runs. */
function record(instance: unknown, into: Recorded[]): void {
  interceptAgentSql(instance, (query, params, real) => {
    into.push({ query, params });
    return real.exec(query, ...params);
  });
}

async function executeRecorded(key: string, tenantId: string, agentId: string): Promise<Recorded[]> {
  const recorded: Recorded[] = [];
  await runInDurableObject(stubOf(tenantId, agentId), (instance) => record(instance, recorded));
  const res = await api(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'support.reply', input: { message: 'How do refunds work?' } } });
  expect(res.status).toBe(200);
  // The outbox flush follows the request shortly; wait until it has reached D1.
  await eventually(() => env.DB.prepare('SELECT 1 AS one FROM executions WHERE tenant_id = ? AND id = ? AND status = ?').bind(tenantId, res.body.id, 'succeeded').first());
  await eventually(async () => (await runInDurableObject(stubOf(tenantId, agentId), (_i, state) => state.storage.sql.exec('SELECT count(*) AS n FROM outbox').one().n)) === 0);
  return recorded;
}

describe('the execution hot path in the agent object', () => {
  it('plans every statement of a sync execution without a full scan of a growing table', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    // Some history first, so the tables are not trivially empty.
    for (let i = 0; i < 3; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'warm', input: i } })).status).toBe(200);
    // Their flush (and the instance's first retention pass, which is not per execution) first.
    await eventually(async () => (await runInDurableObject(stubOf(tenantId, id), (_i, state) => state.storage.sql.exec('SELECT count(*) AS n FROM outbox').one().n)) === 0);
    const recorded = await executeRecorded(key, tenantId, id);

    const distinct = new Map(recorded.map((r) => [r.query, r.params]));
    const scans = await runInDurableObject(stubOf(tenantId, id), (_instance, state) => {
      const found: string[] = [];
      for (const [query, params] of distinct) {
        const plan = state.storage.sql.exec<{ detail: string }>(`EXPLAIN QUERY PLAN ${query}`, ...params).toArray();
        // "SCAN t" without an index reads every row. Not counted: the singleton tables (agent,
        // context, meta), tx_prepared (at most one row: the lock), and a walk of the rowid
        // from the end that stops at its LIMIT (the newest history turns).
        const rowidWalk = /ORDER BY seq DESC LIMIT \?$/.test(query.trim());
        for (const { detail } of plan) {
          if (!rowidWalk && /^SCAN (executions|history|events|outbox|idempotency|deliveries|webhooks|tx_outcomes)\b/.test(detail) && !/USING (COVERING )?INDEX/.test(detail)) {
            found.push(`${detail}  ←  ${query.replace(/\s+/g, ' ').slice(0, 120)}`);
          }
        }
      }
      return found;
    });
    expect(scans).toEqual([]);
  });

  it('runs a bounded number of statements per sync execution, flush included', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'warm' } })).status).toBe(200);
    await eventually(async () => (await runInDurableObject(stubOf(tenantId, id), (_i, state) => state.storage.sql.exec('SELECT count(*) AS n FROM outbox').one().n)) === 0);
    const recorded = await executeRecorded(key, tenantId, id);
    // 11 (34 when this test was written, 59 before the hot-path work, 16 before the flush of an
    // agent known idle stopped counting its executions and reading the alarm's needs, 13 before
    // the flush handed the agent's snapshot over without writing it): accept, inserted running
    // with its outbox row and both events in one transaction (the edge names the execution, so
    // no key row is needed for its retries); the attempt; finish with its outbox row and event,
    // context and history; the flush, with the snapshot built in memory (its revision from a
    // block the instance reserved at its first flush), the due rows' read and their ack. A
    // statement added to the hot path shows up here first.
    expect(recorded.length).toBeLessThanOrEqual(11);
  });

  it('answers a read of an agent whose runner knows nothing is running without counting its executions', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'warm' } })).status).toBe(200);
    const recorded: Recorded[] = [];
    await runInDurableObject(stubOf(tenantId, id), (instance) => record(instance, recorded));
    const res = await api(`/v1/agents/${id}`, { key });
    expect(res.status).toBe(200);
    expect(res.body.state).toBe('idle');
    expect(recorded.filter((r) => /count\(\*\)/.test(r.query))).toEqual([]);
  });

  it('starts the first execution of a new instance of an agent at once, with few statements', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'warm' } })).status).toBe(200);
    await eventually(async () => (await runInDurableObject(stubOf(tenantId, id), (_i, state) => state.storage.sql.exec('SELECT count(*) AS n FROM outbox').one().n)) === 0);
    await abortAllDurableObjects(); // evicted: the next request meets a new instance
    const recorded = await executeRecorded(key, tenantId, id);
    // One read tells the new instance there is no orphaned or queued work, so the execution is
    // inserted running like on a warm instance; the rest is the instance's first reads (agent
    // row, context, history) and, at its first flush, the agent's snapshot and the alarm's
    // needs (23 statements when this was written; 20 since the start read, which runs before
    // this records, also answers the placement hint, which optional tables exist and when
    // retention last ran; 18 since the snapshot and the first alarm of a change that queued
    // rows need no count of running executions or read of the alarm's needs; 17 since the
    // snapshot is handed over with the flush, not written to the outbox: its revision block's
    // reservation is the one write it costs a new instance).
    expect(recorded.filter((r) => /^UPDATE executions SET status = 'running'/.test(r.query))).toEqual([]);
    expect(recorded.filter((r) => /FROM (meta|sqlite_master)\b/.test(r.query))).toEqual([]);
    expect(recorded.length).toBeLessThanOrEqual(17);
  });

  it('runs retention from the flush at most every five minutes across instances, and leaves no alarm behind once everything reached D1', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const keyed = (name: string) => api(`/v1/agents/${id}/executions`, { key, headers: { 'idempotency-key': name }, body: { intent: name } });
    expect((await keyed('old')).status).toBe(200);
    const inObject = <T>(fn: (state: DurableObjectState) => T) => runInDurableObject(stubOf(tenantId, id), (_i, state) => fn(state));
    const keysAgedOut = () => inObject((state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM idempotency WHERE created_at = 0').one().n);
    // Retention ran once (the first flush), and is recorded: a new instance does not run it again.
    await eventually(async () => (await inObject((state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM meta WHERE key = 'retained_at'").one().n)) === 1);
    // The first key, aged past its day.
    await inObject((state) => state.storage.sql.exec('UPDATE idempotency SET created_at = 0'));
    await abortAllDurableObjects();
    expect((await keyed('again')).status).toBe(200);
    await eventually(async () => (await inObject((state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM outbox').one().n)) === 0);
    expect(await keysAgedOut()).toBe(1);
    // Five minutes later (as far as the record says), it goes at the next flush.
    await inObject((state) => state.storage.sql.exec("UPDATE meta SET value = '0' WHERE key = 'retained_at'"));
    await abortAllDurableObjects();
    expect((await keyed('new')).status).toBe(200);
    await eventually(async () => (await keysAgedOut()) === 0);
    await eventually(async () => (await inObject((state) => state.storage.getAlarm())) === null);
    // The keys of 'again' and 'new' are younger than that.
    expect(await inObject((state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM idempotency').one().n)).toBe(2);
  });

  it('leaves the fallback alarm of an agent in use armed far out between flushes, and lets it lapse once the agent is quiet', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const inObject = <T>(fn: (state: DurableObjectState) => T) => runInDurableObject(stubOf(tenantId, id), (_i, state) => fn(state));
    const run = async () => expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'busy' } })).status).toBe(200);
    await run();
    // Past the first flush, and past the 2 s in which flushes mark an agent busy: an agent used
    // every few seconds, whose every execution is flushed on its own.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await run();
    await eventually(async () => (await inObject((state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM outbox').one().n)) === 0);
    // Two flushes within the alarm's lead: it stays rather than being deleted and set again.
    // It is the fallback for rows the flush sent anyway, so it is set far out: a busy agent's
    // alarm does not fire every few seconds only to find nothing to do.
    const alarm = await inObject((state) => state.storage.getAlarm());
    expect(alarm).not.toBeNull();
    expect(alarm! - Date.now()).toBeGreaterThan(20_000);
    // It fires with nothing left to do and does not set itself again.
    expect(await runDurableObjectAlarm(stubOf(tenantId, id))).toBe(true);
    expect(await inObject((state) => state.storage.getAlarm())).toBeNull();
  });

  it('brings the alarm of an agent in use in to the retry of rows its flush could not deliver', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const inObject = <T>(fn: (state: DurableObjectState) => T) => runInDurableObject(stubOf(tenantId, id), (_i, state) => fn(state));
    const outbox = () => inObject((state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM outbox').one().n);
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'first' } })).status).toBe(200);
    await eventually(async () => (await outbox()) === 0);
    // In use (flushed within the alarm's lead), its alarm armed far out; then D1 refuses a flush.
    await env.DB.exec('ALTER TABLE executions RENAME TO executions_offline');
    try {
      expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'refused' } })).status).toBe(200);
      await eventually(async () => (await inObject((state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM outbox WHERE attempts > 0').one().n)) > 0);
      // The retry is seconds away, not at the fallback half a minute out.
      await eventually(async () => {
        const alarm = await inObject((state) => state.storage.getAlarm());
        return alarm !== null && alarm - Date.now() < 10_000;
      });
    } finally {
      await env.DB.exec('ALTER TABLE executions_offline RENAME TO executions');
    }
  });
});

describe('writes that return the row they wrote without reading it back', () => {
  type Store = {
    insertExecution(e: { id: string; intent: string; input: unknown; idempotencyKey: string | null; deadlineAt: number; now: number; running: boolean }): Record<string, unknown>;
    recordAttempt(from: Record<string, unknown>, upstream: string): Record<string, unknown>;
    finishExecution(from: Record<string, unknown>, status: 'succeeded' | 'failed' | 'cancelled', result: { output?: unknown }, now: number): Record<string, unknown> | undefined;
  };
  const storeOf = (instance: unknown) => (instance as { store: Store }).store;

  it('gives the same row as the table holds, and finishes from a stale row by reading it again', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const result = await runInDurableObject(stubOf(tenantId, id), (instance, state) => {
      const store = storeOf(instance);
      const stored = (executionId: string) => {
        const { seq: _seq, ...row } = state.storage.sql.exec<Record<string, SqlStorageValue>>('SELECT * FROM executions WHERE id = ?', executionId).one();
        return row;
      };
      const inserted = store.insertExecution({ id: 'ex_written', intent: 'i', input: { a: 1 }, idempotencyKey: null, deadlineAt: 9e12, now: 1_000, running: true });
      expect(stored('ex_written')).toEqual(inserted);
      const attempted = store.recordAttempt(inserted, 'builtin');
      expect(stored('ex_written')).toEqual(attempted);
      // Finishing from the row as inserted (before the attempt): the guard on its revision
      // misses, and the finish reads the row again rather than losing the attempt.
      // (That row is the stored one, which also has the `seq` no caller reads.)
      const { seq: _seq, ...finished } = store.finishExecution(inserted, 'succeeded', { output: 'done' }, 2_000) ?? {};
      expect(finished).toEqual(stored('ex_written'));
      const again = store.finishExecution(attempted, 'failed', {}, 3_000);
      return { finished, again, final: stored('ex_written') };
    });
    expect(result.finished).toMatchObject({ status: 'succeeded', attempts: 1, upstream: 'builtin', output: '"done"', finished_at: 2_000, rev: 4 });
    // An execution that has finished is not finished again.
    expect(result.again).toBeUndefined();
    expect(result.final).toMatchObject({ status: 'succeeded', rev: 4 });
  });
});
