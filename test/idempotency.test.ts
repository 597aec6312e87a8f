import { abortAllDurableObjects, env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { canonicalJson, sha256Hex } from '../worker/lib/hash';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { STANDARD_SECRET, hookFor, post, standardHeaders } from './support/hooks';
import { connect } from './support/mcp';

async function upstreamCalls(executionId: string): Promise<number> {
  const res = await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${executionId}`);
  return ((await res.json()) as { count: number }).count;
}

describe('idempotency keys', () => {
  it('returns the first execution for a repeated key and never runs it again', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const body = { intent: 'charge', input: { amount: 10 } };
    const first = await api(`/v1/agents/${id}/executions`, { key, body, headers: { 'idempotency-key': 'order-1' } });
    const second = await api(`/v1/agents/${id}/executions`, { key, body, headers: { 'idempotency-key': 'order-1' } });
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.body.id).toBe(first.body.id);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    expect(await upstreamCalls(first.body.id)).toBe(1);
  });

  it('replays a key for as long as it is kept (24 h), however many executions came after it, and after a restart', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const body = { intent: 'charge', input: { amount: 10 } };
    const first = await api(`/v1/agents/${id}/executions`, { key, body, headers: { 'idempotency-key': 'order-kept' } });
    expect(first.status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'other', input: { i } } })).status).toBe(200);
    // Retention keeps the newest 1,000 finished executions: here the newest one, as for an agent
    // that ran a thousand more within the key's day.
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const kept = await runInDurableObject(stub, (instance, state) => {
      (instance as unknown as { store: { prune(now: number, keep: number): void } }).store.prune(Date.now(), 1);
      return state.storage.sql.exec<{ id: string }>('SELECT id FROM executions ORDER BY seq').toArray().map((row) => row.id);
    });
    expect(kept).toHaveLength(2); // the keyed one and the newest
    expect(kept[0]).toBe(first.body.id);
    await abortAllDurableObjects();
    const again = await api(`/v1/agents/${id}/executions`, { key, body, headers: { 'idempotency-key': 'order-kept' } });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await upstreamCalls(first.body.id)).toBe(1);
  });

  it('treats the same body with keys in another order as the same request', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const a = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { a: 1, b: 2 } }, headers: { 'idempotency-key': 'k' } });
    const b = await api(`/v1/agents/${id}/executions`, { key, rawBody: '{"input":{"b":2,"a":1},"intent":"x"}', headers: { 'content-type': 'application/json', 'idempotency-key': 'k' } });
    expect(b.body.id).toBe(a.body.id);
  });

  it('takes a body that spells a default out (timeoutMs 30000, mode sync, input null) as the same request as one that leaves it out', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const path = `/v1/agents/${id}/executions`;
    const first = await api(path, { key, body: { intent: 'charge' }, headers: { 'idempotency-key': 'defaults' } });
    expect(first.status).toBe(200);
    for (const body of [{ intent: 'charge', timeoutMs: 30_000 }, { intent: 'charge', mode: 'sync', input: null }, { intent: 'charge', mode: 'sync', input: null, timeoutMs: 30_000 }]) {
      const again = await api(path, { key, body, headers: { 'idempotency-key': 'defaults' } });
      expect(again.status, JSON.stringify(body)).toBe(200);
      expect(again.body.id).toBe(first.body.id);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
    }
    // A value other than the default is another request.
    const other = await api(path, { key, body: { intent: 'charge', timeoutMs: 29_999 }, headers: { 'idempotency-key': 'defaults' } });
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    expect(await upstreamCalls(first.body.id)).toBe(1);
  });

  it('replays a key the previous release recorded (its fingerprint: the validated body as sent), across a deploy', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const path = `/v1/agents/${id}/executions`;
    const bodies = [{ intent: 'x', timeoutMs: 30_000 }, { intent: 'y', input: null }, { intent: 'z', input: { a: 1 } }];
    const firsts: string[] = [];
    for (const [i, body] of bodies.entries()) firsts.push((await api(path, { key, body, headers: { 'idempotency-key': `old-${i}` } })).body.id);
    // What the previous release stored: SHA-256 of the canonical JSON of the body as validated (mode defaulted).
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const legacy = await Promise.all(bodies.map((body) => sha256Hex(canonicalJson({ mode: 'sync', ...body }))));
    await runInDurableObject(stub, (_instance, state) => {
      for (const [i, fingerprint] of legacy.entries()) state.storage.sql.exec('UPDATE idempotency SET fingerprint = ? WHERE key = ?', fingerprint, `old-${i}`);
    });
    await abortAllDurableObjects();
    for (const [i, body] of bodies.entries()) {
      const again = await api(path, { key, body, headers: { 'idempotency-key': `old-${i}` } });
      expect(again.status, JSON.stringify(body)).toBe(200);
      expect(again.body.id).toBe(firsts[i]);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
    }
    const changed = await api(path, { key, body: { intent: 'x', timeoutMs: 20_000 }, headers: { 'idempotency-key': 'old-0' } });
    expect(changed.status).toBe(422);
  });

  it('answers 422 idempotency_key_reused for the same key with a different body', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' }, headers: { 'idempotency-key': 'k2' } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'y' }, headers: { 'idempotency-key': 'k2' } });
    expect(res.status).toBe(422);
    expect(res.body.error.code).toBe('idempotency_key_reused');
  });

  it('runs once for 20 concurrent requests with one key', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() }, concurrency: 8 });
    const body = { intent: 'concurrent', input: { mock: { delayMs: 100 } } };
    const results = await Promise.all(
      Array.from({ length: 20 }, () => api(`/v1/agents/${id}/executions`, { key, body, headers: { 'idempotency-key': 'burst' } })),
    );
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
    const ids = new Set(results.map((r) => r.body.id));
    expect(ids.size).toBe(1);
    expect(results.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(19);
    expect(await upstreamCalls([...ids][0] as string)).toBe(1);
    const list = await api(`/v1/agents/${id}/status`, { key });
    expect(list.body.lastExecution.id).toBe([...ids][0]);
  });

  it('runs once for one key sent concurrently while the object is reset, and answers no 500', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() }, concurrency: 4 });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const body = { intent: 'reset-burst', input: { mock: { delayMs: 300 } }, mode: 'async' };
    const send = () => api(`/v1/agents/${id}/executions`, { key, body, headers: { 'idempotency-key': 'reset-burst' } });
    const early = Array.from({ length: 6 }, send);
    const reset = runInDurableObject(stub, (_instance, state) => state.abort('reset under test')).catch(() => undefined);
    const late = Array.from({ length: 6 }, send);
    const results = await Promise.all([...early, reset.then(send), ...late]);
    // A 503 tells the client to retry; anything else it could not act on.
    for (const r of results) expect([202, 503]).toContain(r.status);
    const accepted = results.filter((r) => r.status === 202);
    expect(accepted.length).toBeGreaterThan(0);
    expect(new Set(accepted.map((r) => r.body.id)).size).toBe(1);
    const again = await send();
    expect(again.body.id).toBe(accepted[0]?.body.id);
    // The list reads D1, which the outbox fills a moment later: it converges to the one execution.
    await eventually(async () => (await api(`/v1/agents/${id}/executions`, { key })).body.data.length === 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await api(`/v1/agents/${id}/executions`, { key })).body.data).toHaveLength(1);
  });

  it('replays an async execution with its current state', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const body = { intent: 'x', mode: 'async', input: { simulateLatencyMs: 2000 } };
    const first = await api(`/v1/agents/${id}/executions`, { key, body, headers: { 'idempotency-key': 'a1' } });
    expect(first.status).toBe(202);
    const again = await api(`/v1/agents/${id}/executions`, { key, body, headers: { 'idempotency-key': 'a1' } });
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    expect(['queued', 'running']).toContain(again.body.status);
  });

  it('scopes keys to one agent', async () => {
    const { key } = await newTenant();
    const a = await newAgent(key);
    const b = await newAgent(key);
    const ra = await api(`/v1/agents/${a}/executions`, { key, body: { intent: 'x' }, headers: { 'idempotency-key': 'shared' } });
    const rb = await api(`/v1/agents/${b}/executions`, { key, body: { intent: 'x' }, headers: { 'idempotency-key': 'shared' } });
    expect(rb.body.id).not.toBe(ra.body.id);
  });

  it('rejects malformed keys', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' }, headers: { 'idempotency-key': 'x'.repeat(300) } });
    expect(res.status).toBe(400);
  });

  it('reserves keys beginning with hook: for incoming hooks, so no caller of the tenant can claim a delivery before it arrives', async () => {
    const { key } = await newTenant();
    const agentId = await newAgent(key);
    const hook = await hookFor(key, agentId, 'standard', STANDARD_SECRET);
    // The key a delivery `msg_pre` of this hook is deduplicated by.
    const claim = `hook:${hook}:msg_pre`;
    const rest = await api(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'claim', mode: 'async' }, headers: { 'idempotency-key': claim } });
    expect(rest.status).toBe(400);
    expect(rest.body.error).toMatchObject({ code: 'invalid_request', details: [expect.objectContaining({ path: ['idempotency-key'] })] });
    const client = await connect(key);
    const mcp = (await client.callTool({ name: 'execute_intent', arguments: { agentId, intent: 'claim', idempotencyKey: claim } })) as { isError?: boolean; content: { text?: string }[] };
    expect(mcp.isError).toBe(true);
    expect(JSON.parse(mcp.content[0]?.text ?? 'null').error).toMatchObject({ code: 'invalid_request', details: [expect.objectContaining({ path: ['idempotencyKey'] })] });
    await client.close();
    expect((await api(`/v1/agents/${agentId}/executions`, { key })).body.data).toEqual([]);

    // The delivery starts its own execution.
    const body = JSON.stringify({ type: 'order.created' });
    const delivered = await post(hook, body, standardHeaders('msg_pre', body));
    expect(delivered.status).toBe(202);
    expect(await delivered.json()).toMatchObject({ duplicate: false });
    // A key that only contains the word elsewhere is a key like any other.
    const other = await api(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'x', mode: 'async' }, headers: { 'idempotency-key': `order-hook:${hook}` } });
    expect(other.status).toBe(202);
  });
});
