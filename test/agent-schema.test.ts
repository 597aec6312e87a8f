import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { currentMigrations, migrate } from '../durable/agent-schema';
import { Sql } from '../durable/sql';
import { newId } from '../worker/lib/ids';
import { ADMIN, api, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { agentWith, coordinatorStub, transfer } from './support/transactions';

// A new agent's object creates only the tables every agent uses; those of A2A, outgoing
// webhooks and transactions appear at the feature's first write (creating an agent is mostly
// its DDL). Everything else must behave the same without them.

const FIRST_USE = ['a2a_push_configs', 'a2a_tasks', 'a2a_turns', 'deliveries', 'tx_outcomes', 'tx_prepared', 'webhooks'];

function tablesOf(tenantId: string, agentId: string): Promise<string[]> {
  const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));
  return runInDurableObject(stub, (_i, state) =>
    state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").toArray().map((r) => r.name));
}

describe('tables created on first use', () => {
  it('a new agent has none of them, and executions, context, status and listings work without them', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    expect((await tablesOf(tenantId, id)).filter((t) => FIRST_USE.includes(t))).toEqual([]);
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'plain' } });
    expect(run.status).toBe(200);
    expect((await api(`/v1/agents/${id}/context`, { method: 'PATCH', key, body: { a: 1 } })).status).toBe(200);
    expect((await api(`/v1/agents/${id}/status`, { key })).body).toMatchObject({ state: 'idle', running: 0, queued: 0 });
    expect((await api(`/v1/agents/${id}/webhooks`, { key })).body.data).toEqual([]);
    expect((await api(`/v1/agents/${id}/deliveries`, { key })).body.data).toEqual([]);
    // The flush (outbox, retention, the alarm's needs) runs without them too.
    await eventually(() => env.DB.prepare('SELECT 1 AS one FROM executions WHERE id = ? AND status = ?').bind(run.body.id, 'succeeded').first());
    expect((await tablesOf(tenantId, id)).filter((t) => FIRST_USE.includes(t))).toEqual([]);
  });

  it('registering a webhook creates the webhook tables, and deliveries follow', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/schema-hook') } })).status).toBe(201);
    expect(await tablesOf(tenantId, id)).toEqual(expect.arrayContaining(['deliveries', 'webhooks']));
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hooked' } })).status).toBe(200);
    const delivered = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/deliveries`, { key });
      return res.body.data.some((d: { status: string }) => d.status === 'delivered') && res.body.data;
    });
    expect(delivered[0]).toMatchObject({ eventType: 'execution.succeeded' });
  });

  it('a new instance learns from its start read which tables exist: deliveries follow after a restart too', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/schema-hook-restart') } })).status).toBe(201);
    await abortAllDurableObjects();
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hooked-after-restart' } });
    expect(run.status).toBe(200);
    const delivered = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/deliveries`, { key });
      return res.body.data.some((d: { status: string }) => d.status === 'delivered') && res.body.data;
    });
    expect(delivered[0]).toMatchObject({ eventType: 'execution.succeeded' });
  });

  it('a transaction creates the transaction tables on the agents it prepares', async () => {
    const { key, tenantId } = await newTenant();
    const [a, b] = [await newAgent(key), await newAgent(key)];
    const res = await api('/v1/transactions', { key, body: transfer(a, b, 0) });
    expect(res.body.status).toBe('committed');
    for (const agent of [a, b]) expect(await tablesOf(tenantId, agent)).toEqual(expect.arrayContaining(['tx_outcomes', 'tx_prepared']));
  });
});

