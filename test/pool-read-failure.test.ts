import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';

const LOST = 'D1_ERROR: Network connection lost.';

/**
 * A tenant's agent on pool `name`, the pool stored as another isolate would have stored it: in
 * D1 only, neither in this isolate's cache nor in KV (a DELETE drops both, and the row goes
 * back as it was). Returns the agent's object to wrap.
 */
async function agentOnUncachedPool(name: string) {
  const { key, tenantId } = await newTenant();
  const put = await api(`/v1/pools/${name}`, { method: 'PUT', key, body: { targets: [{ id: 'a', kind: 'agent-http', url: mockUrl(`/agent?target=${tenantId}-a`) }] } });
  expect(put.status).toBe(201);
  const id = await newAgent(key, { upstream: { kind: 'pool', pool: name } });
  const row = await env.DB.prepare('SELECT * FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, name).first<Record<string, string | number | null>>();
  expect((await api(`/v1/pools/${name}`, { method: 'DELETE', key })).status).toBe(204);
  const columns = Object.keys(row ?? {});
  await env.DB.prepare(`INSERT INTO pools (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`).bind(...columns.map((c) => row?.[c] ?? null)).run();
  return { key, tenantId, id, stub: env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`)) };
}

/**
 * Makes the object's D1 throw a lost connection on its next `failures` reads of this tenant's
 * pools (its KV missing them too), and returns how many reads it refused and a restore.
 */
async function failPoolReads(stub: DurableObjectStub, tenantId: string, failures: number) {
  let refused = 0;
  let restore!: () => void;
  await runInDurableObject(stub, (object: DurableObject) => {
    // The object's env is the one its runner holds: changed in place, and put back after.
    const objectEnv = (object as unknown as { env: { DB: D1Database; CACHE: KVNamespace } }).env;
    const { DB: db, CACHE: kv } = objectEnv;
    const isPoolRead = (sql: string) => sql.startsWith('SELECT config FROM pools');
    objectEnv.DB = new Proxy(db, {
      get(target, prop) {
        if (prop === 'prepare') {
          return (sql: string) => {
            const statement = target.prepare(sql);
            if (!isPoolRead(sql)) return statement;
            return {
              bind: (...values: unknown[]) => ({
                first: async () => {
                  if (values[0] === tenantId && refused < failures) {
                    refused++;
                    throw new Error(LOST);
                  }
                  return statement.bind(...values).first();
                },
              }),
            };
          };
        }
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    objectEnv.CACHE = new Proxy(kv, {
      get(target, prop) {
        if (prop === 'get') return async (key: string, type?: unknown) => (key.startsWith(`pool:v1:${tenantId}:`) ? null : target.get(key, type as 'text'));
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
    restore = () => {
      objectEnv.DB = db;
      objectEnv.CACHE = kv;
    };
  });
  return { refused: () => refused, restore };
}

describe("an agent's pool read that D1 fails transiently", () => {
  it('is read again: the execution runs on the pool once D1 answers, instead of failing with D1\'s message', async () => {
    const t = await agentOnUncachedPool('flaky');
    const reads = await failPoolReads(t.stub, t.tenantId, 2);
    try {
      const run = await api(`/v1/agents/${t.id}/executions`, { key: t.key, body: { intent: 'x' } });
      expect(reads.refused()).toBe(2);
      expect(run.status).toBe(200);
      expect(run.body).toMatchObject({ status: 'succeeded', upstream: 'pool flaky/a' });
    } finally {
      reads.restore();
    }
  });

  it('fails the execution, when D1 keeps failing, with a stable message naming the pool (no D1 text), retryable, sent nowhere', async () => {
    const t = await agentOnUncachedPool('down');
    const reads = await failPoolReads(t.stub, t.tenantId, 1_000);
    try {
      const sync = await api(`/v1/agents/${t.id}/executions`, { key: t.key, body: { intent: 'x' } });
      expect(reads.refused()).toBeGreaterThan(1);
      expect(sync.status).toBe(502);
      expect(sync.body.error.code).toBe('upstream_failed');
      // Not `x-should-retry: false`: the client's retry may well succeed.
      expect(sync.headers.get('x-should-retry')).toBeNull();
      const execution = sync.body.error.details.execution;
      expect(execution.status).toBe('failed');
      expect(execution.error.code).toBe('upstream_failed');
      expect(execution.error.message).toContain('pool down');
      expect(execution.error.message).toContain("the gateway's configuration store did not answer");
      expect(execution.error.message).not.toContain('D1_ERROR');
      expect(execution.error.retryable).toBeUndefined();
      const counts = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json()) as Record<string, number>;
      expect(counts[`${t.tenantId}-a`] ?? 0).toBe(0);
    } finally {
      reads.restore();
    }
    // D1 back: the next execution runs.
    const again = await api(`/v1/agents/${t.id}/executions`, { key: t.key, body: { intent: 'x' } });
    expect(again.body).toMatchObject({ status: 'succeeded', upstream: 'pool down/a' });
  });
});

describe('an accepted execution whose pool is still being read when its object restarts', () => {
  // The alarm is what starts a new instance when no request comes: at the 30 s it was armed for,
  // the resumed run met its default 30 s deadline and failed upstream_timeout, never called.
  it('has the alarm within 5 s from its acceptance, not only once the pool is read', async () => {
    const t = await agentOnUncachedPool('slow-read');
    const reads = await failPoolReads(t.stub, t.tenantId, 3); // read again after 50, 250 and 1,000 ms
    try {
      const accepted = await api(`/v1/agents/${t.id}/executions`, { key: t.key, body: { intent: 'x', mode: 'async' } });
      expect(accepted.status).toBe(202);
      const during = await runInDurableObject(t.stub, async (_instance, state) => ({ alarm: await state.storage.getAlarm(), now: Date.now() }));
      expect(reads.refused()).toBeLessThan(3); // still reading the pool
      expect((during.alarm ?? Infinity) - during.now).toBeLessThanOrEqual(5_000);
      await eventually(async () => (await api(`/v1/agents/${t.id}/executions/${accepted.body.id}`, { key: t.key })).body.status === 'succeeded');
    } finally {
      reads.restore();
    }
  });
});
