import { env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { abortReasonOf } from '../durable/transaction';
import { createApp } from '../worker/app';
import { newId } from '../worker/lib/ids';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { agentStub, agentWith, contextOf, coordinatorStub, coordinatorTables, locksOf, transfer } from './support/transactions';

describe('transactions: the API', () => {
  it('commits a transfer across two agents and reports the new versions', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 5, owner: 'bob' });
    const res = await api('/v1/transactions', { key, body: transfer(a, b, 30) });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: expect.stringMatching(/^tx_/), status: 'committed', versions: { [a]: 2, [b]: 2 } });
    expect(await contextOf(key, a)).toEqual({ version: 2, data: { balance: 70 } });
    expect(await contextOf(key, b)).toEqual({ version: 2, data: { balance: 35, owner: 'bob' } });
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);

    const got = await api(`/v1/transactions/${res.body.id}`, { key });
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ id: res.body.id, status: 'committed', completed: true, versions: { [a]: 2, [b]: 2 } });
    expect(got.body.participants).toEqual([{ agentId: a, vote: 'yes', acknowledged: true }, { agentId: b, vote: 'yes', acknowledged: true }]);
  });

  it('applies patches and increments together, a missing counter starting at 0', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { profile: { name: 'Ada' } });
    const b = await agentWith(key, { tags: ['x'] });
    const res = await api('/v1/transactions', {
      key,
      body: { operations: [{ agentId: a, patch: { profile: { tier: 'gold' } }, increment: { points: 10 } }, { agentId: b, patch: { tags: null, done: true } }] },
    });
    expect(res.status).toBe(200);
    expect((await contextOf(key, a)).data).toEqual({ profile: { name: 'Ada', tier: 'gold' }, points: 10 });
    expect((await contextOf(key, b)).data).toEqual({ done: true });
  });

  it('aborts a transfer that would break a min guard, applying nothing', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 20 });
    const b = await agentWith(key, { balance: 0 });
    const res = await api('/v1/transactions', { key, body: transfer(a, b, 30) });
    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ status: 'aborted', reason: 'guard_failed', agentId: a });
    expect(await contextOf(key, a)).toEqual({ version: 1, data: { balance: 20 } });
    expect(await contextOf(key, b)).toEqual({ version: 1, data: { balance: 0 } });
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);
    const got = await api(`/v1/transactions/${res.body.id}`, { key });
    expect(got.body).toMatchObject({ status: 'aborted', reason: 'guard_failed', agentId: a, completed: true });
  });

  it('aborts on an ifVersion mismatch and on an increment of a non-number', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 20, name: 'x' });
    const b = await agentWith(key, { balance: 0 });
    const stale = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, patch: { n: 1 }, ifVersion: 0 }, { agentId: b, patch: { n: 1 }, ifVersion: 1 }] } });
    expect(stale.status).toBe(409);
    expect(stale.body).toMatchObject({ reason: 'version_mismatch', agentId: a });
    const nan = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, increment: { name: 1 } }, { agentId: b, increment: { balance: 1 } }] } });
    expect(nan.status).toBe(409);
    expect(nan.body).toMatchObject({ reason: 'invalid_request', agentId: a });
    expect((await contextOf(key, b)).version).toBe(1);
    const fresh = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, patch: { n: 1 }, ifVersion: 1 }, { agentId: b, patch: { n: 1 }, ifVersion: 1 }] } });
    expect(fresh.status).toBe(200);
  });

  it('replays an Idempotency-Key without running twice, and refuses it with another body', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0 });
    const headers = { 'idempotency-key': 'transfer-1' };
    const first = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    const again = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await contextOf(key, a)).data.balance).toBe(90);
    const reused = await api('/v1/transactions', { key, body: transfer(a, b, 20), headers });
    expect(reused.status).toBe(422);
    expect(reused.body.error.code).toBe('idempotency_key_reused');
    const got = await api(`/v1/transactions/${first.body.id}`, { key });
    expect(got.status).toBe(200);
    expect(got.body.status).toBe('committed');
  });

  it('replays an abort under its key as it replays a commit: a retry of agent_locked needs a new key (README)', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0 });
    const held = await agentStub(tenantId, a).prepare('tx_held_key', { coordinatorName: `${tenantId}/tx_held_key`, operation: { patch: { held: true } }, deadlineAt: Date.now() + 60_000 });
    expect(held.ok).toBe(true);
    const headers = { 'idempotency-key': 'transfer-while-locked' };
    const first = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    expect(first.status).toBe(409);
    expect(first.body).toMatchObject({ status: 'aborted', reason: 'agent_locked', agentId: a });
    expect(await agentStub(tenantId, a).abort('tx_held_key')).toEqual({ ok: true, value: { aborted: true } });
    // The lock is gone, but the key's outcome is the abort: the same 409, never a second run.
    const again = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    expect(again.status).toBe(409);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await contextOf(key, a)).data).toEqual({ balance: 100 });
    const retried = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers: { 'idempotency-key': 'transfer-while-locked-2' } });
    expect(retried.status).toBe(200);
    expect((await contextOf(key, b)).data.balance).toBe(10);
  });

  it('answers a repeated key with the recorded outcome even after a participant was deleted', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0 });
    const headers = { 'idempotency-key': 'transfer-then-delete' };
    const first = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    expect(first.status).toBe(200);
    expect((await api(`/v1/agents/${b}`, { key, method: 'DELETE' })).status).toBe(204);
    const again = await api('/v1/transactions', { key, body: transfer(a, b, 10), headers });
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    // Without the key, or with a key never used, the missing agent is a 404 as before.
    expect((await api('/v1/transactions', { key, body: transfer(a, b, 10) })).status).toBe(404);
    expect((await api('/v1/transactions', { key, body: transfer(a, b, 10), headers: { 'idempotency-key': 'never-used' } })).status).toBe(404);
    expect((await contextOf(key, a)).data.balance).toBe(90);
  });

  it("hides one tenant's transactions from another", async () => {
    const owner = await newTenant();
    const other = await newTenant();
    const a = await agentWith(owner.key, { balance: 1 });
    const b = await agentWith(owner.key, { balance: 1 });
    const res = await api('/v1/transactions', { key: owner.key, body: transfer(a, b, 1) });
    expect((await api(`/v1/transactions/${res.body.id}`, { key: other.key })).status).toBe(404);
    expect((await api('/v1/transactions/tx_01jzzzzzzzzzzzzzzzzzzzzzzz', { key: owner.key })).status).toBe(404);
    expect((await api('/v1/transactions/nope', { key: owner.key })).status).toBe(404);
  });
});