describe('a release rolled back and forward again', () => {
  // The transaction tables as a release before the operator's lock view created them (its
  // third schema entry only): what an older release's first transaction leaves on an agent
  // the current release created, if the Worker is rolled back to it for a while.
  const OLDER_TX_TABLES = `
    CREATE TABLE tx_prepared (tx_id TEXT PRIMARY KEY, coordinator_name TEXT NOT NULL, data TEXT NOT NULL, base_version INTEGER NOT NULL,
      new_version INTEGER NOT NULL, prepared_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
    CREATE TABLE tx_outcomes (tx_id TEXT PRIMARY KEY, outcome TEXT NOT NULL, version INTEGER, decided_at INTEGER NOT NULL);
    CREATE INDEX tx_outcomes_by_age ON tx_outcomes(decided_at)`;

  it('an agent whose first-use tables an older release created gets the columns of the later entries when the current release opens it', async () => {
    const { key, tenantId } = await newTenant();
    const [a, b] = [await newAgent(key), await newAgent(key)];
    for (const agent of [a, b]) {
      const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agent}`));
      await runInDurableObject(stub, (_i, state) => {
        for (const statement of OLDER_TX_TABLES.split(';')) state.storage.sql.exec(statement);
      });
    }
    await abortAllDurableObjects();
    const res = await api('/v1/transactions', { key, body: transfer(a, b, 0) });
    expect(res.body).toMatchObject({ status: 'committed' });
    expect((await api(`/v1/agents/${a}/context`, { key })).body.version).toBe(res.body.versions[a]);
  });

  it('resolves a lock an older release took (no deadline stored): view, commit, abort, operator and alarm read the deadline from its expiry', async () => {
    const { key, tenantId } = await newTenant();
    const [a, b, c, d] = [await agentWith(key, { balance: 100 }), await agentWith(key, { balance: 0 }), await agentWith(key, { n: 1 }), await agentWith(key, { n: 1 })];
    const stubOf = (agent: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agent}`));
    const route = { jurisdiction: null, locationHint: null };
    const deadlineAt = Date.now() + 5_000;
    /** The lock row as that release wrote it: its expiry the deadline + 2 s, no other column. */
    const oldLock = (agent: string, txId: string, coordinatorName: string, data: Record<string, unknown>) =>
      runInDurableObject(stubOf(agent), (_i, state) => {
        for (const statement of OLDER_TX_TABLES.split(';')) state.storage.sql.exec(statement);
        state.storage.sql.exec(
          'INSERT INTO tx_prepared (tx_id, coordinator_name, data, base_version, new_version, prepared_at, expires_at) VALUES (?, ?, ?, 1, 2, ?, ?)',
          txId, coordinatorName, JSON.stringify(data), Date.now(), deadlineAt + 2_000,
        );
      });
    const storedDeadline = (agent: string) => runInDurableObject(stubOf(agent), (_i, state) => state.storage.sql.exec<{ d: number | null }>('SELECT deadline_at AS d FROM tx_prepared').toArray());
    const lockPath = (agent: string) => `/v1/admin/tenants/${tenantId}/agents/${agent}/lock`;

    // a and b: a transfer its coordinator commits; c: one whose coordinator cannot answer; d: one never logged.
    const [t1, t2, t3] = [newId('tx'), newId('tx'), newId('tx')];
    const [n1, n2, n3] = [t1, t2, t3].map((t) => `${tenantId}/${t}`) as [string, string, string];
    await coordinatorStub(n1).begin({ txId: t1, tenantId, coordinatorName: n1, fingerprint: null, timeoutMs: 5_000, operations: [
      { agentId: a, route, operation: { increment: { balance: -30 }, min: { balance: 0 } } }, { agentId: b, route, operation: { increment: { balance: 30 } } },
    ] });
    await coordinatorStub(n2).begin({ txId: t2, tenantId, coordinatorName: n2, fingerprint: null, timeoutMs: 5_000, operations: [{ agentId: c, route, operation: { patch: { n: 2 } } }] });
    await oldLock(a, t1, n1, { balance: 70 });
    await oldLock(b, t1, n1, { balance: 30 });
    await oldLock(c, t2, n2, { n: 2 });
    await oldLock(d, t3, n3, { n: 2 });
    await abortAllDurableObjects(); // the current release opens them: the later columns are added, the deadline unknown
    expect(await storedDeadline(a)).toEqual([{ d: null }]);

    const seen = await api(lockPath(a), { key: ADMIN() });
    expect(seen.body.lock).toMatchObject({ transactionId: t1, coordinator: n1, deadlineAt: new Date(deadlineAt).toISOString(), expiresAt: new Date(deadlineAt + 2_000).toISOString(), inquiries: 0, lastError: null, contextVersion: 1 });

    // Its coordinator's prepare is a repeat (the same version), and its commit writes the locked data.
    await coordinatorStub(n1).prepareAll();
    expect(await coordinatorStub(n1).decide()).toBe('committed');
    expect(await coordinatorStub(n1).phaseTwo()).toBe(true);
    expect((await api(`/v1/transactions/${t1}`, { key })).body).toMatchObject({ status: 'committed', versions: { [a]: 2, [b]: 2 }, completed: true });
    expect((await api(`/v1/agents/${a}/context`, { key })).body).toEqual({ version: 2, data: { balance: 70 } });
    expect((await api(`/v1/agents/${b}/context`, { key })).body).toEqual({ version: 2, data: { balance: 30 } });

    // c's coordinator cannot answer: the operator waits for the deadline the expiry implies, then aborts.
    await runInDurableObject(coordinatorStub(n2), async (_i, state) => {
      state.storage.sql.exec('ALTER TABLE tx RENAME TO tx_lost');
      await state.storage.deleteAlarm();
    });
    const resolvePath = `/v1/admin/tenants/${tenantId}/agents/${c}/transactions/${t2}/resolve`;
    const early = await api(resolvePath, { key: ADMIN(), body: { outcome: 'abort' } });
    expect(early.status).toBe(409);
    expect(early.body.error).toMatchObject({ code: 'conflict', details: { coordinator: 'unreachable', deadlineAt: new Date(deadlineAt).toISOString() } });
    await runInDurableObject(stubOf(c), (_i, state) => void state.storage.sql.exec('UPDATE tx_prepared SET expires_at = ?', Date.now() - 1));
    const late = await api(resolvePath, { key: ADMIN(), body: { outcome: 'abort' } });
    expect(late.body).toMatchObject({ transactionId: t2, status: 'aborted', source: 'operator', heuristic: true, contextVersion: 1 });

    // d's coordinator never logged it: its alarm, past the expiry, hears the presumed abort.
    await runInDurableObject(stubOf(d), (_i, state) => void state.storage.sql.exec('UPDATE tx_prepared SET expires_at = ?', Date.now() - 1));
    await runDurableObjectAlarm(stubOf(d));
    await eventually(async () => (await api(lockPath(d), { key: ADMIN() })).body.lock === null);
    for (const agent of [c, d]) expect((await api(`/v1/agents/${agent}/context`, { key })).body).toEqual({ version: 1, data: { n: 1 } });
    for (const agent of [a, b, c, d]) expect((await api(lockPath(agent), { key: ADMIN() })).body.lock).toBeNull();
  });

  it('an object a newer release migrated opens, works, and leaves first-use tables the newer release completes', async () => {
    const { key, tenantId } = await newTenant();
    const [a, b] = [await newAgent(key), await newAgent(key)];
    const stubs = [a, b].map((agent) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agent}`)));
    const newer = await runInDurableObject(stubs[0]!, (_i, state) => {
      const version = Number(state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'schema_version'").one().value);
      return version + 1;
    });
    for (const stub of stubs) {
      await runInDurableObject(stub, (_i, state) => {
        state.storage.sql.exec("UPDATE meta SET value = ? WHERE key = 'schema_version'", String(newer));
      });
    }
    await abortAllDurableObjects();
    expect((await api(`/v1/agents/${a}/executions`, { key, body: { intent: 'under-rollback' } })).status).toBe(200);
    expect((await api('/v1/transactions', { key, body: transfer(a, b, 0) })).body).toMatchObject({ status: 'committed' });
    // The newer release's own entry adds a column to a first-use table this release created.
    const columns = await runInDurableObject(env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${a}`)), (_i, state) => {
      const newerList = [...currentMigrations(), 'ALTER TABLE tx_prepared ADD COLUMN newer_column TEXT'];
      migrate(new Sql(state.storage.sql), state.storage, newerList);
      return state.storage.sql.exec<{ name: string }>("SELECT name FROM pragma_table_info('tx_prepared')").toArray().map((r) => r.name);
    });
    expect(columns).toContain('newer_column');
  });
});

