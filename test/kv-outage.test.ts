import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { forgetRoute } from '../worker/agents/registry';
import { ADMIN, api, newAgent, newTenant } from './support/api';

/**
 * A KV binding whose writes and deletes fail as KV's do when it is unavailable (reads fail too,
 * which every lookup already survives by going to D1). KV is a cache only: its failure must
 * never turn a change D1 or an agent's object has made into an error.
 */
function failingKv(): KVNamespace {
  const refuse = () => Promise.reject(new Error('KV PUT failed: 503 Service Unavailable'));
  return new Proxy(env.CACHE, {
    get: (target, prop) => {
      if (prop === 'get' || prop === 'put' || prop === 'delete' || prop === 'list' || prop === 'getWithMetadata') return refuse;
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const app = createApp();
const call = (key: string, path: string, init: { method?: string; body?: unknown } = {}) =>
  app.request(
    path,
    { method: init.method ?? (init.body === undefined ? 'GET' : 'POST'), headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, ...(init.body !== undefined && { body: JSON.stringify(init.body) }) },
    { ...env, CACHE: failingKv() },
  );

describe('KV unavailable (a cache only)', () => {
  it('revokes and updates a key: 204 and 200, the key refused at once where KV is down, each change audited once', async () => {
    const { key, keyId, tenantId } = await newTenant();
    expect((await api('/v1/agents', { key })).status).toBe(200);

    const updated = await call(ADMIN(), `/v1/admin/keys/${keyId}`, { method: 'PATCH', body: { name: 'renamed' } });
    expect(updated.status, await updated.clone().text()).toBe(200);
    expect(await updated.json()).toMatchObject({ id: keyId, name: 'renamed' });

    const revoked = await call(ADMIN(), `/v1/admin/keys/${keyId}`, { method: 'DELETE' });
    expect(revoked.status, await revoked.clone().text()).toBe(204);
    expect((await call(key, '/v1/agents')).status).toBe(401);
    // Where KV still serves the entry it could not delete, the key works until that expires
    // (60 s), within the 90 s revocation promises everywhere.

    const audit = await api(`/v1/admin/audit?tenant=${tenantId}`, { key: ADMIN() });
    expect(audit.body.data.map((e: { action: string }) => e.action).filter((a: string) => a !== 'tenant.create' && a !== 'key.create')).toEqual(['key.revoke', 'key.update']);
  });

  it('looks a key and an agent route up in D1 when KV cannot give them: a new key creates, reads and runs', async () => {
    const { key, tenantId } = await newTenant(); // a key never used: cached nowhere yet
    const created = await call(key, '/v1/agents', { body: {} });
    expect(created.status, await created.clone().text()).toBe(201);
    const { id } = (await created.json()) as { id: string };
    forgetRoute(tenantId, id); // the route is looked up again, past the isolate's cache, where KV fails
    const read = await call(key, `/v1/agents/${id}`);
    expect(read.status, await read.clone().text()).toBe(200);
    const run = await call(key, `/v1/agents/${id}/executions`, { body: { intent: 'hello' } });
    expect(run.status, await run.clone().text()).toBe(200);
    expect(await run.json()).toMatchObject({ status: 'succeeded' });
  });

  it('looks a pool up in D1 when KV cannot give it: a pool this isolate never read serves its GET and a chat on it', async () => {
    const { key, tenantId } = await newTenant();
    // A pool as another isolate's PUT leaves it: in D1 only, in no cache of this isolate (a copy,
    // under a new name, of the row a PUT here wrote).
    expect((await api('/v1/pools/here', { method: 'PUT', key, body: { targets: [{ id: 'local', kind: 'builtin' }] } })).status).toBe(201);
    await env.DB.prepare("INSERT INTO pools (tenant_id, name, config, created_at, updated_at, probe_due) SELECT tenant_id, 'elsewhere', json_set(config, '$.name', 'elsewhere'), created_at, updated_at, probe_due FROM pools WHERE tenant_id = ? AND name = 'here'")
      .bind(tenantId).run();

    const read = await call(key, '/v1/pools/elsewhere');
    expect(read.status, await read.clone().text()).toBe(200);
    expect(await read.json()).toMatchObject({ name: 'elsewhere', targets: [{ id: 'local', kind: 'builtin' }] });
    const chat = await call(key, '/v1/chat/completions', { body: { model: 'elsewhere', messages: [{ role: 'user', content: 'hello' }] } });
    expect(chat.status, await chat.clone().text()).toBe(200);
    expect(await chat.json()).toMatchObject({ object: 'chat.completion', choices: [{ message: { role: 'assistant' } }] });
  });

  it('deletes a pool and an agent: 204, gone, and audited', async () => {
    const { key, tenantId } = await newTenant();
    expect((await api('/v1/pools/faq', { method: 'PUT', key, body: { targets: [{ id: 'local', kind: 'builtin' }] } })).status).toBe(201);
    const agentId = await newAgent(key);

    const pool = await call(key, '/v1/pools/faq', { method: 'DELETE' });
    expect(pool.status, await pool.clone().text()).toBe(204);
    expect((await call(key, '/v1/pools/faq')).status).toBe(404);

    const agent = await call(key, `/v1/agents/${agentId}`, { method: 'DELETE' });
    expect(agent.status, await agent.clone().text()).toBe(204);
    expect((await call(key, `/v1/agents/${agentId}`)).status).toBe(404);

    const audit = await api(`/v1/admin/audit?tenant=${tenantId}`, { key: ADMIN() });
    const actions = audit.body.data.map((e: { action: string; target: string }) => `${e.action} ${e.target}`);
    expect(actions).toContain('pool.delete faq');
    expect(actions).toContain(`agent.delete ${agentId}`);
  });
});