describe('transactions: bad input is refused before anything is locked', () => {
  it('answers 400 for empty, duplicate, oversized and non-object operations, 404 for unknown agents', async () => {
    const { key, tenantId } = await newTenant();
    const other = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const b = await agentWith(key, { balance: 10 });
    const foreign = await agentWith(other.key, { balance: 10 });
    const post = (body: unknown) => api('/v1/transactions', { key, body });
    const cases: [unknown, number][] = [
      [{ operations: [] }, 400],
      [{}, 400],
      [{ operations: [{ agentId: a, patch: { x: 1 } }, { agentId: a, patch: { y: 1 } }] }, 400],
      [{ operations: Array.from({ length: 17 }, (_, i) => ({ agentId: `agent-${i}`, patch: { x: 1 } })) }, 400],
      [{ operations: [{ agentId: a, patch: [1, 2] }, { agentId: b, patch: { x: 1 } }] }, 400],
      [{ operations: [{ agentId: a, patch: 'text' }, { agentId: b, patch: { x: 1 } }] }, 400],
      [{ operations: [{ agentId: a }, { agentId: b, patch: { x: 1 } }] }, 400],
      [{ operations: [{ agentId: a, increment: { balance: 'ten' } }] }, 400],
      [{ operations: [{ agentId: a, patch: { x: 1 }, extra: true }] }, 400],
      [{ operations: [{ agentId: a, patch: { x: 1 } }], timeoutMs: 10 }, 400],
      [{ operations: [{ agentId: a, patch: { x: 1 } }, { agentId: foreign, patch: { x: 1 } }] }, 404],
      [{ operations: [{ agentId: a, patch: { x: 1 } }, { agentId: 'no-such-agent', patch: { x: 1 } }] }, 404],
    ];
    for (const [body, status] of cases) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body).slice(0, 120)).toBe(status);
      expect(res.body.error.code).toBe(status === 400 ? 'invalid_request' : 'not_found');
    }
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b), await locksOf(other.tenantId, foreign)]).toEqual([0, 0, 0]);
    expect((await contextOf(key, a)).version).toBe(1);
    expect((await contextOf(other.key, foreign)).version).toBe(1);
    expect((await api(`/v1/agents/${a}/context`, { method: 'PATCH', key, body: { ok: true } })).status).toBe(200);
  });
});

