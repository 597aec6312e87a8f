import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { canonicalJson, sha256Hex } from '../worker/lib/hash';
import { newId } from '../worker/lib/ids';
import { createApp } from '../worker/app';
import { ADMIN, api, eventually, newTenant } from './support/api';
import { agentStub, agentWith, contextOf, coordinatorStub, expirePrepared, locksOf, transfer } from './support/transactions';

// Crash injection. The coordinator's steps (begin, prepareAll, decide, phaseTwo) are callable
// one by one, so a test stops between two of them; abortAllDurableObjects() then throws away
// every object's memory as a crash would (storage stays), and recovery runs from the alarms.

interface Setup {
  key: string;
  tenantId: string;
  agents: string[];
  txId: string;
  name: string;
  input: Record<string, unknown>;
}

/** n agents holding 100 each, and a transaction moving 10 from the first to each of the others. */
async function setup(n: number, options: { keyed?: string; amount?: number } = {}): Promise<Setup> {
  const { key, tenantId } = await newTenant();
  const agents: string[] = [];
  for (let i = 0; i < n; i++) agents.push(await agentWith(key, { balance: 100 }));
  const amount = options.amount ?? 10;
  const txId = newId('tx');
  const name = options.keyed ? `${tenantId}/key/${options.keyed}` : `${tenantId}/${txId}`;
  const operations = agents.map((agentId, i) => ({
    agentId,
    route: { jurisdiction: null, locationHint: null },
    operation: i === 0 ? { increment: { balance: -amount * (n - 1) }, min: { balance: 0 } } : { increment: { balance: amount } },
  }));
  return { key, tenantId, agents, txId, name, input: { txId, tenantId, coordinatorName: name, fingerprint: null, operations, timeoutMs: 5_000 } };
}

const prepareDirectly = (s: Setup, i: number) => {
  const op = (s.input.operations as { operation: unknown }[])[i]?.operation;
  return agentStub(s.tenantId, s.agents[i] ?? '').prepare(s.txId, { coordinatorName: s.name, operation: op, deadlineAt: Date.now() + 5_000 });
};

async function balances(s: Setup): Promise<number[]> {
  return Promise.all(s.agents.map(async (a) => (await contextOf(s.key, a)).data.balance as number));
}

async function expectNoLocks(s: Setup): Promise<void> {
  for (const a of s.agents) expect(await locksOf(s.tenantId, a), `lock left on ${a}`).toBe(0);
}

async function expectAllOrNothing(s: Setup, outcome: 'committed' | 'aborted'): Promise<void> {
  const tx = await api(`/v1/transactions/${s.txId}`, { key: s.key });
  expect(tx.status).toBe(200);
  expect(tx.body).toMatchObject({ status: outcome, completed: true });
  const values = await balances(s);
  const n = s.agents.length;
  expect(values).toEqual(outcome === 'committed' ? [100 - 10 * (n - 1), ...Array(n - 1).fill(110)] : Array(n).fill(100));
  expect(values.reduce((x, y) => x + y, 0)).toBe(100 * n);
  await expectNoLocks(s);
}

