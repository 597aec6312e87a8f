import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { releaseClaim, unregisterAgent } from '../worker/agents/registry';
import { encodeCursor } from '../worker/lib/cursor';
import { api, eventually, newAgent, newTenant, uniqueId } from './support/api';
import { agentStub } from './support/transactions';

describe('agents API', () => {
  it('creates an agent with defaults and reads it back', async () => {
    const { key } = await newTenant();
    const id = uniqueId();
    const created = await api('/v1/agents', { key, body: { id, name: 'Support', instructions: 'Be kind.' } });
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe(`/v1/agents/${id}`);
    expect(created.body).toMatchObject({ id, name: 'Support', instructions: 'Be kind.', concurrency: 1, upstream: { kind: 'builtin' }, state: 'idle', region: null, jurisdiction: null });
    const read = await api(`/v1/agents/${id}`, { key });
    expect(read.status).toBe(200);
    expect(read.body).toEqual(created.body);
  });

  it('makes an id when none is given', async () => {
    const { key } = await newTenant();
    const created = await api('/v1/agents', { key, body: {} });
    expect(created.status).toBe(201);
    expect(created.body.id).toMatch(/^[a-zA-Z0-9_-]{1,64}$/);
  });

  it('answers 409 conflict for an existing id', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const again = await api('/v1/agents', { key, body: { id } });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('conflict');
  });

  it('validates ids, concurrency and upstreams', async () => {
    const { key } = await newTenant();
    for (const body of [{ id: 'a'.repeat(65) }, { id: 'has space' }, { concurrency: 0 }, { concurrency: 33 }, { upstream: { kind: 'nope' } }, { jurisdiction: 'us' }, { extra: true }]) {
      const res = await api('/v1/agents', { key, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    expect((await api('/v1/agents/bad%20id', { key })).status).toBe(400);
  });

  it('never returns an upstream API key', async () => {
    const { key } = await newTenant();
    const res = await api('/v1/agents', { key, body: { upstream: { kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'gpt', apiKey: 'sk-secret-abcd1234' } } });
    expect(res.status).toBe(201);
    expect(res.body.upstream.apiKey).toBe('…1234');
    expect(JSON.stringify((await api(`/v1/agents/${res.body.id}`, { key })).body)).not.toContain('sk-secret');
  });

  it('refuses an upstream apiKey with a control character (a line break, NUL), which no header carries', async () => {
    const { key } = await newTenant();
    for (const control of ['\n', '\u0000', '\u0001']) {
      const res = await api('/v1/agents', { key, body: { upstream: { kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'gpt', apiKey: `sk-control${control}key-1234` } } });
      expect(res.status, JSON.stringify(control)).toBe(400);
      expect(res.body.error.details).toEqual([expect.objectContaining({ path: ['upstream', 'apiKey'] })]);
    }
  });

  it('keeps the stored upstream credential when an agent is read and its masked key written back', async () => {
    const { key, tenantId } = await newTenant();
    const upstream = { kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'gpt', apiKey: 'sk-secret-abcd1234' };
    const created = await api('/v1/agents', { key, body: { upstream } });
    const id = created.body.id as string;
    const stored = () => runInDurableObject(agentStub(tenantId, id), (_o, state: DurableObjectState) => JSON.parse(String(state.storage.sql.exec('SELECT config FROM agent').one().config)).upstream.apiKey);

    const read = (await api(`/v1/agents/${id}`, { key })).body;
    const same = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...read.upstream, model: 'gpt-2' } } });
    expect(same.status).toBe(200);
    expect(same.body.upstream).toMatchObject({ model: 'gpt-2', apiKey: '…1234' });
    expect(await stored()).toBe('sk-secret-abcd1234');

    // A masked form that matches nothing stored is refused, here and on create.
    const other = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...upstream, apiKey: '…9999' } } });
    expect(other.status).toBe(400);
    expect(other.body.error.details).toEqual([expect.objectContaining({ path: ['upstream', 'apiKey'], code: 'masked_credential' })]);
    expect(await stored()).toBe('sk-secret-abcd1234');
    // Nor does a stored key follow a new base URL.
    const moved = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...read.upstream, baseUrl: 'https://attacker.example/v1' } } });
    expect(moved.status).toBe(400);
    expect(moved.body.error.details[0].code).toBe('masked_credential');
    expect((await api(`/v1/agents/${id}`, { key })).body.upstream.baseUrl).toBe('https://api.example.com/v1');
    const fresh = await api('/v1/agents', { key, body: { upstream: { ...upstream, apiKey: '…1234' } } });
    expect(fresh.status).toBe(400);
    expect(fresh.body.error.details[0].code).toBe('masked_credential');
  });

  it('shows no character of a short upstream key, and keeps it when its bare mask comes back', async () => {
    const { key, tenantId } = await newTenant();
    const upstream = { kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'gpt', apiKey: 'abcd' };
    const created = await api('/v1/agents', { key, body: { upstream } });
    expect(created.status).toBe(201);
    expect(created.body.upstream.apiKey).toBe('…');
    const id = created.body.id as string;
    const stored = () => runInDurableObject(agentStub(tenantId, id), (_o, state: DurableObjectState) => JSON.parse(String(state.storage.sql.exec('SELECT config FROM agent').one().config)).upstream.apiKey);
    const read = (await api(`/v1/agents/${id}`, { key })).body;
    expect(read.upstream.apiKey).toBe('…');
    const same = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...read.upstream, model: 'gpt-2' } } });
    expect(same.status).toBe(200);
    expect(same.body.upstream).toMatchObject({ model: 'gpt-2', apiKey: '…' });
    expect(await stored()).toBe('abcd');
    const dots = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...upstream, model: 'gpt-3', apiKey: '...' } } });
    expect(dots.status).toBe(200);
    expect(await stored()).toBe('abcd');
    // Eleven characters are still too short to show four of; twelve show the last four.
    const eleven = await api('/v1/agents', { key, body: { upstream: { ...upstream, apiKey: 'sk-12345678' } } });
    expect(eleven.body.upstream.apiKey).toBe('…');
    const twelve = await api('/v1/agents', { key, body: { upstream: { ...upstream, apiKey: 'sk-123456789' } } });
    expect(twelve.body.upstream.apiKey).toBe('…6789');
    // The bare mask does not stand for a long key.
    const wrong = await api(`/v1/agents/${twelve.body.id}`, { method: 'PATCH', key, body: { upstream: { ...upstream, apiKey: '…' } } });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.details[0].code).toBe('masked_credential');
  });

  it('takes an upstream key spelt with three ASCII dots (a transliterated ellipsis) as the mask itself', async () => {
    const { key, tenantId } = await newTenant();
    const upstream = { kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'gpt', apiKey: 'sk-secret-abcd1234' };
    const id = (await api('/v1/agents', { key, body: { upstream } })).body.id as string;
    const stored = () => runInDurableObject(agentStub(tenantId, id), (_o, state: DurableObjectState) => JSON.parse(String(state.storage.sql.exec('SELECT config FROM agent').one().config)).upstream.apiKey);

    const kept = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...upstream, model: 'gpt-2', apiKey: '...1234' } } });
    expect(kept.status).toBe(200);
    expect(kept.body.upstream).toMatchObject({ model: 'gpt-2', apiKey: '…1234' });
    expect(await stored()).toBe('sk-secret-abcd1234');

    const refusals = [
      api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...upstream, apiKey: '...9999' } } }),
      api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...upstream, baseUrl: 'https://attacker.example/v1', apiKey: '...1234' } } }),
      api('/v1/agents', { key, body: { upstream: { ...upstream, apiKey: '...1234' } } }),
    ];
    for (const res of await Promise.all(refusals)) {
      expect(res.status).toBe(400);
      expect(res.body.error.details).toEqual([expect.objectContaining({ path: ['upstream', 'apiKey'], code: 'masked_credential' })]);
    }
    expect(await stored()).toBe('sk-secret-abcd1234');
    expect((await api(`/v1/agents/${id}`, { key })).body.upstream).toMatchObject({ model: 'gpt-2', baseUrl: 'https://api.example.com/v1' });
  });

  it('refuses a fixed or unknown field in a PATCH by its name, not as "nothing to update"', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    for (const body of [{ region: 'weur' }, { jurisdiction: 'eu' }, { id: 'other' }, { colour: 'blue' }]) {
      const res = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error.message, JSON.stringify(body)).not.toContain('nothing to update');
      expect(res.body.error.details, JSON.stringify(body)).toHaveLength(1);
    }
    const empty = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: {} });
    expect(empty.status).toBe(400);
    expect(empty.body.error.message).toBe('nothing to update');
  });

  it("names the field of a refused upstream in the envelope's param: a pool that does not exist", async () => {
    const { key } = await newTenant();
    const created = await api('/v1/agents', { key, body: { upstream: { kind: 'pool', pool: 'no-such-pool' } } });
    expect(created.status).toBe(400);
    expect(created.body.error).toMatchObject({ code: 'invalid_request', param: 'upstream.pool' });
  });

  it('keeps every metadata key it answers 201 for: "__proto__" is refused (400), never dropped', async () => {
    const { key } = await newTenant();
    const id = uniqueId();
    const created = await api('/v1/agents', { key, rawBody: `{"id":"${id}","metadata":{"__proto__":"x","team":"a"}}`, headers: { 'content-type': 'application/json' } });
    expect(created.status).toBe(400);
    expect(created.body.error.param).toMatch(/^metadata/);
    expect((await api(`/v1/agents/${id}`, { key })).status).toBe(404);
    const other = await newAgent(key);
    const patched = await api(`/v1/agents/${other}`, { method: 'PATCH', key, rawBody: '{"metadata":{"__proto__":"x"}}', headers: { 'content-type': 'application/json' } });
    expect(patched.status).toBe(400);
  });

  it('refuses A2A skills that share an id: the agent card names each skill once', async () => {
    const { key } = await newTenant();
    const skill = (name: string) => ({ id: 'faq', name, description: 'answers' });
    const created = await api('/v1/agents', { key, body: { a2a: { skills: [skill('one'), skill('two')] } } });
    expect(created.status).toBe(400);
    expect(created.body.error.param).toBe('a2a.skills.1.id');
    const id = await newAgent(key);
    const patched = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { a2a: { skills: [skill('one'), skill('two')] } } });
    expect(patched.status).toBe(400);
    expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { a2a: { skills: [skill('one'), { ...skill('two'), id: 'orders' }] } } })).status).toBe(200);
  });

  it('refuses an agent or A2A skill name with a control character (NUL, ESC, a line break, C1): 400 invalid_request at that field', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { name: 'clean' });
    for (const name of ['a\u0000b', '\u001b[31mred', 'two\nlines', 'c1\u009b']) {
      const created = await api('/v1/agents', { key, body: { name } });
      expect(created.status, JSON.stringify(name)).toBe(400);
      expect(created.body.error).toMatchObject({ code: 'invalid_request', param: 'name' });
      const patched = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { name } });
      expect(patched.status, JSON.stringify(name)).toBe(400);
      expect(patched.body.error).toMatchObject({ code: 'invalid_request', param: 'name' });
      const skill = await api('/v1/agents', { key, body: { a2a: { skills: [{ id: 'faq', name, description: 'answers' }] } } });
      expect(skill.status, JSON.stringify(name)).toBe(400);
      expect(skill.body.error).toMatchObject({ code: 'invalid_request', param: 'a2a.skills.0.name' });
    }
    expect((await api(`/v1/agents/${id}`, { key })).body.name).toBe('clean');
  });

  it('updates name, concurrency and pause state', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { name: 'Renamed', concurrency: 4, paused: true } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ name: 'Renamed', concurrency: 4, state: 'paused' });
    expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: {} })).status).toBe(400);
  });

  it("names the configuration's version in an ETag, and refuses a PATCH whose If-Match names another (412 version_mismatch), changing nothing", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { name: 'First' });
    const path = `/v1/agents/${id}`;
    const patch = (body: object, headers: Record<string, string> = {}) => api(path, { method: 'PATCH', key, body, headers });
    const first = (await api(path, { key })).headers.get('etag');
    expect(first).toMatch(/^"\d+"$/);
    const changed = await patch({ name: 'Second' }, { 'if-match': first as string });
    expect(changed.status).toBe(200);
    const second = changed.headers.get('etag');
    expect(second).toMatch(/^"\d+"$/);
    expect(second).not.toBe(first);
    expect((await api(path, { key })).headers.get('etag')).toBe(second);
    // The first version's tag is stale now; a weak tag of the current one never matches (If-Match compares strongly).
    for (const stale of [first as string, `W/${second}`, `${first}, W/${second}`]) {
      const refused = await patch({ name: 'Lost', concurrency: 9 }, { 'if-match': stale });
      expect(refused.status, stale).toBe(412);
      expect(refused.body.error, stale).toMatchObject({ code: 'version_mismatch', details: { version: Number(JSON.parse(second as string)) } });
    }
    const kept = await api(path, { key });
    expect(kept.body).toMatchObject({ name: 'Second', concurrency: 1 });
    expect(kept.headers.get('etag')).toBe(second);
    expect((await patch({ name: 'Bad' }, { 'if-match': 'garbage' })).status).toBe(400);
    // A list naming the current version, `*`, and no If-Match apply as before.
    const listed = await patch({ name: 'Third' }, { 'if-match': `"999", ${second}` });
    expect(listed.status).toBe(200);
    expect((await patch({ name: 'Fourth' }, { 'if-match': '*' })).status).toBe(200);
    const plain = await patch({ name: 'Fifth' });
    expect(plain.status).toBe(200);
    expect(plain.body.name).toBe('Fifth');
    expect(new Set([first, second, listed.headers.get('etag'), plain.headers.get('etag')]).size).toBe(4);
  });

  it("answers an edge of the previous release, which calls the object's update (a deploy's window), with the agent alone", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const updated = await agentStub(tenantId, id).update({ name: 'Old edge' });
    expect(updated).toMatchObject({ ok: true, value: { id, name: 'Old edge' } });
    expect(updated.value.agent).toBeUndefined();
    expect((await api(`/v1/agents/${id}`, { key })).headers.get('etag')).toBe('"2"');
  });

  it('lists agents from D1 with cursor pagination', async () => {
    const { key } = await newTenant();
    const ids = ['p-a', 'p-b', 'p-c', 'p-d', 'p-e'];
    for (const id of ids) await newAgent(key, { id });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `?limit=2&cursor=${cursor}` : '?limit=2';
      const page = await api(`/v1/agents${query}`, { key });
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.data.map((a: { id: string }) => a.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(ids);
    expect((await api('/v1/agents?cursor=%%%', { key })).status).toBe(400);
    expect((await api('/v1/agents?limit=1000', { key })).status).toBe(400);
  });

  it('bounds a page of agents by its size as well as by limit: large agents page on with nextCursor, never one answer of 100 of them', async () => {
    // An agent's snapshot holds its instructions, metadata and A2A card: about 1 MB at most
    // (escaped control characters), so a page of 100 was about 100 MB read into the Worker at
    // once (its isolate has 128 MB), as an execution page of large outputs was.
    const { key } = await newTenant();
    const c = '\u0001';
    // A name has no control characters: a quote, escaped too, is the largest it can be.
    const skill = (i: number) => ({ id: `s${i}`, name: '"'.repeat(200), description: c.repeat(2000), tags: Array.from({ length: 16 }, () => c.repeat(64)), examples: Array.from({ length: 8 }, () => c.repeat(500)) });
    const big = { instructions: c.repeat(32_000), metadata: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`k${i}`, c.repeat(1024)])), a2a: { description: c.repeat(2000), skills: Array.from({ length: 14 }, (_, i) => skill(i)) } };
    const ids = ['big-a', 'big-b', 'big-c', 'big-d', 'big-e', 'big-f'];
    for (const id of ids) expect((await api('/v1/agents', { key, body: { id, ...big } })).status).toBe(201);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: any } = await api(`/v1/agents?limit=100${cursor ? `&cursor=${cursor}` : ''}`, { key });
      expect(res.status).toBe(200);
      expect(res.body.data.length).toBeGreaterThan(0);
      expect(JSON.stringify(res.body).length).toBeLessThan(5 * 1024 * 1024);
      seen.push(...res.body.data.map((a: { id: string }) => a.id));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual(ids);
    expect(pages).toBeGreaterThan(1);
  });

  it("refuses a cursor of another list or another tenant's list (400), never reading it as a place in this one", async () => {
    const { key } = await newTenant();
    // Agent ids that an execution list's cursor also has the shape of.
    for (const id of ['ex_a', 'ex_b', 'ex_c']) await newAgent(key, { id });
    const first = await api('/v1/agents?limit=1', { key });
    const cursor: string = first.body.nextCursor;
    expect(cursor).toEqual(expect.any(String));
    expect((await api(`/v1/agents?limit=1&cursor=${cursor}`, { key })).body.data.map((a: { id: string }) => a.id)).toEqual(['ex_b']);
    // Another tenant's cursor, an execution list's cursor, and this list's cursor in an execution list.
    const other = await newTenant();
    const refused = [
      await api(`/v1/agents?cursor=${cursor}`, { key: other.key }),
      await api(`/v1/agents?cursor=${encodeCursor('ex_01m969vjtttt3djhk022fmr9pc')}`, { key }),
      await api(`/v1/agents/ex_a/executions?cursor=${cursor}`, { key }),
    ];
    for (const res of refused) {
      expect(res.status).toBe(400);
      expect(res.body.error.param, JSON.stringify(res.body)).toBe('cursor');
    }
  });

  it('deletes an agent with its state; the id can be used again', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(204);
    expect((await api(`/v1/agents/${id}`, { key })).status).toBe(404);
    expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(404);
    const rows = await env.DB.prepare('SELECT count(*) AS n FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ n: number }>();
    expect(rows?.n).toBe(0);
    const recreated = await api('/v1/agents', { key, body: { id } });
    expect(recreated.status).toBe(201);
    const context = await api(`/v1/agents/${id}/context`, { key });
    expect(context.body).toEqual({ version: 0, data: {} });
  });

  it('answers a sync execution waiting on an agent at once with 404 when the agent is deleted, not at its deadline', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const waiting = api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 20_000 }, timeoutMs: 25_000 } });
    await eventually(async () => (await api(`/v1/agents/${id}/status`, { key })).body.running === 1);
    expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(204);
    const deletedAt = Date.now();
    const res = await waiting;
    expect(Date.now() - deletedAt).toBeLessThan(3_000);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });

  it('places a jurisdiction agent in the EU namespace', async () => {
    const { key } = await newTenant();
    const res = await api('/v1/agents', { key, body: { jurisdiction: 'eu' } });
    expect(res.status).toBe(201);
    expect(res.body.jurisdiction).toBe('eu');
    const exec = await api(`/v1/agents/${res.body.id}/executions`, { key, body: { intent: 'hello' } });
    expect(exec.status).toBe(200);
  });

  it("places a new agent by the caller's continent, or by its own region", async () => {
    const { key, tenantId } = await newTenant();
    const byGeo = await api('/v1/agents', { key, body: {}, cf: { continent: 'EU', longitude: '2.35' } });
    const byRegion = await api('/v1/agents', { key, body: { region: 'apac' }, cf: { continent: 'EU', longitude: '2.35' } });
    const hint = async (id: string) =>
      (await env.DB.prepare('SELECT location_hint FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ location_hint: string }>())?.location_hint;
    expect(await hint(byGeo.body.id)).toBe('weur');
    expect(await hint(byRegion.body.id)).toBe('apac');
    expect(byRegion.body.region).toBe('apac');
  });

  it('treats a repeated create RPC (a retry) as the same create, and anything else as a conflict', async () => {
    const { tenantId } = await newTenant();
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/retry-me`));
    const config = { id: 'retry-me', name: null, instructions: null, upstream: { kind: 'builtin' as const }, concurrency: 1, region: null, jurisdiction: null, metadata: null };
    const input = { tenantId, config, createdAt: 1_700_000_000_000 };
    expect((await stub.create(input)).ok).toBe(true);
    expect((await stub.create(input)).ok).toBe(true);
    const other = await stub.create({ ...input, config: { ...config, name: 'other' } });
    expect(other).toMatchObject({ ok: false, code: 'conflict' });
  });

  describe('a claim left without an agent', () => {
    // What a create leaves behind when the agent's object refused it and D1 then refused the
    // release of its claim: the id claimed in the registry, no agent in the object.
    const orphan = (tenantId: string, id: string, jurisdiction: string | null = null) =>
      env.DB.prepare("INSERT INTO agents (tenant_id, id, jurisdiction, location_hint, name, state, snapshot, rev, created_at, updated_at) VALUES (?, ?, ?, NULL, 'Lost', 'idle', ?, 0, 1, 1)")
        .bind(tenantId, id, jurisdiction, JSON.stringify({ agent: { id, name: 'Lost' }, contextVersion: 0 }))
        .run();
    const registryRow = (tenantId: string, id: string) =>
      env.DB.prepare('SELECT name, rev, created_at FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ name: string | null; rev: number; created_at: number }>();

    it('is taken over by the next create of the id, which then works like any agent', async () => {
      const { key, tenantId } = await newTenant();
      const id = uniqueId();
      await orphan(tenantId, id);
      expect((await api(`/v1/agents/${id}`, { key })).status).toBe(404);
      const created = await api('/v1/agents', { key, body: { id, name: 'Found' } });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ id, name: 'Found' });
      expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } })).status).toBe(200);
      // The agent sends its own snapshot over the claim's.
      await eventually(async () => ((await registryRow(tenantId, id))?.rev ?? 0) > 0);
      expect(await registryRow(tenantId, id)).toMatchObject({ name: 'Found' });
      expect((await api('/v1/agents', { key, body: { id } })).status).toBe(409);
    });

    it('is not taken over across jurisdictions', async () => {
      const { key, tenantId } = await newTenant();
      const id = uniqueId();
      await orphan(tenantId, id, 'eu');
      const again = await api('/v1/agents', { key, body: { id } });
      expect(again.status).toBe(409);
      expect(again.body.error.code).toBe('conflict');
    });

    it('once taken over, cannot be released by the create that left it', async () => {
      const { key, tenantId } = await newTenant();
      const id = uniqueId();
      await orphan(tenantId, id);
      expect((await api('/v1/agents', { key, body: { id } })).status).toBe(201);
      await releaseClaim(env, tenantId, id, 1);
      expect(await registryRow(tenantId, id)).not.toBeNull();
      expect((await api(`/v1/agents/${id}`, { key })).status).toBe(200);
    });

    it('lost to a create that reached the object first: the agent restores its own snapshot in the registry', async () => {
      const { key, tenantId } = await newTenant();
      const id = uniqueId();
      expect((await api('/v1/agents', { key, body: { id, name: 'First' } })).status).toBe(201);
      // The second request took the claim over (its snapshot in D1) before the first's create ran.
      await env.DB.prepare("UPDATE agents SET name = 'Second' WHERE tenant_id = ? AND id = ?").bind(tenantId, id).run();
      const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
      const config = { id, name: 'Second', instructions: null, upstream: { kind: 'builtin' as const }, concurrency: 1, region: null, jurisdiction: null, metadata: null };
      expect(await stub.create({ tenantId, config, createdAt: Date.now(), adoptedClaim: true })).toMatchObject({ ok: false, code: 'conflict' });
      await eventually(async () => (await registryRow(tenantId, id))?.name === 'First');
    });
  });

  describe('a DELETE whose D1 batch failed after the object was destroyed', () => {
    // D1 refusing every batch, as the runtime answers a transient failure: the DELETE's
    // removal of the registry row and the executions fails, its destroy of the object did not.
    const refusing = <T extends D1Database | D1DatabaseSession>(db: T): T =>
      new Proxy(db, {
        get: (target, prop) => {
          if (prop === 'batch') return () => Promise.reject(new Error('D1_ERROR: database is locked: SQLITE_BUSY'));
          if (prop === 'withSession') return (constraint?: string) => refusing((target as D1Database).withSession(constraint));
          const value: unknown = Reflect.get(target, prop, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
    const refusingBatches = refusing(env.DB);
    const app = createApp();
    const row = (tenantId: string, id: string) =>
      env.DB.prepare('SELECT name, rev, created_at FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ name: string | null; rev: number; created_at: number }>();
    const d1Executions = async (tenantId: string, id: string) =>
      (await env.DB.prepare('SELECT id FROM executions WHERE tenant_id = ? AND agent_id = ?').bind(tenantId, id).all<{ id: string }>()).results.map((r) => r.id);

    it('leaves an id the next create takes over, empty, and the DELETE that left it cannot remove the new agent', async () => {
      const { key, tenantId } = await newTenant();
      const id = await newAgent(key, { name: 'Old' });
      const old = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
      expect(old.status).toBe(200);
      await eventually(async () => (await d1Executions(tenantId, id)).length > 0 && ((await row(tenantId, id))?.rev ?? 0) > 0);
      const oldCreatedAt = (await row(tenantId, id))?.created_at ?? 0;
      // A long-lived agent's row is at a revision the new agent's snapshots will take long to reach.
      await env.DB.prepare('UPDATE agents SET rev = 1000 WHERE tenant_id = ? AND id = ?').bind(tenantId, id).run();

      const failed = await app.request(`/v1/agents/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } }, { ...env, DB: refusingBatches });
      expect(failed.status).toBe(503);
      expect(((await failed.json()) as { error: { code: string } }).error.code).toBe('unavailable');
      expect((await api(`/v1/agents/${id}`, { key })).status).toBe(404);

      const created = await api('/v1/agents', { key, body: { id, name: 'New' } });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ id, name: 'New', state: 'idle' });
      expect((await api(`/v1/agents/${id}/executions`, { key })).body.data).toEqual([]);
      expect(await d1Executions(tenantId, id)).toEqual([]);
      const listed = (await api('/v1/agents', { key })).body.data as { id: string; name: string }[];
      expect(listed.find((a) => a.id === id)).toMatchObject({ name: 'New' });
      // The new agent's own snapshots land over the taken-over row (its revision restarted).
      const fresh = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'again' } });
      expect(fresh.status).toBe(200);
      expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { name: 'Newer' } })).status).toBe(200);
      await eventually(async () => (await d1Executions(tenantId, id)).includes(fresh.body.id) && (await row(tenantId, id))?.name === 'Newer');

      // The failed DELETE's removal, run again late, matches the row it found: not the new agent's.
      await unregisterAgent(env, tenantId, id, oldCreatedAt);
      expect(await row(tenantId, id)).not.toBeNull();
      expect(await d1Executions(tenantId, id)).toEqual([fresh.body.id]);
      expect((await api(`/v1/agents/${id}`, { key })).body).toMatchObject({ id, name: 'Newer' });
      // Deleting the new agent still works, and leaves the id free.
      expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(204);
      expect(await row(tenantId, id)).toBeNull();
      expect(await d1Executions(tenantId, id)).toEqual([]);
    });

    /** An AGENTS binding whose first `create` call waits at a gate until released. */
    function gatedCreate() {
      let reachedGate!: () => void;
      let release!: () => void;
      const reached = new Promise<void>((resolve) => (reachedGate = resolve));
      const gate = new Promise<void>((resolve) => (release = resolve));
      let held = false;
      const real = env.AGENTS;
      const namespace = new Proxy(real, {
        get: (target, prop) => {
          if (prop !== 'get') {
            const value: unknown = Reflect.get(target, prop, target);
            return typeof value === 'function' ? value.bind(target) : value;
          }
          return (...args: Parameters<typeof real.get>) => {
            const stub = target.get(...args) as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>;
            return new Proxy(stub, {
              get: (s, method: string) => async (...a: unknown[]) => {
                if (method === 'create' && !held) {
                  held = true;
                  reachedGate();
                  await gate;
                }
                return s[method]!(...a);
              },
            });
          };
        },
      });
      return { namespace, reached, release };
    }
    const postAgent = (key: string, body: object, agents: typeof env.AGENTS) =>
      createApp().request('/v1/agents', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }, { ...env, AGENTS: agents });

    it("taken over by a second create whose object call lands after the first's: the second answers 409, and a DELETE then removes the first's agent", async () => {
      const { key, tenantId } = await newTenant();
      const id = uniqueId();
      const one = gatedCreate();
      const two = gatedCreate();
      const first = postAgent(key, { id, name: 'First' }, one.namespace);
      await one.reached; // claimed, its object call on its way
      const second = postAgent(key, { id, name: 'Second' }, two.namespace);
      await two.reached; // took the claim over (the object still empty), its object call on its way
      one.release();
      const firstAnswer = await first;
      expect(firstAnswer.status).toBe(201);
      two.release();
      expect((await second).status).toBe(409);
      expect((await api(`/v1/agents/${id}`, { key })).body).toMatchObject({ id, name: 'First' });
      expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(204);
      // Gone from the object too, not left running with no registry row.
      const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
      expect(await stub.get()).toMatchObject({ ok: false, code: 'not_found' });
    });

    it("taken over by a second create while the first's object call was on its way: the first answers 409 and leaves the second's agent", async () => {
      const { key } = await newTenant();
      const id = uniqueId();
      // The first create's call to the object waits until the second create has finished.
      const gated = gatedCreate();
      const first = postAgent(key, { id, name: 'First' }, gated.namespace);
      await gated.reached;
      const second = await api('/v1/agents', { key, body: { id, name: 'Second' } });
      expect(second.status).toBe(201);
      gated.release();
      const firstAnswer = await first;
      expect(firstAnswer.status).toBe(409);
      // The agent the second create answered 201 for is the one there.
      expect((await api(`/v1/agents/${id}`, { key })).body).toMatchObject({ id, name: 'Second', createdAt: second.body.createdAt });
    });

    it('is taken over by one of two creates racing for it', async () => {
      const { key, tenantId } = await newTenant();
      const id = await newAgent(key, { name: 'Old' });
      expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { name: 'Older' } })).status).toBe(200);
      await eventually(async () => ((await row(tenantId, id))?.rev ?? 0) > 0);
      const failed = await app.request(`/v1/agents/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } }, { ...env, DB: refusingBatches });
      expect(failed.status).toBe(503);
      const both = await Promise.all(['A', 'B'].map((name) => api('/v1/agents', { key, body: { id, name } })));
      expect(both.map((r) => r.status).sort()).toEqual([201, 409]);
      const winner = both.find((r) => r.status === 201);
      expect((await api(`/v1/agents/${id}`, { key })).body).toMatchObject({ id, name: winner?.body.name });
    });

    it('is not taken over while the object cannot be reached: a platform error is not "no agent"', async () => {
      const { key, tenantId } = await newTenant();
      const id = await newAgent(key, { name: 'Old' });
      const failed = await app.request(`/v1/agents/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } }, { ...env, DB: refusingBatches });
      expect(failed.status).toBe(503);
      const before = await row(tenantId, id);
      // Every call to an agent object fails as the platform's do when it is unreachable.
      const unreachable = new Proxy(env.AGENTS, {
        get: (target, prop) => {
          if (prop === 'get') return () => new Proxy({}, { get: () => () => Promise.reject(Object.assign(new Error('Network connection lost.'), { retryable: true })) });
          const value: unknown = Reflect.get(target, prop, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const create = await app.request('/v1/agents', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ id, name: 'New' }) }, { ...env, AGENTS: unreachable });
      expect(create.status).toBe(503);
      expect(((await create.json()) as { error: { code: string } }).error.code).toBe('agent_unavailable');
      expect(await row(tenantId, id)).toEqual(before);
      expect((await api('/v1/agents', { key, body: { id, name: 'New' } })).status).toBe(201);
    });
  });

  it('projects agent snapshots to D1 through the outbox', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { name: 'Projected' } });
    const row = await eventually(() =>
      env.DB.prepare('SELECT name, snapshot FROM agents WHERE tenant_id = ? AND id = ? AND name = ?').bind(tenantId, id, 'Projected').first<{ name: string; snapshot: string }>(),
    );
    expect(JSON.parse(row.snapshot).agent.name).toBe('Projected');
  });
});

