import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import type { ProjectionRow, ProjectionSink } from '../durable/outbox';
import { projectorFor } from '../durable/projector';
import type { Env } from '../worker/env';
import { api, eventually, mockUrl, newAgent, newTenant, uniqueId } from './support/api';
import { limitedKey } from './support/limits';

const app = createApp();
const registryRow = (tenantId: string, id: string) =>
  env.DB.prepare('SELECT name, created_at FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ name: string | null; created_at: number }>();

/** The namespace of agent objects, with `before` run ahead of every `destroy` call made through it. */
function beforeDestroy(before: () => Promise<void>): typeof env.AGENTS {
  return new Proxy(env.AGENTS, {
    get: (target, prop) => {
      if (prop === 'get') {
        return (...args: Parameters<typeof target.get>) => {
          const stub = target.get(...args);
          return new Proxy(stub, {
            get: (s, method) => {
              if (method !== 'destroy') {
                const value: unknown = Reflect.get(s, method, s);
                return typeof value === 'function' ? value.bind(s) : value;
              }
              return async (...destroyArgs: unknown[]) => {
                await before();
                return (s as unknown as { destroy: (...a: unknown[]) => Promise<unknown> }).destroy(...destroyArgs);
              };
            },
          });
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('an agent DELETE racing a delete and re-create of the same id', () => {
  it('destroys only the agent it found: one created meanwhile under the id keeps its state', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { name: 'Old' });
    // Between this DELETE's read of the registry and its call to the object, another client
    // deletes the agent and creates a new one under the same id, with context of its own.
    const slow = beforeDestroy(async () => {
      expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(204);
      expect((await api('/v1/agents', { key, body: { id, name: 'New' } })).status).toBe(201);
      expect((await api(`/v1/agents/${id}/context`, { method: 'PATCH', key, body: { kept: true } })).status).toBe(200);
    });
    const late = await app.request(`/v1/agents/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } }, { ...env, AGENTS: slow });
    // The agent it was asked to delete is gone, as a repeated DELETE would find it.
    expect([204, 404]).toContain(late.status);
    const read = await api(`/v1/agents/${id}`, { key });
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ id, name: 'New' });
    expect((await api(`/v1/agents/${id}/context`, { key })).body).toMatchObject({ data: { kept: true } });
    expect(await registryRow(tenantId, id)).toMatchObject({ name: 'New' });
  });
});

describe('an agent object left holding an agent no registry row names', () => {
  // What a create leaves when its object created the agent but the answer was lost, and its
  // claim on the id was then released: the object holds the agent, D1 knows no such id.
  async function orphanObject(tenantId: string, id: string): Promise<void> {
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const config = { id, name: 'Lost', instructions: null, upstream: { kind: 'builtin' as const }, concurrency: 1, region: null, jurisdiction: null, metadata: null };
    expect(await stub.create({ tenantId, config, createdAt: Date.now() - 60_000 })).toMatchObject({ ok: true });
  }

  it('is replaced by the next create of the id, which answers 201 with the new agent, and can be deleted', async () => {
    const { key, tenantId } = await newTenant();
    const id = uniqueId();
    await orphanObject(tenantId, id);
    expect((await api(`/v1/agents/${id}`, { key })).status).toBe(404);

    const created = await api('/v1/agents', { key, body: { id, name: 'Found' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id, name: 'Found' });
    const read = await api(`/v1/agents/${id}`, { key });
    expect(read.body).toMatchObject({ id, name: 'Found', createdAt: created.body.createdAt });
    expect((await registryRow(tenantId, id))?.created_at).toBe(Date.parse(created.body.createdAt));
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } })).status).toBe(200);

    expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(204);
    expect((await api(`/v1/agents/${id}`, { key })).status).toBe(404);
    expect((await api('/v1/agents', { key, body: { id, name: 'Again' } })).status).toBe(201);
  });

  it('is replaced by a batch create too', async () => {
    const { key, tenantId } = await newTenant();
    const id = uniqueId();
    await orphanObject(tenantId, id);
    const batch = await api('/v1/agents/batch', { key, body: { agents: [{ id, name: 'Batched' }] } });
    expect(batch.status).toBe(200);
    expect(batch.body.results).toMatchObject([{ id, status: 201 }]);
    expect((await api(`/v1/agents/${id}`, { key })).body).toMatchObject({ id, name: 'Batched' });
  });
});

describe('work sent to an agent while its DELETE is under way', () => {
  it('is refused 404 and never runs: no 202 for an execution the deletion then wipes, no upstream call', async () => {
    const { key, tenantId } = await newTenant();
    const target = uniqueId('deleting');
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?target=${target}`) }, concurrency: 3 });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    // A slow projection stage (D1 slow to answer): the DELETE waits for the flush in flight,
    // and requests reach the object meanwhile.
    const flush = await heldFlush(tenantId, id);
    const deletions = await deletionsReaching(stub);
    expect((await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { a: 1 } })).status).toBe(200);
    await eventually(flush.inFlight, 10_000, 5);
    const deleted = api(`/v1/agents/${id}`, { key, method: 'DELETE' });
    const body = (intent: string, mode: 'sync' | 'async') => ({ intent, input: { mock: { delayMs: 50 } }, mode });
    let queued, waited, sent;
    try {
      await eventually(async () => (await deletions()) > 0, 10_000, 5);
      [queued, waited, sent] = await Promise.all([
        api(`/v1/agents/${id}/executions`, { key, body: body('during-async', 'async') }),
        api(`/v1/agents/${id}/executions`, { key, body: body('during-sync', 'sync'), headers: { 'idempotency-key': 'during' } }),
        api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] }, configuration: { returnImmediately: true } } }, headers: { 'a2a-version': '1.0' } }),
      ]);
    } finally {
      flush.release();
    }
    expect((await deleted).status).toBe(204);
    expect(queued.status).toBe(404);
    expect(waited.status).toBe(404);
    expect(queued.body.error.code).toBe('not_found');
    // A2A answers as for an agent that is gone (as it is once the DELETE has answered).
    const after = await api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } } }, headers: { 'a2a-version': '1.0' } });
    expect(sent.status).toBe(after.status);
    expect(sent.body.error.code).toBe(after.body.error.code);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const counts = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json()) as Record<string, number>;
    expect(counts[target] ?? 0).toBe(0);
  });
});

