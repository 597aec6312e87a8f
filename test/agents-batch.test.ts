import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { ADMIN, api, newAgent, newTenant, uniqueId } from './support/api';

const batch = (key: string, agents: unknown[], headers: Record<string, string> = {}) => api('/v1/agents/batch', { key, body: { agents }, headers });

describe('POST /v1/agents/batch', () => {
  it('creates every agent as POST /v1/agents would, with results in the order asked', async () => {
    const { key } = await newTenant();
    const ids = [uniqueId(), uniqueId(), uniqueId()];
    const res = await batch(key, [{ id: ids[0], name: 'First', instructions: 'Be brief.' }, { id: ids[1], concurrency: 4 }, { id: ids[2], region: 'weur' }]);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ created: 3, failed: 0 });
    expect(res.body.results.map((r: { id: string; status: number }) => [r.id, r.status])).toEqual(ids.map((id) => [id, 201]));
    expect(res.body.results[0].agent).toMatchObject({ id: ids[0], name: 'First', instructions: 'Be brief.', concurrency: 1, upstream: { kind: 'builtin' }, state: 'idle' });
    expect(res.body.results[1].agent).toMatchObject({ concurrency: 4 });
    expect(res.body.results[2].agent).toMatchObject({ region: 'weur' });

    for (const [i, id] of ids.entries()) {
      const read = await api(`/v1/agents/${id}`, { key });
      expect(read.status).toBe(200);
      expect(read.body).toEqual(res.body.results[i].agent);
    }
    // Each works like any agent.
    expect((await api(`/v1/agents/${ids[1]}/executions`, { key, body: { intent: 'hello' } })).status).toBe(200);
  });

  it('makes ids for agents that have none', async () => {
    const { key } = await newTenant();
    const res = await batch(key, [{}, {}]);
    expect(res.body.created).toBe(2);
    const [a, b] = res.body.results as { id: string; agent: { id: string } }[];
    expect(a?.id).toMatch(/^[a-zA-Z0-9_-]{1,64}$/);
    expect(a?.id).not.toBe(b?.id);
    expect(a?.agent.id).toBe(a?.id);
    expect((await api(`/v1/agents/${a?.id}`, { key })).status).toBe(200);
  });

  it('gives each agent its own outcome: one refused leaves the others created', async () => {
    const { key } = await newTenant();
    const taken = await newAgent(key);
    const fresh = uniqueId();
    const noPool = uniqueId();
    const res = await batch(key, [{ id: taken }, { id: fresh }, { id: noPool, upstream: { kind: 'pool', pool: 'missing' } }]);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ created: 1, failed: 2 });
    const [conflict, created, invalid] = res.body.results;
    expect(conflict).toMatchObject({ id: taken, status: 409, error: { code: 'conflict' } });
    expect(conflict.error.requestId).toBeTypeOf('string');
    expect(created).toMatchObject({ id: fresh, status: 201, agent: { id: fresh } });
    expect(invalid).toMatchObject({ id: noPool, status: 400, error: { code: 'invalid_request', details: [{ path: ['upstream', 'pool'] }] } });
    // The refused ones left nothing behind: no agent, no claim in the registry.
    expect((await api(`/v1/agents/${noPool}`, { key })).status).toBe(404);
    expect((await api('/v1/agents', { key, body: { id: noPool } })).status).toBe(201);
  });

  it('refuses a malformed batch whole, creating nothing', async () => {
    const { key } = await newTenant();
    const id = uniqueId();
    const cases: [unknown, string][] = [
      [{ agents: [] }, 'agents'],
      [{ agents: Array.from({ length: 101 }, () => ({})) }, 'agents'],
      [{ agents: [{ id }, { id: uniqueId() }, { id }] }, 'agents.2.id'],
      [{ agents: [{ id }, { concurrency: 0 }] }, 'agents.1.concurrency'],
      [{ agents: [{ id }], extra: true }, ''],
      [{}, 'agents'],
    ];
    for (const [body, path] of cases) {
      const res = await api('/v1/agents/batch', { key, body });
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      if (path) expect(res.body.error.details.map((d: { path: string[] }) => d.path.join('.'))).toContain(path);
    }
    expect((await api(`/v1/agents/${id}`, { key })).status).toBe(404);
  });

  it('keeps tenants apart: the same ids in another tenant are that tenant\'s own agents', async () => {
    const a = await newTenant();
    const b = await newTenant();
    const ids = [uniqueId(), uniqueId()];
    expect((await batch(a.key, ids.map((id) => ({ id, name: 'A' })))).body.created).toBe(2);
    const inB = await batch(b.key, ids.map((id) => ({ id, name: 'B' })));
    expect(inB.body.created).toBe(2);
    for (const id of ids) {
      expect((await api(`/v1/agents/${id}`, { key: a.key })).body.name).toBe('A');
      expect((await api(`/v1/agents/${id}`, { key: b.key })).body.name).toBe('B');
    }
  });

  it('records one audit entry per agent created, under the batch request id, and none for those refused', async () => {
    const { key, tenantId } = await newTenant();
    const taken = await newAgent(key);
    const ids = [uniqueId(), uniqueId()];
    const requestId = `req-${uniqueId('batch')}`;
    await batch(key, [{ id: ids[0] }, { id: taken }, { id: ids[1] }], { 'x-request-id': requestId });
    const audit = await api(`/v1/admin/audit?tenant=${tenantId}&action=agent.create&limit=200`, { key: ADMIN() });
    const entries = (audit.body.data as { target: string; requestId: string }[]).filter((e) => e.requestId === requestId);
    expect(entries.map((e) => e.target).sort()).toEqual([...ids].sort());
  });

  it('refuses an id claimed in another jurisdiction on its own, creating the rest', async () => {
    const { key, tenantId } = await newTenant();
    const id = uniqueId();
    // A claim made between the client's read and its batch (another create in flight).
    await env.DB.prepare("INSERT INTO agents (tenant_id, id, jurisdiction, location_hint, name, state, snapshot, rev, created_at, updated_at) VALUES (?, ?, 'eu', NULL, NULL, 'idle', '{}', 0, 1, 1)")
      .bind(tenantId, id)
      .run();
    const other = uniqueId();
    const res = await batch(key, [{ id }, { id: other }]);
    expect(res.body.results.map((r: { status: number }) => r.status)).toEqual([409, 201]);
  });
});
