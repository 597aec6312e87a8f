import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { api, eventually, mockUrl, newAgent, newTenant, uniqueId } from './support/api';

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
    let handedOver = 0;
    type Sink = { write(rows: readonly unknown[]): Promise<unknown> };
    await runInDurableObject(stub, (instance) => {
      const background = (instance as unknown as { background: { projection: (tenant: string, config: unknown) => Sink } }).background;
      const real = background.projection;
      background.projection = (tenant, config) => {
        const sink = real(tenant, config);
        return { write: async (rows) => { handedOver++; await new Promise((resolve) => setTimeout(resolve, 600)); return sink.write(rows); } };
      };
    });
    expect((await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { a: 1 } })).status).toBe(200);
    await eventually(async () => handedOver > 0, 3_000, 5);
    const deleted = api(`/v1/agents/${id}`, { key, method: 'DELETE' });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const body = (intent: string, mode: 'sync' | 'async') => ({ intent, input: { mock: { delayMs: 50 } }, mode });
    const [queued, waited, sent] = await Promise.all([
      api(`/v1/agents/${id}/executions`, { key, body: body('during-async', 'async') }),
      api(`/v1/agents/${id}/executions`, { key, body: body('during-sync', 'sync'), headers: { 'idempotency-key': 'during' } }),
      api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] }, configuration: { returnImmediately: true } } }, headers: { 'a2a-version': '1.0' } }),
    ]);
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