describe('transactions: locks and conflicts', () => {
  it('refuses writes to a prepared agent with 409 agent_locked until the transaction ends', async () => {
    const { key, tenantId } = await newTenant();
    const a = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const b = await agentWith(key, { balance: 1 });
    const stub = agentStub(tenantId, a);
    const vote = await stub.prepare('tx_held', { coordinatorName: `${tenantId}/tx_held`, operation: { patch: { held: true } }, deadlineAt: Date.now() + 60_000 });
    expect(vote).toEqual({ ok: true, value: { version: 1 } });

    const patch = await api(`/v1/agents/${a}/context`, { method: 'PATCH', key, body: { x: 1 } });
    expect(patch.status).toBe(409);
    expect(patch.body.error).toMatchObject({ code: 'agent_locked', details: { transactionId: 'tx_held' } });
    // A lock lasts from prepare to commit, milliseconds as a rule: "retry shortly", as a header says it.
    expect(patch.headers.get('retry-after')).toBe('1');
    const tx = await api('/v1/transactions', { key, body: { operations: [{ agentId: b, patch: { y: 1 } }, { agentId: a, patch: { y: 1 } }] } });
    expect(tx.status).toBe(409);
    expect(tx.body).toMatchObject({ status: 'aborted', reason: 'agent_locked', agentId: a });
    expect(await locksOf(tenantId, b)).toBe(0);
    const exec = await api(`/v1/agents/${a}/executions`, { key, body: { intent: 'x', input: { mock: { contextPatch: { fromExecution: true } } } } });
    // A write refused by the lock is 409 agent_locked on every face, naming the failed execution.
    expect(exec.status).toBe(409);
    expect(exec.body.error).toMatchObject({ code: 'agent_locked', details: { executionId: expect.any(String), execution: { status: 'failed', error: { code: 'agent_locked' } } } });
    expect(exec.headers.get('location')).toBe(`/v1/agents/${a}/executions/${exec.body.error.details.executionId}`);
    expect(exec.headers.get('retry-after')).toBe('1');
    // A chat turn through the agent patches nothing itself: this agent's upstream always answers a patch.
    const patching = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?contextPatch=${encodeURIComponent('{"fromChat":true}')}`) } });
    expect((await agentStub(tenantId, patching).prepare('tx_held2', { coordinatorName: `${tenantId}/tx_held2`, operation: { patch: { held: true } }, deadlineAt: Date.now() + 60_000 })).ok).toBe(true);
    const chat = await api('/v1/chat/completions', { key, body: { model: `agent:${patching}`, messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(409);
    expect(chat.body.error.code).toBe('agent_locked');
    expect(chat.headers.get('retry-after')).toBe('1');
    expect(await agentStub(tenantId, patching).abort('tx_held2')).toEqual({ ok: true, value: { aborted: true } });
    const deleting = await api(`/v1/agents/${a}`, { method: 'DELETE', key });
    expect(deleting.status).toBe(409);
    expect(deleting.headers.get('retry-after')).toBe('1');

    expect(await stub.abort('tx_held')).toEqual({ ok: true, value: { aborted: true } });
    expect(await stub.abort('tx_held')).toEqual({ ok: true, value: { aborted: true } });
    expect(await locksOf(tenantId, a)).toBe(0);
    expect((await contextOf(key, a)).data).toEqual({});
    expect((await api(`/v1/agents/${a}/context`, { method: 'PATCH', key, body: { x: 1 } })).status).toBe(200);
    // A prepare arriving after the abort (a late message) is refused, so it cannot re-lock.
    const late = await stub.prepare('tx_held', { coordinatorName: `${tenantId}/tx_held`, operation: { patch: { held: true } }, deadlineAt: Date.now() + 60_000 });
    expect(late.ok).toBe(false);
    expect(await locksOf(tenantId, a)).toBe(0);
  });

  it('refuses a prepare that arrives while the agent is being deleted, so no commit lands in a deleted agent', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const stub = agentStub(tenantId, a);
    // A flush in flight (a D1 write): the deletion waits for it after its lock check, and
    // other calls reach the object meanwhile.
    let release: () => void = () => undefined;
    await runInDurableObject(stub as DurableObjectStub, (instance) => {
      (instance as unknown as { background: { flushChain: Promise<void> } }).background.flushChain = new Promise<void>((resolve) => { release = resolve; });
    });
    const deleting = stub.destroy();
    // The prepare must come while the deletion waits, not before it began (calls may reach the object in either order).
    await eventually(() => runInDurableObject(stub as DurableObjectStub, (instance) => (instance as unknown as { tx: { deleting: number } }).tx.deleting > 0));
    const vote = await stub.prepare('tx_during_delete', { coordinatorName: `${tenantId}/tx_during_delete`, operation: { increment: { balance: 5 } }, deadlineAt: Date.now() + 60_000 });
    await runInDurableObject(stub as DurableObjectStub, () => release());
    expect(await deleting).toEqual({ ok: true, value: { deleted: true } });
    // A yes here would be wiped by the deletion, and the coordinator would commit into nothing.
    expect(vote).toMatchObject({ ok: false, code: 'not_found' });
    // The object is usable again: an agent created under the same id can take part.
    expect((await api('/v1/agents', { key, body: { id: a } })).status).toBe(201);
    expect((await stub.prepare('tx_after_delete', { coordinatorName: `${tenantId}/tx_after_delete`, operation: { increment: { balance: 5 } }, deadlineAt: Date.now() + 60_000 })).ok).toBe(true);
    expect(await stub.abort('tx_after_delete')).toEqual({ ok: true, value: { aborted: true } });
  });

  it('lets one of two concurrent transactions on the same versions commit, and aborts the other', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const b = await agentWith(key, { balance: 10 });
    const c = await agentWith(key, { balance: 10 });
    const [first, second] = await Promise.all([
      api('/v1/transactions', { key, body: { operations: [{ agentId: a, increment: { balance: -5 }, ifVersion: 1 }, { agentId: b, increment: { balance: 5 }, ifVersion: 1 }] } }),
      api('/v1/transactions', { key, body: { operations: [{ agentId: a, increment: { balance: -7 }, ifVersion: 1 }, { agentId: c, increment: { balance: 7 }, ifVersion: 1 }] } }),
    ]);
    expect([first.status, second.status].sort()).toEqual([200, 409]);
    const loser = first.status === 409 ? first : second;
    expect(['agent_locked', 'version_mismatch']).toContain(loser.body.reason);
    const balances = [(await contextOf(key, a)).data.balance, (await contextOf(key, b)).data.balance, (await contextOf(key, c)).data.balance];
    // Whichever prepared agent a first wins; the other leaves no trace.
    expect(balances).toEqual(first.status === 200 ? [5, 15, 10] : [3, 10, 17]);
    for (const id of [a, b, c]) expect(await locksOf(tenantId, id)).toBe(0);
  });

  it('never applies two transactions over each other on one agent without versions either', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const others = await Promise.all([1, 2, 3, 4, 5].map(() => agentWith(key, { balance: 0 })));
    const results = await Promise.all(others.map((o) => api('/v1/transactions', { key, body: transfer(a, o, 10) })));
    const committed = results.filter((r) => r.status === 200).length;
    expect(committed).toBeGreaterThanOrEqual(1);
    expect(results.every((r) => r.status === 200 || (r.status === 409 && r.body.reason === 'agent_locked'))).toBe(true);
    const ctx = await contextOf(key, a);
    expect(ctx.data.balance).toBe(100 - 10 * committed);
    expect(ctx.version).toBe(1 + committed);
  });
});

describe('transactions: edges', () => {
  it('keeps no coordinator storage for a transaction that never began: a GET of an unknown id, a keyed POST refused', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const unknown = newId('tx');
    expect((await api(`/v1/transactions/${unknown}`, { key })).status).toBe(404);
    expect(await coordinatorTables(`${tenantId}/${unknown}`)).toEqual([]);

    const refused = await api('/v1/transactions', { key, body: transfer(a, 'no-such-agent', 1), headers: { 'idempotency-key': 'refused-first' } });
    expect(refused.status).toBe(404);
    expect(await coordinatorTables(`${tenantId}/key/refused-first`)).toEqual([]);

    // The same key then runs a transaction as new, and its coordinator keeps it.
    const b = await agentWith(key, { balance: 0 });
    const ran = await api('/v1/transactions', { key, body: transfer(a, b, 1), headers: { 'idempotency-key': 'refused-first' } });
    expect(ran.status).toBe(200);
    expect(await coordinatorTables(`${tenantId}/key/refused-first`)).toEqual(expect.arrayContaining(['tx', 'participants']));
    expect((await api(`/v1/transactions/${ran.body.id}`, { key })).body.status).toBe('committed');
  });

  it('is documented in the OpenAPI document from the same schemas', async () => {
    const doc = (await api('/openapi.json')).body;
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/transactions', '/v1/transactions/{id}']));
    expect(Object.keys(doc.paths['/v1/transactions'].post.responses)).toEqual(expect.arrayContaining(['200', '404', '409', '422']));
    expect(doc.components.schemas).toHaveProperty('TransactionAborted');
  });

  it('commits across the maximum of 16 agents', async () => {
    const { key } = await newTenant();
    const agents = await Promise.all(Array.from({ length: 16 }, () => agentWith(key, { n: 1 })));
    const res = await api('/v1/transactions', { key, body: { operations: agents.map((agentId) => ({ agentId, increment: { n: 1 } })) } });
    expect(res.status).toBe(200);
    expect(Object.values(res.body.versions)).toEqual(Array(16).fill(2));
    for (const a of agents) expect((await contextOf(key, a)).data.n).toBe(2);
  });

  it('aborts when phase one outlives its deadline, leaving no lock behind', async () => {
    const { key, tenantId } = await newTenant();
    const agents = await Promise.all([1, 2, 3].map(() => agentWith(key, { n: 1 })));
    const txId = newId('tx');
    const name = `${tenantId}/${txId}`;
    const route = { jurisdiction: null, locationHint: null };
    // 1 ms (the API's minimum is 100): the deadline passes while the prepares are in flight.
    const result = await coordinatorStub(name).run({
      txId, tenantId, coordinatorName: name, fingerprint: null, timeoutMs: 1,
      operations: agents.map((agentId) => ({ agentId, route, operation: { increment: { n: 1 } } })),
    });
    expect(result.value.transaction.status).toBe('aborted');
    // Whichever side notices first (the coordinator's timer or the participant's clock), it is a timeout.
    expect(result.value.transaction.reason).toBe('timeout');
    for (const a of agents) {
      expect(await locksOf(tenantId, a)).toBe(0);
      expect((await contextOf(key, a)).data.n).toBe(1);
    }
  });

  it('reports reason timeout, not conflict, when a participant refuses a prepare that arrived after the deadline', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { n: 1 });
    const txId = newId('tx');
    const late = await agentStub(tenantId, a).prepare(txId, { coordinatorName: `${tenantId}/${txId}`, operation: { increment: { n: 1 } }, deadlineAt: Date.now() - 1 });
    expect(late.ok).toBe(false);
    expect(abortReasonOf(late)).toBe('timeout');
    expect(await locksOf(tenantId, a)).toBe(0);
  });

  it('aborts with reason not_found when an agent vanished between the edge check and its prepare', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { n: 1 });
    const txId = newId('tx');
    const name = `${tenantId}/${txId}`;
    const route = { jurisdiction: null, locationHint: null };
    const result = await coordinatorStub(name).run({
      txId, tenantId, coordinatorName: name, fingerprint: null, timeoutMs: 5_000,
      operations: [{ agentId: a, route, operation: { increment: { n: 1 } } }, { agentId: 'deleted-meanwhile', route, operation: { increment: { n: 1 } } }],
    });
    expect(result.value.transaction).toMatchObject({ status: 'aborted', reason: 'not_found', agentId: 'deleted-meanwhile', completed: true });
    expect(await locksOf(tenantId, a)).toBe(0);
    expect((await contextOf(key, a)).data.n).toBe(1);
  });

  it('aborts with internal_error, echoing nothing of it, when a participant fails to prepare with a fault of its own', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { n: 1 });
    const b = await agentWith(key, { n: 1 });
    // A bug in b's prepare, not the platform failing to reach it: neither unreachable nor transient.
    await runInDurableObject(agentStub(tenantId, b) as DurableObjectStub, (instance) => {
      (instance as unknown as { tx: { prepare(): never } }).tx.prepare = () => {
        throw new TypeError("Cannot read properties of undefined (reading 'tx_secret_column')");
      };
    });
    const res = await api('/v1/transactions', { key, body: { operations: [a, b].map((agentId) => ({ agentId, increment: { n: 1 } })) } });
    expect(res.status).toBe(409);
    // It was answered as agent_unavailable ("could not be reached"), with the exception's text.
    expect(res.body).toMatchObject({ status: 'aborted', reason: 'internal_error', agentId: b });
    expect(res.body.message).not.toContain('tx_secret_column');
    expect((await api(`/v1/transactions/${res.body.id}`, { key })).body.message).not.toContain('tx_secret_column');
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);
    expect([(await contextOf(key, a)).data.n, (await contextOf(key, b)).data.n]).toEqual([1, 1]);
  });

  it('aborts, and answers, when its log refuses to record a vote, instead of never ending phase one', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { n: 1 });
    const b = await agentWith(key, { n: 1 });
    const txId = newId('tx');
    const name = `${tenantId}/${txId}`;
    const route = { jurisdiction: null, locationHint: null };
    // The coordinator's storage refuses the write of b's vote (a transient refusal of the runtime's).
    await runInDurableObject(coordinatorStub(name), (instance) => {
      const log = (instance as unknown as { log: { recordVote(agentId: string, vote: string, version: number | null): void } }).log;
      const record = log.recordVote.bind(log);
      log.recordVote = (agentId, vote, version) => {
        if (agentId === b) throw new Error('SQLITE_FULL: database or disk is full');
        record(agentId, vote, version);
      };
    });
    const run = coordinatorStub(name).run({
      txId, tenantId, coordinatorName: name, fingerprint: null, timeoutMs: 1_000,
      operations: [a, b].map((agentId) => ({ agentId, route, operation: { increment: { n: 1 } } })),
    });
    // Phase one used to wait for that vote for good: the alarm aborted the transaction past its
    // deadline, but the run (and the client's POST, and every replay) never answered.
    const answer = await Promise.race([run, new Promise((resolve) => setTimeout(() => resolve('no answer after 6 s'), 6_000))]);
    expect(answer).toMatchObject({ ok: true, value: { transaction: { status: 'aborted', reason: 'internal_error', agentId: b } } });
    await eventually(async () => (await locksOf(tenantId, a)) + (await locksOf(tenantId, b)) === 0);
    expect([(await contextOf(key, a)).data.n, (await contextOf(key, b)).data.n]).toEqual([1, 1]);
  });

  it('answers GET of a keyed transaction with 503, not 404, while D1 is unreachable: only D1 knows its coordinator', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const b = await agentWith(key, { balance: 10 });
    const res = await api('/v1/transactions', { key, body: transfer(a, b, 5), headers: { 'idempotency-key': 'keyed-get-outage' } });
    expect(res.status).toBe(200);
    await env.DB.exec('ALTER TABLE transactions RENAME TO transactions_offline');
    try {
      // A 404 would tell the client the transfer does not exist, and a client that believes
      // it runs the transfer again under a new key.
      const got = await api(`/v1/transactions/${res.body.id}`, { key });
      expect(got.status).toBe(503);
      expect(got.body.error.code).toBe('unavailable');
      expect(got.headers.get('retry-after')).toBe('1');
    } finally {
      await env.DB.exec('ALTER TABLE transactions_offline RENAME TO transactions');
    }
    expect((await api(`/v1/transactions/${res.body.id}`, { key })).body).toMatchObject({ status: 'committed', completed: true });
    expect((await api(`/v1/transactions/${newId('tx')}`, { key })).status).toBe(404);
  });

  it('answers GET from the coordinator while D1 is unreachable, and indexes the transaction later from its alarm', async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const b = await agentWith(key, { balance: 10 });
    await env.DB.exec('ALTER TABLE transactions RENAME TO transactions_offline');
    let id: string;
    try {
      const res = await api('/v1/transactions', { key, body: transfer(a, b, 5) });
      expect(res.status).toBe(200);
      id = res.body.id;
      const got = await api(`/v1/transactions/${id}`, { key });
      expect(got.body).toMatchObject({ status: 'committed', completed: true });
    } finally {
      await env.DB.exec('ALTER TABLE transactions_offline RENAME TO transactions');
    }
    expect(await env.DB.prepare('SELECT status FROM transactions WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first()).toBeNull();
    expect(await runDurableObjectAlarm(coordinatorStub(`${tenantId}/${id}`))).toBe(true);
    expect(await env.DB.prepare('SELECT status FROM transactions WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first()).toEqual({ status: 'committed' });
  });
});

describe('a coordinator of a release before keyed replays (a gradual deployment)', () => {
  it('a keyed transaction naming a missing agent is 404 not_found, as that release answered, not a 500', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const real = env.TRANSACTIONS;
    const olderRelease = new Proxy(real, {
      get: (target, prop) => {
        if (prop === 'get') {
          return (...args: Parameters<typeof real.get>) => {
            const stub = real.get(...args);
            return new Proxy(stub, { get: (s, p) => (p === 'replay' ? () => Promise.reject(new TypeError('The RPC receiver does not implement the method "replay".')) : Reflect.get(s, p, s)) });
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const res = await createApp().request('/v1/transactions', { method: 'POST', body: JSON.stringify(transfer(a, 'never-created', 10)), headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': 'older-coordinator' } }, { ...env, TRANSACTIONS: olderRelease });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });
});

describe('a coordinator that becomes unreachable after it was reached', () => {
  /** env.TRANSACTIONS whose stubs run the real `run`, then fail as the platform does when the object resets before answering. */
  function answerLost(): typeof env.TRANSACTIONS {
    const real = env.TRANSACTIONS;
    return new Proxy(real, {
      get: (target, prop) => {
        if (prop === 'get') {
          return (...args: Parameters<typeof real.get>) => {
            const stub = real.get(...args);
            const lost = async (input: unknown) => {
              await (stub as unknown as { run(i: unknown): Promise<unknown> }).run(input);
              throw Object.assign(new Error('Network connection lost.'), { retryable: true });
            };
            return new Proxy(stub, { get: (s, p) => (p === 'run' ? lost : Reflect.get(s, p, s)) });
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  it('answers 503 naming the transaction, so a client can read how it ended instead of running it again', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0 });
    const res = await createApp().request('/v1/transactions', { method: 'POST', body: JSON.stringify(transfer(a, b, 30)), headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } }, { ...env, TRANSACTIONS: answerLost() });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { code: string; message: string; details?: { transactionId?: string } } };
    expect(body.error.code).toBe('unavailable');
    expect(res.headers.get('retry-after')).toBe('1');
    // It committed before the answer was lost: a blind retry would move the 30 twice.
    const id = body.error.details?.transactionId ?? '';
    expect(id).toMatch(/^tx_/);
    expect(res.headers.get('location')).toBe(`/v1/transactions/${id}`);
    const got = await api(`/v1/transactions/${id}`, { key });
    expect(got.body).toMatchObject({ status: 'committed' });
    expect((await contextOf(key, a)).data.balance).toBe(70);
  });

  it('points a keyed transaction to its key, whose replay answers the outcome', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0 });
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'idempotency-key': `lost-${a}` };
    const res = await createApp().request('/v1/transactions', { method: 'POST', body: JSON.stringify(transfer(a, b, 30)), headers }, { ...env, TRANSACTIONS: answerLost() });
    expect(res.status).toBe(503);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe('unavailable');
    expect(body.error.message).toContain('Idempotency-Key');
    const replay = await api('/v1/transactions', { key, body: transfer(a, b, 30), headers: { 'idempotency-key': `lost-${a}` } });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect((await contextOf(key, a)).data.balance).toBe(70);
  });
});