describe('transactions: crash injection and recovery', () => {
  it.each([0, 1, 2, 3])('coordinator crashes after %i of 3 prepares: the alarm presumes abort and releases every lock', async (k) => {
    const s = await setup(3);
    await coordinatorStub(s.name).begin(s.input);
    for (let i = 0; i < k; i++) expect((await prepareDirectly(s, i)).ok).toBe(true);
    await abortAllDurableObjects();

    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    await expectAllOrNothing(s, 'aborted');
    const tx = await api(`/v1/transactions/${s.txId}`, { key: s.key });
    expect(tx.body.reason).toBe('timeout');
    // A commit that could still be in flight from before the crash is refused where it aborted.
    if (k > 0) expect((await agentStub(s.tenantId, s.agents[0] ?? '').commit(s.txId)).ok).toBe(false);
  });

  it('a prepared participant whose coordinator went silent asks it from its own alarm, and aborts', async () => {
    const s = await setup(2);
    await coordinatorStub(s.name).begin(s.input);
    expect((await prepareDirectly(s, 0)).ok).toBe(true);
    await abortAllDurableObjects();
    // Phase one's deadline has passed and the participant's lock has expired.
    await runInDurableObject(coordinatorStub(s.name), (_i, state) => { state.storage.sql.exec('UPDATE tx SET deadline_at = 0'); });
    await expirePrepared(s.tenantId, s.agents[0] ?? '');
    expect(await runDurableObjectAlarm(agentStub(s.tenantId, s.agents[0] ?? ''))).toBe(true);
    expect(await locksOf(s.tenantId, s.agents[0] ?? '')).toBe(0);
    await eventually(async () => (await api(`/v1/transactions/${s.txId}`, { key: s.key })).body.completed);
    await expectAllOrNothing(s, 'aborted');
  });

  it("owns the phase two a participant's inquiry starts: its failure is logged and left to the alarm, never an unhandled rejection", async () => {
    const s = await setup(2);
    await coordinatorStub(s.name).begin(s.input);
    expect((await prepareDirectly(s, 0)).ok).toBe(true);
    await abortAllDurableObjects(); // no run in memory: the inquiry decides
    // Past the deadline and its grace, and the participants' table unreadable, so the phase two
    // the inquiry's decision starts fails.
    const table = (from: string, to: string) => runInDurableObject(coordinatorStub(s.name), (_i, state) => void state.storage.sql.exec(`ALTER TABLE ${from} RENAME TO ${to}`));
    await runInDurableObject(coordinatorStub(s.name), (_i, state) => void state.storage.sql.exec('UPDATE tx SET deadline_at = 0'));
    await table('participants', 'participants_lost');
    const unhandled: unknown[] = [];
    const onUnhandled = (event: PromiseRejectionEvent) => {
      unhandled.push(event.reason);
      event.preventDefault();
    };
    addEventListener('unhandledrejection', onUnhandled);
    const errors = vi.spyOn(console, 'error');
    try {
      // The decision is logged (durable before the answer leaves), and the answer does not wait for phase two.
      expect(await coordinatorStub(s.name).status(s.txId)).toEqual({ ok: true, value: { status: 'aborted' } });
      await eventually(async () => errors.mock.calls.some((call) => String(call[0]).includes('transaction finish failed')));
      await new Promise((resolve) => setTimeout(resolve, 100)); // an unhandled rejection is reported a turn later
    } finally {
      removeEventListener('unhandledrejection', onUnhandled);
      errors.mockRestore();
      await table('participants_lost', 'participants');
    }
    expect(unhandled).toEqual([]);
    // The alarm, armed since begin, finishes what the failed finish left.
    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    await expectAllOrNothing(s, 'aborted');
  });

  it('a prepared participant that lost its alarm arms it again when it next starts, so the lock is still resolved', async () => {
    const s = await setup(2);
    expect((await prepareDirectly(s, 1)).ok).toBe(true);
    // Its alarm failed past the runtime's retries: nothing would ever ask the coordinator.
    await runInDurableObject(agentStub(s.tenantId, s.agents[1] ?? ''), (_i, state) => state.storage.deleteAlarm());
    await abortAllDurableObjects();
    await expirePrepared(s.tenantId, s.agents[1] ?? '');
    expect(await runDurableObjectAlarm(agentStub(s.tenantId, s.agents[1] ?? ''))).toBe(true);
    await expectNoLocks(s);
  });

  it('a participant prepared for a transaction its coordinator never logged is aborted (presumed abort)', async () => {
    const s = await setup(2);
    expect((await prepareDirectly(s, 1)).ok).toBe(true);
    await abortAllDurableObjects();
    await expirePrepared(s.tenantId, s.agents[1] ?? '');
    expect(await runDurableObjectAlarm(agentStub(s.tenantId, s.agents[1] ?? ''))).toBe(true);
    await expectNoLocks(s);
    expect(await balances(s)).toEqual([100, 100]);
  });

  it('coordinator crashes after logging commit, before phase two: the alarm commits every participant', async () => {
    const s = await setup(4);
    const coordinator = coordinatorStub(s.name);
    await coordinator.begin(s.input);
    await coordinator.prepareAll();
    expect(await coordinator.decide()).toBe('committed');
    await abortAllDurableObjects();

    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    await expectAllOrNothing(s, 'committed');
  });

  it('after the commit decision, participants that hear nothing ask the coordinator and commit themselves', async () => {
    const s = await setup(3);
    const coordinator = coordinatorStub(s.name);
    await coordinator.begin(s.input);
    await coordinator.prepareAll();
    expect(await coordinator.decide()).toBe('committed');
    await abortAllDurableObjects();
    for (const a of s.agents) {
      await expirePrepared(s.tenantId, a);
      expect(await runDurableObjectAlarm(agentStub(s.tenantId, a))).toBe(true);
      expect(await locksOf(s.tenantId, a)).toBe(0);
    }
    expect(await balances(s)).toEqual([80, 110, 110]);
    // The coordinator's own phase two then finds every commit already applied: no double apply.
    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    await expectAllOrNothing(s, 'committed');
    expect((await contextOf(s.key, s.agents[1] ?? '')).version).toBe(2);
  });

  it('coordinator crashes in the middle of phase two (commit): the rest is committed, the first exactly once', async () => {
    const s = await setup(3);
    const coordinator = coordinatorStub(s.name);
    await coordinator.begin(s.input);
    await coordinator.prepareAll();
    expect(await coordinator.decide()).toBe('committed');
    expect(await agentStub(s.tenantId, s.agents[0] ?? '').commit(s.txId)).toEqual({ ok: true, value: { version: 2 } });
    await abortAllDurableObjects();

    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    await expectAllOrNothing(s, 'committed');
    const tx = await api(`/v1/transactions/${s.txId}`, { key: s.key });
    expect(tx.body.versions).toEqual(Object.fromEntries(s.agents.map((a) => [a, 2])));
  });

  it('coordinator crashes in the middle of phase two (abort): every lock is released, nothing applied', async () => {
    const s = await setup(3, { amount: 60 }); // 120 out of a balance of 100: the guard refuses
    const coordinator = coordinatorStub(s.name);
    await coordinator.begin(s.input);
    await coordinator.prepareAll();
    expect(await coordinator.decide()).toBe('aborted');
    // Prepares after the no (if any were still pending) may hold locks: abort only one of them.
    await agentStub(s.tenantId, s.agents[1] ?? '').abort(s.txId);
    await abortAllDurableObjects();

    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    const tx = await api(`/v1/transactions/${s.txId}`, { key: s.key });
    expect(tx.body).toMatchObject({ status: 'aborted', reason: 'guard_failed', agentId: s.agents[0], completed: true });
    expect(await balances(s)).toEqual([100, 100, 100]);
    await expectNoLocks(s);
  });

  it('participants crash between prepare and commit: their prepared rows survive and the commit lands', async () => {
    const s = await setup(3);
    const coordinator = coordinatorStub(s.name);
    await coordinator.begin(s.input);
    await coordinator.prepareAll();
    await abortAllDurableObjects(); // every participant restarts while prepared
    for (const a of s.agents) expect(await locksOf(s.tenantId, a)).toBe(1);
    expect((await api(`/v1/agents/${s.agents[0]}/context`, { method: 'PATCH', key: s.key, body: { x: 1 } })).status).toBe(409);

    const fresh = coordinatorStub(s.name);
    expect(await fresh.decide()).toBe('committed');
    expect(await fresh.phaseTwo()).toBe(true);
    await expectAllOrNothing(s, 'committed');
  });

  it('a keyed transaction replayed after its coordinator crashed mid-prepare returns the recovered outcome', async () => {
    const idempotencyKey = `crash-${Date.now()}`;
    const s = await setup(2, { keyed: idempotencyKey });
    const body = { ...transfer(s.agents[0] ?? '', s.agents[1] ?? '', 10), timeoutMs: 5_000 };
    const fingerprint = await sha256Hex(canonicalJson(body));
    const operations = [
      { agentId: s.agents[0], route: { jurisdiction: null, locationHint: null }, operation: body.operations[0] && { increment: body.operations[0].increment, min: body.operations[0].min } },
      { agentId: s.agents[1], route: { jurisdiction: null, locationHint: null }, operation: { increment: { balance: 10 } } },
    ];
    await coordinatorStub(s.name).begin({ ...s.input, fingerprint, operations });
    expect((await prepareDirectly(s, 1)).ok).toBe(true);
    await abortAllDurableObjects();

    const replay = await api('/v1/transactions', { key: s.key, body, headers: { 'idempotency-key': idempotencyKey } });
    expect(replay.status).toBe(409);
    expect(replay.body).toMatchObject({ id: s.txId, status: 'aborted', reason: 'timeout' });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    await expectAllOrNothing(s, 'aborted');
  });
});