/** A gate: `wait()` holds until `open()`. Tests hold a step open on it instead of on a clock. */
function gate(): { open: () => void; wait: () => Promise<void> } {
  let open = () => {};
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { open, wait: () => opened };
}

/**
 * Holds the agent's next DELETE open: its outbox flush (a slow D1 projection) waits until
 * `release()` (as long as D1 takes, however long the test's machine takes to get the DELETE
 * there); `inFlight()` once a flush is waiting.
 */
async function heldFlush(tenantId: string, id: string): Promise<{ inFlight: () => Promise<boolean>; release: () => void }> {
  const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
  const held = gate();
  let handedOver = 0;
  type Sink = { write(rows: readonly unknown[]): Promise<unknown> };
  await runInDurableObject(stub, (instance) => {
    const background = (instance as unknown as { background: { projection: (tenant: string, config: unknown) => Sink } }).background;
    const real = background.projection;
    background.projection = (tenant, config) => {
      const sink = real(tenant, config);
      return { write: async (rows) => { handedOver++; await held.wait(); return sink.write(rows); } };
    };
  });
  return { inFlight: async () => handedOver > 0, release: held.open };
}

/**
 * Counts the deletions that reached the agent's object. One counted is under way: its object
 * closed to writes before the call returned (durable/agent-deletion.ts), so what a test sends
 * after the count rose reaches it mid-deletion, on a machine of any speed.
 */
async function deletionsReaching(stub: DurableObjectStub): Promise<() => Promise<number>> {
  let calls = 0;
  await runInDurableObject(stub, (instance) => {
    const deletion = (instance as unknown as { deletion: { destroy: (...a: unknown[]) => Promise<unknown> } }).deletion;
    const real = deletion.destroy.bind(deletion);
    deletion.destroy = (...args: unknown[]) => {
      calls++;
      return real(...args);
    };
  });
  return async () => calls;
}

