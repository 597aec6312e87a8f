import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { ADMIN, api, eventually, mockUrl, newAgent, newTenant } from './support/api';

/** An AGENTS binding whose objects cannot be reached: every RPC fails as the platform's would. */
function unreachable(kind: 'retryable' | 'overloaded'): typeof env.AGENTS {
  const failing = new Proxy({}, {
    get: () => async () => {
      const error = new Error(kind === 'overloaded' ? 'Durable Object is overloaded' : 'Network connection lost.') as Error & { retryable?: boolean; overloaded?: boolean };
      if (kind === 'overloaded') error.overloaded = true;
      else error.retryable = true;
      throw error;
    },
  });
  const namespace = env.AGENTS;
  return new Proxy(namespace, {
    get: (target, prop) => {
      if (prop === 'get') return () => failing;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * A D1 binding that refuses the statements matching `refused` the way the runtime did when a
 * local process ran out of SQLite memory (the bench, 10,000 agents), and runs the rest.
 */
function refusing(refused: RegExp, message = 'D1_ERROR: out of memory: SQLITE_NOMEM'): D1Database {
  const refusal = () => Promise.reject(new Error(message));
  const marked = new WeakSet<object>();
  const statement = (stmt: D1PreparedStatement): D1PreparedStatement => {
    const proxy = new Proxy(stmt, {
      get: (target, prop) => {
        if (prop === 'bind') return (...values: unknown[]) => statement(target.bind(...values));
        if (prop === 'run' || prop === 'first' || prop === 'all' || prop === 'raw') return refusal;
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    marked.add(proxy);
    return proxy;
  };
  const database = <T extends D1Database | D1DatabaseSession>(db: T): T => new Proxy(db, {
    get: (target, prop) => {
      if (prop === 'prepare') return (query: string) => (refused.test(query) ? statement(target.prepare(query)) : target.prepare(query));
      if (prop === 'batch') return (statements: D1PreparedStatement[]) => (statements.some((s) => marked.has(s)) ? refusal() : target.batch(statements));
      if (prop === 'withSession') return (constraint?: string) => database((target as D1Database).withSession(constraint));
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return database(env.DB);
}

const app = createApp();
const call = (kind: 'retryable' | 'overloaded', key: string, path: string, init: RequestInit = {}) =>
  app.request(path, { ...init, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } }, { ...env, AGENTS: unreachable(kind) });

describe('read failover', () => {
  it('answers reads from the last D1 snapshot with stale: true while the object is unreachable', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { name: 'Snapshotted' });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    await eventually(() => env.DB.prepare("SELECT 1 AS one FROM executions WHERE tenant_id = ? AND id = ? AND status = 'succeeded'").bind(tenantId, exec.body.id).first());
    await eventually(() => env.DB.prepare(`SELECT 1 AS one FROM agents WHERE tenant_id = ? AND id = ? AND json_extract(snapshot, '$.contextVersion') = 1`).bind(tenantId, id).first());

    const live = (await api(`/v1/agents/${id}`, { key })).body;
    const liveStatus = (await api(`/v1/agents/${id}/status`, { key })).body;
    for (const kind of ['retryable', 'overloaded'] as const) {
      const probe = await call(kind, key, `/v1/agents/${id}`);
      expect(await probe.json()).toEqual({ ...live, stale: true });
      const probeStatus = await call(kind, key, `/v1/agents/${id}/status`);
      expect(await probeStatus.json()).toEqual({ ...liveStatus, stale: true });
      const agent = await call(kind, key, `/v1/agents/${id}`);
      expect(agent.status).toBe(200);
      expect(agent.headers.get('x-gateway-stale')).toBe('1');
      // The snapshot holds no configuration version: no ETag a conditional PATCH could trust.
      expect(agent.headers.get('etag')).toBeNull();
      expect(await agent.json()).toMatchObject({ id, name: 'Snapshotted', stale: true });

      const status = await call(kind, key, `/v1/agents/${id}/status`);
      expect(status.headers.get('x-gateway-stale')).toBe('1');
      expect(await status.json()).toMatchObject({ stale: true, contextVersion: 1, lastExecution: { id: exec.body.id, status: 'succeeded' } });

      const execution = await call(kind, key, `/v1/agents/${id}/executions/${exec.body.id}`);
      expect(execution.headers.get('x-gateway-stale')).toBe('1');
      expect(await execution.json()).toMatchObject({ ...exec.body, stale: true });
    }
  });

  it('answers writes with 503 agent_unavailable and Retry-After, and runs nothing', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const writes: [string, string, unknown][] = [
      ['POST', `/v1/agents/${id}/executions`, { intent: 'x' }],
      ['PATCH', `/v1/agents/${id}/context`, { a: 1 }],
      ['PATCH', `/v1/agents/${id}`, { name: 'n' }],
    ];
    for (const [method, path, body] of writes) {
      const res = await call('retryable', key, path, { method, body: JSON.stringify(body) });
      expect(res.status, `${method} ${path}`).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('agent_unavailable');
    }
    const status = await api(`/v1/agents/${id}/status`, { key });
    expect(status.body).toMatchObject({ contextVersion: 0, lastExecution: null });
    expect(status.body.stale).toBeUndefined();
  });

  it('answers 503 for a read D1 cannot serve either', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await call('retryable', key, `/v1/agents/${id}/executions/ex_never_projected`);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(res.headers.get('x-gateway-stale')).toBeNull();
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('agent_unavailable');
  });
});

/**
 * An AGENTS binding whose objects run `method` but whose first reply to it is lost on the way
 * back, as the platform's is when the connection drops after the object did the work (a
 * retryable error the edge cannot tell from one where nothing ran).
 */
function firstReplyLost(method: string): typeof env.AGENTS {
  const namespace = env.AGENTS;
  let lost = false;
  return new Proxy(namespace, {
    get: (target, prop) => {
      if (prop === 'get') {
        return (...args: Parameters<typeof namespace.get>) => {
          const stub = namespace.get(...args);
          return new Proxy(stub, {
            get: (s, p) => {
              if (p !== method) return Reflect.get(s, p, s);
              return async (...callArgs: unknown[]) => {
                const reply: unknown = await (s as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]?.(...callArgs);
                if (lost) return reply;
                lost = true;
                throw Object.assign(new Error('Network connection lost.'), { retryable: true });
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

describe('a write whose reply the platform lost', () => {
  const executionsIn = (tenantId: string, id: string) =>
    runInDurableObject(env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`)), (_instance, state) =>
      state.storage.sql.exec<{ id: string }>('SELECT id FROM executions').toArray().map((r) => r.id));

  it('is retried without a client key and runs once: one execution, one upstream call, sync and async', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    for (const mode of ['sync', 'async'] as const) {
      const res = await app.request(`/v1/agents/${id}/executions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ intent: `lost-${mode}`, mode }),
      }, { ...env, AGENTS: firstReplyLost('execute') });
      expect(res.status, mode).toBe(mode === 'sync' ? 200 : 202);
      const body = (await res.json()) as { id: string };
      const done = await eventually(async () => {
        const read = await api(`/v1/agents/${id}/executions/${body.id}`, { key });
        return read.body.status === 'succeeded' && read.body;
      });
      expect(done.attempts, mode).toBe(1);
      const calls = await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${body.id}`);
      expect(((await calls.json()) as { count: number }).count, mode).toBe(1);
    }
    expect(await executionsIn(tenantId, id)).toHaveLength(2);
  });

  it('a webhook DELETE retried after its first delivery deleted it answers 204, not 404 for the webhook it removed', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const webhook = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: 'https://example.com/hook' } });
    expect(webhook.status).toBe(201);
    const res = await app.request(`/v1/agents/${id}/webhooks/${webhook.body.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } }, { ...env, AGENTS: firstReplyLost('deleteWebhook') });
    expect(res.status, await res.clone().text()).toBe(204);
    expect((await api(`/v1/agents/${id}/webhooks`, { key })).body.data).toEqual([]);
    // A webhook that never was is still 404 when nothing was lost.
    expect((await api(`/v1/agents/${id}/webhooks/wh_never`, { method: 'DELETE', key })).status).toBe(404);
  });
});

describe('D1 sessions', () => {
  it('returns a bookmark and accepts it (or a bad one) on the next request', async () => {
    const { key } = await newTenant();
    const created = await api('/v1/agents', { key, body: {} });
    const bookmark = created.headers.get('x-d1-bookmark');
    const next = await api('/v1/agents', { key, headers: bookmark ? { 'x-d1-bookmark': bookmark } : {} });
    expect(next.status).toBe(200);
    expect(next.body.data.map((a: { id: string }) => a.id)).toContain(created.body.id);
    expect((await api('/v1/agents', { key, headers: { 'x-d1-bookmark': 'garbage bookmark!' } })).status).toBe(200);
  });

  it('gives no bookmark for a request served from caches alone, and hands back the one it was sent', async () => {
    const { key } = await newTenant();
    const created = await api('/v1/agents', { key, body: {} });
    const bookmark = created.headers.get('x-d1-bookmark');
    expect(bookmark).toMatch(/\S/);
    const path = `/v1/agents/${created.body.id}`;
    await api(path, { key }); // the key and the agent's route are cached from here on
    const warm = await api(path, { key });
    expect(warm.status).toBe(200);
    expect(warm.headers.get('x-d1-bookmark')).toBeNull();
    const handedBack = await api(path, { key, headers: { 'x-d1-bookmark': bookmark ?? '' } });
    expect(handedBack.headers.get('x-d1-bookmark')).toBe(bookmark);
  });
});

describe('a database that refuses writes', () => {
  it('answers 503 unavailable with Retry-After, writes nothing, and the client\'s retry succeeds', async () => {
    const { key } = await newTenant();
    const id = `refused-${crypto.randomUUID().slice(0, 8)}`;
    const res = await app.request('/v1/agents', {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id }),
    }, { ...env, DB: refusing(/^\s*INSERT INTO agents\b/) });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('unavailable');

    expect((await api(`/v1/agents/${id}`, { key })).status).toBe(404);
    expect((await api('/v1/agents', { key, body: { id } })).status).toBe(201);
  });
});

/**
 * How D1 refuses statements while its database object is reset under them (Cloudflare's list of
 * D1_ERRORs; the D1 team: a storage operation over 30 s resets the object and rejects every
 * pending request with the same error, for about a minute): the statement did not run, and the
 * same request succeeds once the database is back.
 */
const D1_RESETS = [
  'D1_ERROR: D1 DB storage operation exceeded timeout which caused object to be reset.',
  "D1_ERROR: D1 DB's isolate exceeded its memory limit and was reset.",
  'D1_ERROR: D1 DB exceeded its CPU time limit and was reset.',
];

describe('a database reset under the list reads', () => {
  it('answers every list 503 unavailable with Retry-After, never 500', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    // The key and the agent's route are in the isolate's caches from here: only the lists read D1.
    expect((await api(`/v1/agents/${id}`, { key })).status).toBe(200);
    const lists: [string, string][] = [
      [key, '/v1/agents'], [key, `/v1/agents/${id}/executions`], [key, '/v1/pools'], [key, '/v1/models'], [key, '/v1/hooks'], [key, '/v1/audit'], [key, '/v1/stats'],
      [ADMIN(), '/v1/admin/tenants'], [ADMIN(), `/v1/admin/tenants/${tenantId}/keys`], [ADMIN(), '/v1/admin/audit'], [ADMIN(), `/v1/admin/tenants/${tenantId}/hooks`],
    ];
    for (const message of D1_RESETS) {
      for (const [credential, path] of lists) {
        const res = await app.request(path, { headers: { authorization: `Bearer ${credential}` } }, { ...env, DB: refusing(/^\s*SELECT\b/, message) });
        expect(res.status, `${path} (${message})`).toBe(503);
        expect(res.headers.get('retry-after'), path).toBe('1');
        expect(((await res.json()) as { error: { code: string } }).error.code, path).toBe('unavailable');
      }
    }
    expect((await api('/v1/agents', { key })).status).toBe(200);
  });
});

/** An AGENTS binding whose objects run a release without `method` (a gradual deployment): the runtime's refusal. */
function olderRelease(method: string): typeof env.AGENTS {
  const namespace = env.AGENTS;
  return new Proxy(namespace, {
    get: (target, prop) => {
      if (prop === 'get') {
        return (...args: Parameters<typeof namespace.get>) => {
          const stub = namespace.get(...args);
          return new Proxy(stub, {
            get: (s, p) => (p === method ? () => Promise.reject(new TypeError(`The RPC receiver does not implement the method "${method}".`)) : Reflect.get(s, p, s)),
          });
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('an agent object of an older release (a gradual deployment)', () => {
  it('without the operation a route calls: 503 agent_unavailable with Retry-After, not a 500', async () => {
    // The operator's lock view through an edge of this release, on an agent whose object runs
    // a release from before the lock routes.
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const res = await app.request(`/v1/admin/tenants/${tenantId}/agents/${id}/lock`, { headers: { authorization: `Bearer ${ADMIN()}` } }, { ...env, AGENTS: olderRelease('transactionLock') });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('60');
    expect(((await res.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'agent_unavailable', message: expect.stringContaining('older release') });
  });
});