// An operator's override of a lock whose coordinator cannot answer (durable/transaction-heuristics.ts).
// A coordinator is made unreachable the way a lost or corrupted storage would make it: its log
// table is renamed away (every call to it then throws) and its alarm deleted; renaming it back
// is the coordinator coming back.
describe('transactions: an operator resolves a lock whose coordinator cannot answer', () => {
  const lockPath = (tenant: string, agent: string) => `/v1/admin/tenants/${tenant}/agents/${agent}/lock`;
  const resolvePath = (tenant: string, agent: string, txId: string) => `/v1/admin/tenants/${tenant}/agents/${agent}/transactions/${txId}/resolve`;
  const resolve = (s: Setup, i: number, body: unknown, txId = s.txId) => api(resolvePath(s.tenantId, s.agents[i] ?? '', txId), { key: ADMIN(), body });

  const coordinatorGone = (s: Setup) =>
    runInDurableObject(coordinatorStub(s.name), async (_i, state) => {
      state.storage.sql.exec('ALTER TABLE tx RENAME TO tx_lost');
      await state.storage.deleteAlarm();
    });
  const coordinatorBack = (s: Setup) => runInDurableObject(coordinatorStub(s.name), (_i, state) => void state.storage.sql.exec('ALTER TABLE tx_lost RENAME TO tx'));
  /** The transaction's deadline has passed for the agent's lock. */
  const pastDeadline = (s: Setup, i: number) =>
    runInDurableObject(agentStub(s.tenantId, s.agents[i] ?? ''), (_i, state) => void state.storage.sql.exec('UPDATE tx_prepared SET deadline_at = ?', Date.now() - 1));
  const eventsOf = (s: Setup, i: number) =>
    runInDurableObject(agentStub(s.tenantId, s.agents[i] ?? ''), (_i, state) =>
      state.storage.sql.exec<{ type: string; data: string }>("SELECT type, data FROM events WHERE type LIKE 'transaction.%' ORDER BY seq").toArray().map((e) => ({ type: e.type, data: JSON.parse(e.data) })),
    );

  async function prepared(n: number): Promise<Setup> {
    const s = await setup(n);
    const coordinator = coordinatorStub(s.name);
    await coordinator.begin(s.input);
    await coordinator.prepareAll();
    return s;
  }

  it("shows the agent's lock to the operator only, for the agent's own tenant, with the coordinator's failures", async () => {
    const s = await setup(2);
    await coordinatorStub(s.name).begin(s.input);
    expect((await prepareDirectly(s, 0)).ok).toBe(true);

    const seen = await api(lockPath(s.tenantId, s.agents[0] ?? ''), { key: ADMIN() });
    expect(seen.status).toBe(200);
    expect(seen.body).toMatchObject({ agentId: s.agents[0], lock: { transactionId: s.txId, coordinator: s.name, inquiries: 0, lastInquiryAt: null, lastError: null, contextVersion: 1 } });
    expect(Date.parse(seen.body.lock.expiresAt)).toBeGreaterThan(Date.parse(seen.body.lock.deadlineAt));
    expect((await api(lockPath(s.tenantId, s.agents[1] ?? ''), { key: ADMIN() })).body).toEqual({ agentId: s.agents[1], lock: null });
    expect((await api(lockPath(s.tenantId, s.agents[0] ?? ''), { key: s.key })).status).toBe(401);
    const other = await newTenant();
    expect((await api(lockPath(other.tenantId, s.agents[0] ?? ''), { key: ADMIN() })).status).toBe(404);
    expect((await api(lockPath(s.tenantId, 'no-such-agent'), { key: ADMIN() })).status).toBe(404);

    // The agent's own alarm asks a coordinator that keeps failing: counted, and why, on the lock.
    await coordinatorGone(s);
    await expirePrepared(s.tenantId, s.agents[0] ?? '');
    // Its alarm may also be due for its outbox and run first: either way the lock was asked about.
    await runDurableObjectAlarm(agentStub(s.tenantId, s.agents[0] ?? ''));
    const lock = await eventually(async () => {
      const read = (await api(lockPath(s.tenantId, s.agents[0] ?? ''), { key: ADMIN() })).body.lock;
      return read?.inquiries >= 1 && read;
    });
    expect(lock).toMatchObject({ transactionId: s.txId, lastError: expect.stringContaining('tx') });
    expect(lock.lastInquiryAt).not.toBeNull();
  });

  it("applies the coordinator's decision when it answers, whatever the operator asked", async () => {
    const s = await prepared(2);
    expect(await coordinatorStub(s.name).decide()).toBe('committed');

    const res = await resolve(s, 0, { outcome: 'abort', reason: 'ticket 7' });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ transactionId: s.txId, agentId: s.agents[0], status: 'committed', source: 'coordinator', heuristic: false, contextVersion: 2 });
    expect(await locksOf(s.tenantId, s.agents[0] ?? '')).toBe(0);
    expect((await eventsOf(s, 0)).map((e) => e.data)).toEqual([{ transactionId: s.txId, agentId: s.agents[0], status: 'committed', contextVersion: 2 }]);
    // The same resolve again (a retry whose first answer was lost) says what that one applied, and changes nothing.
    const again = await resolve(s, 0, { outcome: 'abort' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ ...res.body, replayed: true });
    // Another decision on the lock the first resolved is refused: it was already finished.
    const other = await resolve(s, 0, { outcome: 'commit' });
    expect(other.status).toBe(409);
    expect(other.body.error).toMatchObject({ code: 'already_finished', details: { status: 'committed', heuristic: false } });
    expect((await eventsOf(s, 0)).length).toBe(1);
    expect(await coordinatorStub(s.name).phaseTwo()).toBe(true);
    // One the agent decided without a resolve (here phase two) is refused whatever it asks.
    for (const outcome of ['commit', 'abort']) {
      const decidedAlone = await resolve(s, 1, { outcome });
      expect(decidedAlone.status, outcome).toBe(409);
      expect(decidedAlone.body.error).toMatchObject({ code: 'already_finished', details: { status: 'committed' } });
    }
    await expectAllOrNothing(s, 'committed');
  });

  it('leaves an undecided coordinator to finish before its deadline, and takes its abort after it', async () => {
    const s = await prepared(2);
    const early = await resolve(s, 0, { outcome: 'commit' });
    expect(early.status).toBe(409);
    expect(early.body.error).toMatchObject({ code: 'conflict', details: { coordinator: 'preparing' } });
    expect(await locksOf(s.tenantId, s.agents[0] ?? '')).toBe(1);

    await runInDurableObject(coordinatorStub(s.name), (_i, state) => void state.storage.sql.exec('UPDATE tx SET deadline_at = 0'));
    const late = await resolve(s, 0, { outcome: 'commit' });
    expect(late.status).toBe(200);
    expect(late.body).toMatchObject({ status: 'aborted', source: 'coordinator', heuristic: false, contextVersion: 1 });
  });

  it("says, just past the deadline, that the coordinator's grace is what it waits for, not the deadline", async () => {
    const s = await prepared(2);
    // Past the deadline by a millisecond: the coordinator gives the run that owns the transaction
    // a grace (1 s) before taking it for crashed, and answers undecided until then.
    const deadline = Date.now() - 1;
    await runInDurableObject(coordinatorStub(s.name), (_i, state) => void state.storage.sql.exec('UPDATE tx SET deadline_at = ?', deadline));
    await runInDurableObject(agentStub(s.tenantId, s.agents[0] ?? ''), (_i, state) => void state.storage.sql.exec('UPDATE tx_prepared SET deadline_at = ?', deadline));
    const res = await resolve(s, 0, { outcome: 'commit' });
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({ code: 'conflict', details: { coordinator: 'preparing', deadlineAt: new Date(deadline).toISOString() } });
    expect(res.body.error.message).not.toContain('has not passed');
    expect(res.body.error.message).toContain('grace');
    expect(await locksOf(s.tenantId, s.agents[0] ?? '')).toBe(1);
  });

  it.each(['commit', 'abort'] as const)("applies the operator's %s when the coordinator cannot be reached, recorded as heuristic", async (outcome) => {
    const s = await prepared(2);
    await coordinatorGone(s);
    // Within the deadline phase one may still be running: no heuristic decision yet.
    const early = await resolve(s, 0, { outcome });
    expect(early.status).toBe(409);
    expect(early.body.error).toMatchObject({ code: 'conflict', details: { coordinator: 'unreachable' } });

    const status = outcome === 'commit' ? 'committed' : 'aborted';
    for (const i of [0, 1]) {
      await pastDeadline(s, i);
      const res = await resolve(s, i, { outcome, reason: 'coordinator storage lost' });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ transactionId: s.txId, agentId: s.agents[i], status, source: 'operator', heuristic: true, contextVersion: outcome === 'commit' ? 2 : 1 });
      const version = outcome === 'commit' ? 2 : null;
      expect(await eventsOf(s, i)).toEqual([{ type: `transaction.${status}`, data: { transactionId: s.txId, agentId: s.agents[i], status, contextVersion: version, heuristic: true } }]);
    }
    await expectNoLocks(s);
    // A commit writes the context the prepare computed, as the coordinator's commit would.
    expect(await balances(s)).toEqual(outcome === 'commit' ? [90, 110] : [100, 100]);
    expect((await api(`/v1/agents/${s.agents[0]}/context`, { method: 'PATCH', key: s.key, body: { unlocked: true } })).status).toBe(200);

    const audit = await api(`/v1/admin/audit?tenant=${s.tenantId}&action=transaction.resolve`, { key: ADMIN() });
    expect(audit.body.data).toHaveLength(2);
    expect(audit.body.data[0]).toMatchObject({ actor: 'operator', target: s.txId, details: { agentId: s.agents[1], status, source: 'operator', heuristic: true, requested: outcome, reason: 'coordinator storage lost' } });
  });

  it('records a resolve whose answer was lost as unknown, since the agent may have applied it', async () => {
    const s = await prepared(2);
    await coordinatorGone(s);
    await pastDeadline(s, 0);
    // env.AGENTS whose stubs apply the resolve, then fail as the platform does when the object resets before answering.
    const real = env.AGENTS;
    const answerLost = new Proxy(real, {
      get: (target, prop) => {
        if (prop !== 'get') {
          const value: unknown = Reflect.get(target, prop, target);
          return typeof value === 'function' ? value.bind(target) : value;
        }
        return (...args: Parameters<typeof real.get>) => {
          const stub = real.get(...args);
          const lost = async (...call: unknown[]) => {
            await (stub as unknown as { resolveTransaction(...a: unknown[]): Promise<unknown> }).resolveTransaction(...call);
            throw Object.assign(new Error('Network connection lost.'), { retryable: true });
          };
          return new Proxy(stub, { get: (t, p) => (p === 'resolveTransaction' ? lost : Reflect.get(t, p, t)) });
        };
      },
    });
    const res = await createApp().request(resolvePath(s.tenantId, s.agents[0] ?? '', s.txId), { method: 'POST', body: JSON.stringify({ outcome: 'abort', reason: 'ticket 9' }), headers: { authorization: `Bearer ${ADMIN()}`, 'content-type': 'application/json' } }, { ...env, AGENTS: answerLost });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('agent_unavailable');
    // It was applied: the same resolve again says so, with what the lost answer would have said.
    const again = await resolve(s, 0, { outcome: 'abort' });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ transactionId: s.txId, agentId: s.agents[0], status: 'aborted', source: 'operator', heuristic: true, contextVersion: 1, replayed: true });
    expect(await eventsOf(s, 0)).toHaveLength(1);
    const audit = await api(`/v1/admin/audit?tenant=${s.tenantId}&action=transaction.resolve`, { key: ADMIN() });
    expect(audit.body.data).toHaveLength(2);
    expect(audit.body.data[1]).toMatchObject({ actor: 'operator', target: s.txId, details: { agentId: s.agents[0], status: 'unknown', requested: 'abort', reason: 'ticket 9' } });
    expect(audit.body.data[0]).toMatchObject({ actor: 'operator', target: s.txId, details: { agentId: s.agents[0], status: 'aborted', source: 'operator', heuristic: true, requested: 'abort', replayed: true } });
    // Another decision is refused as before.
    const other = await resolve(s, 0, { outcome: 'commit' });
    expect(other.status).toBe(409);
    expect(other.body.error).toMatchObject({ code: 'already_finished', details: { status: 'aborted', heuristic: true } });
  });

  it('refuses a resolve naming another transaction, another tenant, no admin token or a bad body', async () => {
    const s = await prepared(1);
    const other = newId('tx');
    const wrong = await resolve(s, 0, { outcome: 'abort' }, other);
    expect(wrong.status).toBe(409);
    expect(wrong.body.error).toMatchObject({ code: 'agent_locked', details: { transactionId: s.txId } });
    // Naming another transaction does not get better by waiting.
    expect(wrong.headers.get('retry-after')).toBeNull();
    const free = await agentWith(s.key, { balance: 1 });
    const none = await api(resolvePath(s.tenantId, free, s.txId), { key: ADMIN(), body: { outcome: 'abort' } });
    expect(none.status).toBe(404);
    expect(none.body.error.code).toBe('not_found');
    const stranger = await newTenant();
    expect((await api(resolvePath(stranger.tenantId, s.agents[0] ?? '', s.txId), { key: ADMIN(), body: { outcome: 'abort' } })).status).toBe(404);
    expect((await api(resolvePath(s.tenantId, s.agents[0] ?? '', s.txId), { key: s.key, body: { outcome: 'abort' } })).status).toBe(401);
    for (const body of [{ outcome: 'maybe' }, {}, { outcome: 'abort', extra: 1 }]) expect((await resolve(s, 0, body)).status).toBe(400);
    expect(await locksOf(s.tenantId, s.agents[0] ?? '')).toBe(1);
  });

  it("acknowledges a coordinator's later decision that contradicts the operator's, applies nothing, and shows the mismatch", async () => {
    const s = await prepared(2);
    expect(await coordinatorStub(s.name).decide()).toBe('committed');
    await coordinatorGone(s);
    await pastDeadline(s, 0);
    expect((await resolve(s, 0, { outcome: 'abort' })).body).toMatchObject({ status: 'aborted', source: 'operator', heuristic: true });
    // The coordinator comes back after the day other tombstones are kept: the operator's is still there.
    const stub: DurableObjectStub = agentStub(s.tenantId, s.agents[0] ?? '');
    await runInDurableObject(stub, (instance, state) => {
      state.storage.sql.exec('UPDATE tx_outcomes SET decided_at = 0');
      (instance as unknown as { prune(now: number): void }).prune(Date.now());
    });

    await coordinatorBack(s);
    // Phase two completes: the participant acknowledged instead of refusing, so no retry is left.
    expect(await coordinatorStub(s.name).phaseTwo()).toBe(true);
    const tx = await api(`/v1/transactions/${s.txId}`, { key: s.key });
    expect(tx.body).toMatchObject({ status: 'committed', completed: true });
    expect(tx.body.participants).toEqual([
      { agentId: s.agents[0], vote: 'yes', acknowledged: true, heuristicMismatch: true },
      { agentId: s.agents[1], vote: 'yes', acknowledged: true },
    ]);
    expect(await balances(s)).toEqual([100, 110]);
    expect((await eventsOf(s, 0)).map((e) => e.type)).toEqual(['transaction.aborted']);
    await expectNoLocks(s);
  });

  it('resumes phase two once a coordinator that lost its alarm while failing starts again, so the mismatch still shows', async () => {
    const s = await prepared(2);
    expect(await coordinatorStub(s.name).decide()).toBe('committed');
    // Failing past its alarm's retries, the coordinator is left with no alarm at all.
    await coordinatorGone(s);
    await pastDeadline(s, 0);
    expect((await resolve(s, 0, { outcome: 'abort' })).body).toMatchObject({ status: 'aborted', source: 'operator' });
    await coordinatorBack(s);
    await abortAllDurableObjects();
    // Any start of it (here a read) finds phase two unfinished, and arms the alarm that finishes it.
    expect((await api(`/v1/transactions/${s.txId}`, { key: s.key })).body).toMatchObject({ status: 'committed', completed: false });
    expect(await runDurableObjectAlarm(coordinatorStub(s.name))).toBe(true);
    const tx = await api(`/v1/transactions/${s.txId}`, { key: s.key });
    expect(tx.body).toMatchObject({ status: 'committed', completed: true });
    expect(tx.body.participants[0]).toEqual({ agentId: s.agents[0], vote: 'yes', acknowledged: true, heuristicMismatch: true });
    expect(await balances(s)).toEqual([100, 110]);
    await expectNoLocks(s);
  });
});