describe('changes sent to an agent while its DELETE is under way', () => {
  it('a context PATCH, an agent PATCH, a webhook create and a cancel are refused 404 not_found, as for the deleted agent, not answered and then wiped', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: true } })).status).toBe(200);
    const queued = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'waits', mode: 'async' } });
    expect(queued.status).toBe(202);
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const flush = await heldFlush(tenantId, id);
    const deletions = await deletionsReaching(stub);
    expect((await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { a: 1 } })).status).toBe(200);
    await eventually(flush.inFlight, 10_000, 5);
    const deleted = api(`/v1/agents/${id}`, { key, method: 'DELETE' });
    let patched, hooked, cancelled, reconfigured;
    try {
      await eventually(async () => (await deletions()) > 0, 10_000, 5);
      [patched, hooked, cancelled, reconfigured] = await Promise.all([
        api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { b: 2 } }),
        api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook') } }),
        api(`/v1/agents/${id}/executions/${queued.body.id}/cancel`, { key, method: 'POST' }),
        api(`/v1/agents/${id}`, { key, method: 'PATCH', body: { name: 'Renamed' } }),
      ]);
    } finally {
      flush.release();
    }
    expect((await deleted).status).toBe(204);
    const answered = [patched, hooked, cancelled, reconfigured].map((res) => [res.status, res.body.error?.code]);
    expect(answered).toEqual(Array(4).fill([404, 'not_found']));
  });
});

describe("an A2A send whose budget check is in flight when the agent's DELETE begins", () => {
  it('answers as for the deleted agent and starts no turn the deletion would wipe', async () => {
    const { tenantId, key, otherKey } = await limitedKey({ budget: { tokens: 100_000, period: 'day' } });
    const target = uniqueId('a2a-deleting');
    const id = await newAgent(otherKey, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?target=${target}`) } });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    let raises = 0;
    // The raise in flight is held until the DELETE has reached the object.
    const raise = gate();
    await runInDurableObject(stub, (instance) => {
      const charges = (instance as unknown as { charges: { env: Env } }).charges;
      const real = charges.env.KEY_LIMITS;
      const slowLimiter = (limiterId: DurableObjectId) => {
        const limiterStub = real.get(limiterId);
        return {
          raiseCharge: async (chargeId: string, total: number, budget?: number) => {
            raises++;
            await raise.wait();
            return limiterStub.raiseCharge(chargeId, total, budget);
          },
          settleExecution: (chargeId: string, tokens: number) => limiterStub.settleExecution(chargeId, tokens),
        };
      };
      charges.env = { ...charges.env, KEY_LIMITS: { idFromName: (name: string) => real.idFromName(name), get: slowLimiter } as unknown as Env['KEY_LIMITS'] };
    });
    const flush = await heldFlush(tenantId, id);
    const deletions = await deletionsReaching(stub);
    // A large context: the send's estimate exceeds the edge's reservation, so the agent asks the key's limiter to raise it.
    expect((await api(`/v1/agents/${id}/context`, { key: otherKey, method: 'PATCH', body: { notes: 'x'.repeat(8_000) } })).status).toBe(200);
    await eventually(flush.inFlight, 10_000, 5);
    const send = (immediately: boolean) =>
      api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] }, ...(immediately ? { configuration: { returnImmediately: true } } : {}) } }, headers: { 'a2a-version': '1.0' } });
    const sent = send(true);
    let during;
    let deleted;
    try {
      await eventually(async () => raises > 0, 10_000, 5);
      deleted = api(`/v1/agents/${id}`, { key: otherKey, method: 'DELETE' });
      await eventually(async () => (await deletions()) > 0, 10_000, 5);
      raise.open();
      during = await sent;
    } finally {
      raise.open();
      flush.release();
    }
    expect((await deleted).status).toBe(204);
    const after = await send(false);
    expect(after.body.error).toBeDefined();
    expect(during.status).toBe(after.status);
    expect(during.body.error?.code).toBe(after.body.error.code);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const counts = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json()) as Record<string, number>;
    expect(counts[target] ?? 0).toBe(0);
  });
});

/**
 * Holds the agent's push URL checks (which resolve the URL's host over DNS, slow as a resolver
 * can be) until `until` settles; the count of checks begun tells a test when one is in flight.
 */
async function slowPushUrlCheck(stub: DurableObjectStub, until: Promise<void>): Promise<() => number> {
  let checks = 0;
  await runInDurableObject(stub, (instance) => {
    const tasks = (instance as unknown as { a2aServer: { tasks: { checkConfig: (...a: unknown[]) => Promise<void> } } }).a2aServer.tasks;
    const real = tasks.checkConfig.bind(tasks);
    tasks.checkConfig = async (...args: unknown[]) => {
      checks++;
      await until;
      return real(...args);
    };
  });
  return () => checks;
}

describe("an A2A send whose push URL check is in flight when the agent's DELETE begins", () => {
  it('starts no turn the deletion would wipe: it is answered -32001 (the agent was deleted), not a working task, and no upstream call is made', async () => {
    const { key, tenantId } = await newTenant();
    const target = uniqueId('a2a-push-deleting');
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?target=${target}`) } });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const check = gate();
    const checks = await slowPushUrlCheck(stub, check.wait());
    const flush = await heldFlush(tenantId, id);
    const deletions = await deletionsReaching(stub);
    expect((await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { a: 1 } })).status).toBe(200);
    await eventually(flush.inFlight, 10_000, 5);
    const sent = api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] }, configuration: { returnImmediately: true, taskPushNotificationConfig: { url: mockUrl('/push') } } } }, headers: { 'a2a-version': '1.0' } });
    let during;
    let deleted;
    try {
      await eventually(async () => checks() > 0, 10_000, 5);
      deleted = api(`/v1/agents/${id}`, { key, method: 'DELETE' });
      await eventually(async () => (await deletions()) > 0, 10_000, 5);
      check.open();
      during = await sent;
    } finally {
      check.open();
      flush.release();
    }
    expect((await deleted).status).toBe(204);
    // Not a task still working that the deletion then wiped: the task is gone, as a blocking send open at the deletion is told.
    expect(during.body.result).toBeUndefined();
    expect(during.body.error).toMatchObject({ code: -32001, message: expect.stringMatching(/agent was deleted/) });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const counts = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json()) as Record<string, number>;
    expect(counts[target] ?? 0).toBe(0);
  });
});