describe('migrations', () => {
  it("an agent an older release made (no executions.a2a_state) gets the column at its next start; its older rows list by their outputs' states", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const send = async (prefix: string): Promise<string> =>
      (await api(`/a2a/${id}/`, { key, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: `${prefix}-${newId('m')}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } } } })).body.result.task.id;
    const waiting = await send('tck-input-required');
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    await runInDurableObject(stub, (_i, state) => {
      state.storage.sql.exec('ALTER TABLE executions DROP COLUMN a2a_state');
      // The release before the migration that added the column (later ones may follow it).
      state.storage.sql.exec("UPDATE meta SET value = ? WHERE key = 'schema_version'", String(currentMigrations().findIndex((m) => m.includes('ADD COLUMN a2a_state'))));
    });
    await abortAllDurableObjects();
    const done = await send('tck-complete-task');
    const rows = await runInDurableObject(env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`)), (_i, state) => state.storage.sql.exec<{ id: string; a2a_state: string | null }>('SELECT id, a2a_state FROM executions').toArray());
    expect(Object.fromEntries(rows.map((r) => [r.id, r.a2a_state]))).toEqual({ [waiting]: null, [done]: '' });
    const list = async (status: string) => (await api(`/a2a/${id}/`, { key, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 2, method: 'ListTasks', params: { status } } })).body.result.tasks.map((t: { id: string }) => t.id);
    expect(await list('TASK_STATE_INPUT_REQUIRED')).toEqual([waiting]);
    expect(await list('TASK_STATE_COMPLETED')).toEqual([done]);
  });

  it('bring a new object to the current schema with one read of its start state, and an existing one with none more', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const runs = await runInDurableObject(stub, async (_instance, state) => {
      const queries: string[] = [];
      const counting = new Sql({ exec: (query: string, ...params: (string | number | null)[]) => { queries.push(query); return state.storage.sql.exec(query, ...params); } } as unknown as SqlStorage);
      const tablesBefore = state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").toArray().map((r) => r.name);
      await state.storage.deleteAll(); // as new: no table of ours left
      const fresh = migrate(counting, state.storage);
      const freshReads = queries.filter((q) => /FROM meta\b/.test(q)).length;
      queries.length = 0;
      const again = migrate(counting, state.storage);
      const tablesAfter = state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").toArray().map((r) => r.name);
      return { fresh, again, freshReads, againQueries: [...queries], tablesBefore, tablesAfter };
    });
    // The start read fails on a new object; what the migrations leave is then known, not read again.
    expect(runs.freshReads).toBe(1);
    expect(runs.fresh).toEqual(runs.again);
    expect(runs.againQueries).toHaveLength(1);
    expect(runs.tablesAfter).toEqual(runs.tablesBefore);
  });

  it("fails a start whose read the runtime refuses with that refusal, not as a missing schema", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const thrown = await runInDurableObject(stub, async (_instance, state) => {
      // The start read refused as workerd refuses statements past its SQLite heap limit.
      const refusing = new Sql({
        exec: (query: string, ...params: (string | number | null)[]) => {
          if (/UNION ALL/.test(query)) throw new Error('SQLite failed: out of memory: SQLITE_NOMEM');
          return state.storage.sql.exec(query, ...params);
        },
      } as unknown as SqlStorage);
      try {
        migrate(refusing, state.storage);
        return null;
      } catch (error) {
        return String(error);
      }
    });
    // SQLITE_NOMEM is what the edge's retry and 503 classification know (worker/lib/storage-errors.ts).
    expect(thrown).toMatch(/SQLITE_NOMEM/);
  });
});
