import { runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { PHASE_TWO_WAIT_MS } from '../durable/transaction';
import { api, eventually, mockUrl, newTenant } from './support/api';
import { agentStub, agentWith, contextOf, locksOf, transfer } from './support/transactions';

// Once the decision is logged the outcome is certain; phase two only tells the participants.
// A participant's object that is very slow to answer (here: its input gate held, as a long
// start-up or a stuck storage operation would) must not hold the client's answer: it waits for
// phase two at most PHASE_TWO_WAIT_MS, and the coordinator finishes phase two on its own.

/**
 * Holds the agent's object for `ms`: its input gate stays shut while a slow fetch runs (a timer
 * would never fire inside it), so every call to it waits until then. `end` settles with the hold.
 */
async function holdAgent(tenantId: string, agentId: string, ms: number): Promise<{ end: Promise<void> }> {
  const end = runInDurableObject(agentStub(tenantId, agentId), async (_instance, state) => {
    await state.blockConcurrencyWhile(async () => {
      await (await fetch(mockUrl(`/models?delayMs=${ms}`))).text();
    });
  });
  await new Promise((resolve) => setTimeout(resolve, 100)); // the hold has begun
  return { end };
}

describe('transactions: a participant slow in phase two', () => {
  it('answers a commit within the bound, then finishes phase two without the client', { timeout: 30_000 }, async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0 });
    // a votes late (its object held), so b's lock can be seen, and b held, before the decision.
    const started = Date.now();
    const heldA = await holdAgent(tenantId, a, 800);
    const headers = { 'idempotency-key': `slow-${a}` };
    const pending = api('/v1/transactions', { key, body: transfer(a, b, 30), headers });
    await eventually(async () => (await locksOf(tenantId, b)) === 1);
    const heldB = await holdAgent(tenantId, b, 6_000);
    const res = await pending;
    const took = Date.now() - started;

    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id: expect.stringMatching(/^tx_/), status: 'committed', versions: { [a]: 2, [b]: 2 }, completed: false });
    expect(took).toBeLessThan(800 + PHASE_TWO_WAIT_MS + 1_500);
    // Its key's replay, while b is still held, answers within the bound too.
    const again = Date.now();
    const replay = await api('/v1/transactions', { key, body: transfer(a, b, 30), headers });
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toEqual(res.body);
    expect(Date.now() - again).toBeLessThan(PHASE_TWO_WAIT_MS + 1_500);
    const got = await api(`/v1/transactions/${res.body.id}`, { key });
    expect(got.body).toMatchObject({ status: 'committed', completed: false });
    expect(got.body.participants).toEqual([{ agentId: a, vote: 'yes', acknowledged: true }, { agentId: b, vote: 'yes', acknowledged: false }]);

    // Once b answers, its commit lands: the coordinator did not need the client for it.
    const done = await eventually(async () => {
      const tx = await api(`/v1/transactions/${res.body.id}`, { key });
      return tx.body.completed === true && tx.body;
    }, 15_000, 200);
    expect(done.participants.map((p: { acknowledged: boolean }) => p.acknowledged)).toEqual([true, true]);
    expect(await contextOf(key, b)).toEqual({ version: 2, data: { balance: 30 } });
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);
    await Promise.all([heldA.end, heldB.end]);
  });

  it('answers an abort within the bound while a participant cannot be told yet', { timeout: 30_000 }, async () => {
    const { key, tenantId } = await newTenant();
    const a = await agentWith(key, { balance: 100 });
    const b = await agentWith(key, { balance: 0 });
    const held = await holdAgent(tenantId, b, 5_000);
    const started = Date.now();
    const res = await api('/v1/transactions', { key, body: { ...transfer(a, b, 30), timeoutMs: 300 } });
    const took = Date.now() - started;

    expect(res.status).toBe(409);
    expect(res.body).toMatchObject({ status: 'aborted', reason: 'timeout', agentId: b, completed: false });
    expect(took).toBeLessThan(300 + PHASE_TWO_WAIT_MS + 1_500);
    await eventually(async () => (await api(`/v1/transactions/${res.body.id}`, { key })).body.completed === true, 15_000, 200);
    expect(await contextOf(key, a)).toEqual({ version: 1, data: { balance: 100 } });
    expect([await locksOf(tenantId, a), await locksOf(tenantId, b)]).toEqual([0, 0]);
    await held.end;
  });
});