describe("an A2A push config whose URL check is in flight when the agent's DELETE begins", () => {
  it('is refused as for a task that is gone (-32001, the agent was deleted), not answered and then wiped', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const a2a = (method: string, params: unknown) => api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers: { 'a2a-version': '1.0' } });
    const task = (await a2a('SendMessage', { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] }, configuration: { returnImmediately: true } })).body.result.task;
    expect(task.id).toEqual(expect.any(String));
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const check = gate();
    const checks = await slowPushUrlCheck(stub, check.wait());
    const flush = await heldFlush(tenantId, id);
    const deletions = await deletionsReaching(stub);
    expect((await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { a: 1 } })).status).toBe(200);
    await eventually(flush.inFlight, 10_000, 5);
    const made = a2a('CreateTaskPushNotificationConfig', { taskId: task.id, url: mockUrl('/a2a-push') });
    let during;
    let deleted;
    try {
      await eventually(async () => checks() > 0, 10_000, 5);
      deleted = api(`/v1/agents/${id}`, { key, method: 'DELETE' });
      await eventually(async () => (await deletions()) > 0, 10_000, 5);
      check.open();
      during = await made;
    } finally {
      check.open();
      flush.release();
    }
    expect((await deleted).status).toBe(204);
    expect(during.body.result).toBeUndefined();
    expect(during.body.error).toMatchObject({ code: -32001, message: expect.stringMatching(/agent was deleted/) });
  });
});