describe('tenant isolation', () => {
  it("answers 404 for another tenant's agent on every agent route, never its data", async () => {
    const owner = await newTenant();
    const other = await newTenant();
    const id = await newAgent(owner.key);
    const exec = await api(`/v1/agents/${id}/executions`, { key: owner.key, body: { intent: 'secret-intent', input: { message: 'private' } } });
    const eid = exec.body.id;
    const attempts: [string, string, unknown?][] = [
      ['GET', `/v1/agents/${id}`],
      ['PATCH', `/v1/agents/${id}`, { name: 'stolen' }],
      ['DELETE', `/v1/agents/${id}`],
      ['POST', `/v1/agents/${id}/executions`, { intent: 'x' }],
      ['GET', `/v1/agents/${id}/executions`],
      ['GET', `/v1/agents/${id}/executions/${eid}`],
      ['POST', `/v1/agents/${id}/executions/${eid}/cancel`],
      ['GET', `/v1/agents/${id}/status`],
      ['GET', `/v1/agents/${id}/context`],
      ['PATCH', `/v1/agents/${id}/context`, { stolen: true }],
    ];
    for (const [method, path, body] of attempts) {
      const res = await api(path, { method, key: other.key, ...(body === undefined ? {} : { body }) });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(JSON.stringify(res.body)).not.toContain('private');
    }
    const list = await api('/v1/agents', { key: other.key });
    expect(list.body.data.map((a: { id: string }) => a.id)).not.toContain(id);
    // The owner's agent is untouched.
    const mine = await api(`/v1/agents/${id}`, { key: owner.key });
    expect(mine.status).toBe(200);
    expect(mine.body.name).toBeNull();
  });
});