describe('two DELETEs of one agent at once, and a create of its id once the first has answered', () => {
  it('the second DELETE leaves the agent created meanwhile alone: it answers as the first did, and the new agent takes writes and keeps its state', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { name: 'Old' });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    // The second deletion to reach its charges' settlement waits there (a slow key limiter)
    // until released: the first finishes, and the id is created again, meanwhile.
    let settlements = 0;
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    await runInDurableObject(stub, (instance) => {
      const charges = (instance as unknown as { charges: { settleBeforeDelete: () => Promise<void> } }).charges;
      const real = charges.settleBeforeDelete.bind(charges);
      charges.settleBeforeDelete = async () => {
        if (++settlements === 2) await held;
        return real();
      };
    });
    const flush = await heldFlush(tenantId, id);
    const deletions = await deletionsReaching(stub);
    expect((await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { old: true } })).status).toBe(200);
    await eventually(flush.inFlight, 10_000, 5);
    const first = api(`/v1/agents/${id}`, { key, method: 'DELETE' });
    let second;
    try {
      // The second reaches the object while the first waits on the flush, which then goes on.
      await eventually(async () => (await deletions()) > 0, 10_000, 5);
      second = api(`/v1/agents/${id}`, { key, method: 'DELETE' });
      await eventually(async () => (await deletions()) > 1, 10_000, 5);
    } finally {
      flush.release();
    }
    try {
      expect((await first).status).toBe(204);
      expect((await api('/v1/agents', { key, body: { id, name: 'New' } })).status).toBe(201);
      const patched = await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { kept: true } });
      expect([patched.status, patched.body.error?.code]).toEqual([200, undefined]);
    } finally {
      release();
    }
    expect((await second).status).toBe(204);
    const read = await api(`/v1/agents/${id}`, { key });
    expect([read.status, read.body.name]).toEqual([200, 'New']);
    expect((await api(`/v1/agents/${id}/context`, { key })).body).toEqual({ version: 1, data: { kept: true } });
    expect(await registryRow(tenantId, id)).toMatchObject({ name: 'New' });
  });
});

describe("the key's budget after an A2A send refused because its agent's DELETE began", () => {
  it('is given back whole (request and tokens): the send started no turn, as other refusals give theirs back', async () => {
    const { tenantId, key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 100, tokens: 100_000, period: 'day' } });
    const target = uniqueId('a2a-refund');
    const id = await newAgent(otherKey, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?target=${target}`) } });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const check = gate();
    const checks = await slowPushUrlCheck(stub, check.wait());
    const flush = await heldFlush(tenantId, id);
    const deletions = await deletionsReaching(stub);
    expect((await api(`/v1/agents/${id}/context`, { key: otherKey, method: 'PATCH', body: { a: 1 } })).status).toBe(200);
    await eventually(flush.inFlight, 10_000, 5);
    const sent = api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] }, configuration: { returnImmediately: true, taskPushNotificationConfig: { url: mockUrl('/push') } } } }, headers: { 'a2a-version': '1.0' } });
    let during;
    let deleted;
    try {
      await eventually(async () => checks() > 0, 10_000, 5);
      deleted = api(`/v1/agents/${id}`, { key: otherKey, method: 'DELETE' });
      await eventually(async () => (await deletions()) > 0, 10_000, 5);
      check.open();
      during = await sent;
    } finally {
      check.open();
      flush.release();
    }
    expect((await deleted).status).toBe(204);
    expect(during.body.error).toMatchObject({ code: -32001, message: expect.stringMatching(/agent was deleted/) });
    // The lease's release gives the reservation back with it: nothing is left held once none is in flight.
    const usage = await eventually(async () => {
      const res = await api('/v1/usage', { key });
      return res.body.inFlight === 0 && res.body.budget;
    });
    expect(usage).toMatchObject({ requests: 0, tokens: 0, reservedTokens: 0 });
  });
});

describe("an A2A request whose push URL check outlasts the agent's whole DELETE", () => {
  it('a send (new task or follow-up) and a push config create are answered -32001 (the agent was deleted), not -32603, and the sends give the budget back', async () => {
    const { tenantId, key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 100, tokens: 100_000, period: 'day' } });
    const id = await newAgent(otherKey, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const a2a = (method: string, params: unknown) => api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers: { 'a2a-version': '1.0' } });
    const message = (taskId?: string) => ({ messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }], ...(taskId && { taskId }) });
    // A task waiting for input takes a follow-up (one whose turn still runs is refused -32004 before any check).
    const opened = await api(`/a2a/${id}/`, { key: otherKey, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { ...message(), messageId: `tck-input-required-${uniqueId()}` } } }, headers: { 'a2a-version': '1.0' } });
    expect(opened.body.result.task.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    const task = opened.body.result.task.id as string;
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    // The checks are held until the DELETE has answered: they outlast it, however slow the machine.
    const check = gate();
    const checks = await slowPushUrlCheck(stub, check.wait());
    const push = { url: mockUrl('/push') };
    const during = Promise.all([
      a2a('SendMessage', { message: message(), configuration: { taskPushNotificationConfig: push } }),
      a2a('SendMessage', { message: message(task), configuration: { taskPushNotificationConfig: push } }),
      a2a('CreateTaskPushNotificationConfig', { taskId: task, ...push }),
    ]);
    try {
      await eventually(async () => checks() >= 3, 10_000, 5);
      expect((await api(`/v1/agents/${id}`, { key: otherKey, method: 'DELETE' })).status).toBe(204);
    } finally {
      check.open();
    }
    const answers = (await during).map((res) => [res.body.error?.code, /the agent was deleted$/.test(res.body.error?.message ?? '')]);
    expect(answers).toEqual(Array(3).fill([-32001, true]));
    const usage = await eventually(async () => {
      const res = await api('/v1/usage', { key });
      return res.body.inFlight === 0 && res.body.budget;
    });
    expect(usage).toMatchObject({ requests: 0, tokens: 0, reservedTokens: 0 });
  });
});

/**
 * Takes the rows the agent's flushes hand to the projection stage, answering as a stage that
 * did not answer in time (the rows stay in the outbox), until `stop()`: from then on its
 * flushes reach the stage again. `rows` are the rows exactly as handed over.
 */
async function takenFlushes(tenantId: string, id: string): Promise<{ rows: ProjectionRow[]; stop: () => void }> {
  const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
  const rows: ProjectionRow[] = [];
  let taking = true;
  await runInDurableObject(stub, (instance) => {
    const background = (instance as unknown as { background: { projection: (tenant: string, config: unknown) => ProjectionSink } }).background;
    const real = background.projection;
    background.projection = (tenant, config) => {
      const sink = real(tenant, config);
      return {
        write: (handed) => {
          if (!taking) return sink.write(handed);
          rows.push(...handed);
          return Promise.reject(new Error('the projection stage did not answer within 30000 ms'));
        },
      };
    };
  });
  return { rows, stop: () => (taking = false) };
}

// A flush hands its rows to the projection stage, which writes them to D1 with whatever else
// arrives (durable/projector.ts): when D1 is slow past the flush's 30 s, or a flush begins while
// the deletion settles, the rows can land after the DELETE has answered 204 and a create has
// made the id's next agent. Agent rows only updated a row with a lower revision (the new
// agent's claim is at 0) and execution rows needed only a row for the id: the new agent was
// listed with the old one's name and state, and the old one's executions in its list.
describe("a deleted agent's last flush landing after its id was created again", () => {
  it("writes nothing of the old agent into the new one's registry row or execution list", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { name: 'first' });
    const flushes = await takenFlushes(tenantId, id);
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'before-delete' } });
    expect(run.status).toBe(200);
    await eventually(async () => flushes.rows.some((row) => row.kind === 'execution' && JSON.parse(row.payload).status === 'succeeded') && flushes.rows.some((row) => row.kind === 'agent'));
    flushes.stop();
    expect((await api(`/v1/agents/${id}`, { key, method: 'DELETE' })).status).toBe(204);
    expect((await api('/v1/agents', { key, body: { id, name: 'second' } })).status).toBe(201);

    // The old agent's rows land now, through the stage as any flush's do.
    expect(await projectorFor(env, tenantId, id).write(flushes.rows)).toEqual({ failed: [] });
    expect(await registryRow(tenantId, id)).toMatchObject({ name: 'second' });
    const listed = await api('/v1/agents', { key });
    expect(listed.body.data.map((agent: { id: string; name: string | null }) => [agent.id, agent.name])).toEqual([[id, 'second']]);
    const executions = await env.DB.prepare('SELECT id FROM executions WHERE tenant_id = ? AND agent_id = ?').bind(tenantId, id).all();
    expect(executions.results).toEqual([]);
    expect((await api(`/v1/agents/${id}/executions`, { key })).body.data).toEqual([]);

    // The new agent's own rows still land.
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after-create' } })).status).toBe(200);
    await eventually(async () => (await api(`/v1/agents/${id}/executions`, { key })).body.data.length === 1);
  });
});
