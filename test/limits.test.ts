import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { ADMIN, api, BASE, eventually, newAgent, newTenant } from './support/api';
import { STANDARD_SECRET, hookFor, post, standardHeaders } from './support/hooks';
import { limitedKey } from './support/limits';

const chat = (key: string, content = 'hi', extra: Record<string, unknown> = {}) =>
  api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content }], ...extra } });

const count = (statuses: number[], status: number) => statuses.filter((s) => s === status).length;

describe('budgets', () => {
  it('admits exactly 10 of 50 concurrent requests against a request budget of 10', async () => {
    const { key } = await limitedKey({ budget: { requests: 10, period: 'day' } });
    const results = await Promise.all(Array.from({ length: 50 }, () => chat(key)));
    expect(count(results.map((r) => r.status), 200)).toBe(10);
    const refused = results.filter((r) => r.status === 429);
    expect(refused).toHaveLength(40);
    for (const r of refused) {
      expect(r.body.error.code).toBe('budget_exhausted');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(r.headers.get('ratelimit-limit')).toBe('10');
      expect(r.headers.get('ratelimit-remaining')).toBe('0');
      expect(Number(r.headers.get('ratelimit-reset'))).toBeGreaterThan(0);
      expect(Number(r.headers.get('ratelimit-reset'))).toBeLessThanOrEqual(86_400);
    }
    const admitted = results.filter((r) => r.status === 200);
    expect(admitted.map((r) => r.headers.get('ratelimit-remaining')).sort()).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const usage = await api('/v1/usage', { key });
    expect(usage.body.budget).toMatchObject({ period: 'day', requests: 10 });
  });

  it('counts executions against the request budget; other routes only against rate windows', async () => {
    const { key, otherKey } = await limitedKey({ budget: { requests: 2, period: 'month' } });
    const agent = await newAgent(otherKey);
    for (let i = 0; i < 5; i++) expect((await api('/v1/agents', { key })).status).toBe(200);
    expect((await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'echo' } })).status).toBe(200);
    expect((await chat(key)).status).toBe(200);
    const third = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'echo' } });
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('budget_exhausted');
    expect((await api('/v1/agents', { key })).status).toBe(200);
  });

  it('counts A2A sends and MCP execute_intent calls against the budget; other JSON-RPC calls only against rate windows', async () => {
    const { key, otherKey } = await limitedKey({ budget: { requests: 2, period: 'day' } });
    const agent = await newAgent(otherKey);
    const a2a = (method: string, params: Record<string, unknown>) =>
      api(`/a2a/${agent}/`, { key, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 1, method, params } });
    const mcp = (method: string, params: Record<string, unknown>) =>
      api('/mcp', { key, headers: { accept: 'application/json, text/event-stream' }, body: { jsonrpc: '2.0', id: 1, method, params } });
    const send = () => a2a('SendMessage', { message: { messageId: crypto.randomUUID(), role: 'ROLE_USER', parts: [{ text: 'hi' }] }, configuration: { returnImmediately: true } });
    const execute = () => mcp('tools/call', { name: 'execute_intent', arguments: { agentId: agent, intent: 'echo', input: { text: 'hi' } } });

    const sent = await send();
    expect(sent.status).toBe(200);
    expect(sent.body.error).toBeUndefined();
    const executed = await execute();
    expect(executed.status).toBe(200);
    expect(JSON.stringify(executed.body)).not.toContain('"isError":true');
    for (let i = 0; i < 3; i++) {
      expect((await a2a('GetTask', { id: sent.body.result.task?.id ?? sent.body.result.id })).status).toBe(200);
      expect((await mcp('tools/call', { name: 'list_agents', arguments: {} })).status).toBe(200);
    }
    const refused = await send();
    expect(refused.status).toBe(429);
    expect(refused.body.error.code).toBe('budget_exhausted');
    // MCP answers the budget's refusal of the tool as its tool error (HTTP 200), for the model to read.
    const over = await execute();
    expect(over.status).toBe(200);
    expect(over.body).toMatch(/\\"code\\":\\"budget_exhausted\\"/);
  });

  it('settles a token budget with the usage the upstream reports, not the estimate', async () => {
    // The estimate of each chat is 6 tokens (max_tokens 5 + "hi"); the mock reports 15 used.
    // Settled with real usage: 0 → 15 → 30 → 45, so the fourth is refused. Settled with the
    // estimate it would take six.
    const { key } = await limitedKey({ budget: { tokens: 40, period: 'day' } });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await chat(key, 'hi', { max_tokens: 5 });
      statuses.push(res.status);
      if (res.status === 200) await eventually(async () => (await api('/v1/usage', { key })).body.budget.reservedTokens === 0);
      else expect(res.body.error.code).toBe('budget_exhausted');
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    const usage = await api('/v1/usage', { key });
    expect(usage.body.budget).toMatchObject({ tokens: 45, reservedTokens: 0, requests: 3 });
  });

  it('does not count requests the gateway refuses (4xx) against the request budget', async () => {
    const { key, otherKey } = await limitedKey({ budget: { requests: 2, period: 'day' } });
    const agent = await newAgent(otherKey);
    expect((await api(`/v1/agents/${agent}/executions`, { key, body: { nope: 1 } })).status).toBe(400);
    expect((await api('/v1/agents/no-such-agent/executions', { key, body: { intent: 'echo' } })).status).toBe(404);
    expect((await chat(key, 'hi', { model: 'no-such-pool' })).status).toBe(404);
    await eventually(async () => (await api('/v1/usage', { key })).body.budget.requests === 0);
    for (let i = 0; i < 2; i++) expect((await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'echo' } })).status).toBe(200);
    const third = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'echo' } });
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe('budget_exhausted');
  });

  it('asks the upstream for no more completion tokens than a shrunk reservation holds', async () => {
    // 4 tokens free, "hi" counts 1: the chat is sent with max_tokens 3. A stated cap is left alone.
    const { key } = await limitedKey({ budget: { tokens: 4, period: 'day' } });
    const res = await chat(key, 'hi');
    expect(res.status).toBe(200);
    expect(res.body.usage.completion_tokens).toBe(3);
  });

  it('caches a shrunk chat as what it asked: a key with room left never gets its short answer from the cache', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 4, period: 'day' } });
    const headers = { 'x-gateway-cache-ttl': '60' };
    const shrunk = await api('/v1/chat/completions', { key, headers, body: { model: 'chat', messages: [{ role: 'user', content: 'hi' }] } });
    expect(shrunk.headers.get('x-gateway-cache')).toBe('MISS');
    expect(shrunk.body.usage.completion_tokens).toBe(3);
    const whole = await api('/v1/chat/completions', { key: otherKey, headers, body: { model: 'chat', messages: [{ role: 'user', content: 'hi' }] } });
    expect(whole.headers.get('x-gateway-cache')).toBe('MISS');
    expect(whole.body.usage.completion_tokens).not.toBe(3);
  });

  it('serves a token budget smaller than the default completion guess when the chat states no max_tokens', async () => {
    // The guess alone (256) exceeds the budget: the reservation shrinks to the 200 left.
    const { key } = await limitedKey({ budget: { tokens: 200, period: 'day' } });
    const res = await chat(key, 'hi');
    expect(res.status).toBe(200);
    expect(res.headers.get('ratelimit-limit')).toBe('200');
    expect(res.headers.get('ratelimit-remaining')).toBe('0');
    await eventually(async () => (await api('/v1/usage', { key })).body.budget.reservedTokens === 0);
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ tokens: 15, requests: 1 });
  });

  it('refuses a chat whose reservation does not fit the tokens left', async () => {
    const { key } = await limitedKey({ budget: { tokens: 100, period: 'day' } });
    const res = await chat(key, 'hi', { max_tokens: 500 });
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('budget_exhausted');
    expect(res.body.error.message).toBe('this request needs 501 tokens of the token budget of 100 per day; 100 are free (0 used, 0 reserved by requests in flight)');
    expect((await chat(key, 'hi', { max_tokens: 50 })).status).toBe(200);
  });
});

describe('rate windows', () => {
  it('answers 429 rate_limited with Retry-After past the per-minute limit, on any route', async () => {
    const { key } = await limitedKey({ perMinute: 5 });
    const results = [];
    for (let i = 0; i < 8; i++) results.push(await api('/v1/agents', { key }));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    expect(results[0]?.headers.get('ratelimit-limit')).toBe('5');
    expect(results[0]?.headers.get('ratelimit-remaining')).toBe('4');
    const refused = results[5];
    expect(refused?.body.error.code).toBe('rate_limited');
    expect(refused?.body.error.details).toMatchObject({ limit: 'perMinute' });
    expect(Number(refused?.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(Number(refused?.headers.get('retry-after'))).toBeLessThanOrEqual(60);
    expect(refused?.headers.get('ratelimit-remaining')).toBe('0');
  });

  it('recovers after the per-second window', async () => {
    const { key } = await limitedKey({ perSecond: 2 });
    const burst = await Promise.all(Array.from({ length: 6 }, () => api('/v1/agents', { key })));
    const refused = burst.filter((r) => r.status === 429);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]?.headers.get('retry-after')).toBe('1');
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await api('/v1/agents', { key })).status).toBe(200);
  });

  it('splits rate windows over shards for a hot key: each shard admits its share', async () => {
    // 4 shards of perMinute 8 allow 2 each: at most 8 in all, and some refused among 40.
    const { key } = await limitedKey({ perMinute: 8, shards: 4 });
    const results = await Promise.all(Array.from({ length: 40 }, () => api('/v1/agents', { key })));
    const ok = count(results.map((r) => r.status), 200);
    expect(ok).toBeGreaterThan(0);
    expect(ok).toBeLessThanOrEqual(8);
    expect(results.find((r) => r.status === 429)?.headers.get('ratelimit-limit')).toBe('2');
  });

  it('never admits more than the limit when there are more shards than the window allows', async () => {
    // Each shard admits at least one: 16 shards of perMinute 3 would admit up to 16 a minute.
    const { key } = await limitedKey({ perMinute: 3, shards: 16 });
    const results = await Promise.all(Array.from({ length: 40 }, () => api('/v1/agents', { key })));
    expect(count(results.map((r) => r.status), 200)).toBeLessThanOrEqual(3);
  });
});

describe('concurrency cap', () => {
  it('admits exactly N slow requests in flight and frees the slots when they finish', async () => {
    const { key } = await limitedKey({ concurrency: 2 }, 'delayMs=2500');
    const results = await Promise.all(Array.from({ length: 6 }, () => chat(key)));
    const statuses = results.map((r) => r.status);
    expect(count(statuses, 200)).toBe(2);
    expect(count(statuses, 429)).toBe(4);
    const refused = results.find((r) => r.status === 429);
    expect(refused?.body.error.code).toBe('rate_limited');
    expect(refused?.body.error.details).toMatchObject({ limit: 'concurrency' });
    expect(refused?.headers.get('retry-after')).toBe('1');
    await eventually(async () => (await api('/v1/usage', { key })).body.inFlight === 0);
    const again = await Promise.all([chat(key), chat(key)]);
    expect(again.map((r) => r.status)).toEqual([200, 200]);
  });

  it('frees the slot after an upstream failure', async () => {
    const { key } = await limitedKey({ concurrency: 1 }, 'failStatus=500');
    for (let i = 0; i < 3; i++) {
      const res = await chat(key);
      expect(res.status).toBe(502);
      await eventually(async () => (await api('/v1/usage', { key })).body.inFlight === 0);
    }
  });

  it("holds the slot of a stream until it ends, and settles with the usage the gateway asked the target for", async () => {
    const { key } = await limitedKey({ concurrency: 1, budget: { tokens: 1000, period: 'day' } }, 'chunkDelayMs=20');
    const streamed = await chat(key, 'hi', { stream: true, max_tokens: 10 });
    expect(streamed.status).toBe(200);
    expect(String(streamed.body)).toContain('[DONE]');
    await eventually(async () => (await api('/v1/usage', { key })).body.inFlight === 0);
    // Reserved 11 (max_tokens 10 and "hi"); the mock reports 15 in the usage chunk the client did not ask for.
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ tokens: 15, reservedTokens: 0 });
  });

  it('frees the slot when the client abandons a stream', async () => {
    const { key } = await limitedKey({ concurrency: 1 }, 'chunkDelayMs=300');
    const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'a long story please' }] }),
    });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    expect((await chat(key)).status).toBe(429);
    await reader.cancel();
    await eventually(async () => (await api('/v1/usage', { key })).body.inFlight === 0);
  });

  it('reports a key with only a concurrency cap in the RateLimit-* headers', async () => {
    const { key } = await limitedKey({ concurrency: 3 });
    const res = await chat(key);
    expect(res.status).toBe(200);
    expect(res.headers.get('ratelimit-limit')).toBe('3');
    expect(res.headers.get('ratelimit-remaining')).toBe('2');
  });

  it('does not hold slots for requests that call no upstream', async () => {
    const { key } = await limitedKey({ concurrency: 1 });
    const results = await Promise.all(Array.from({ length: 5 }, () => api('/v1/agents', { key })));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  });
});

describe('limits on keys (admin API)', () => {
  it('changes limits at once with PATCH (merge patch; null removes)', async () => {
    const { key, keyId } = await limitedKey({ perMinute: 1 });
    expect((await api('/v1/agents', { key })).status).toBe(200);
    expect((await api('/v1/agents', { key })).status).toBe(429);

    const raised = await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: { perMinute: 100, budget: { requests: 5, period: 'day' } } } });
    expect(raised.status).toBe(200);
    expect(raised.body.limits).toEqual({ perMinute: 100, budget: { requests: 5, period: 'day' } });
    expect((await api('/v1/agents', { key })).status).toBe(200);

    const merged = await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: { budget: { requests: 7 }, perSecond: 50 } } });
    expect(merged.body.limits).toEqual({ perMinute: 100, perSecond: 50, budget: { requests: 7, period: 'day' } });

    const removed = await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: null } });
    expect(removed.status).toBe(200);
    expect(removed.body.limits).toBeNull();
    const free = await api('/v1/agents', { key });
    expect(free.status).toBe(200);
    expect(free.headers.get('ratelimit-limit')).toBeNull();
  });

  it('shows limits when creating and listing keys', async () => {
    const { tenantId } = await limitedKey({ perSecond: 3, concurrency: 4, budget: { tokens: 1000, period: 'month' } });
    const listed = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN() });
    const limited = listed.body.data.find((k: { name: string | null }) => k.name === 'limited');
    expect(limited.limits).toEqual({ perSecond: 3, concurrency: 4, budget: { tokens: 1000, period: 'month' } });
    expect(listed.body.data.find((k: { name: string | null }) => k.name === null).limits).toBeNull();
  });

  it('refuses invalid limits with 400 and stores nothing', async () => {
    const { tenantId, keyId } = await limitedKey({ perMinute: 10 });
    const bad: unknown[] = [
      { perSecond: 0 },
      { perMinute: -1 },
      { concurrency: 1.5 },
      { budget: { requests: 10 } },
      { budget: { requests: 10, period: 'week' } },
      { budget: { period: 'day' } },
      { perHour: 10 },
      { shards: 17 },
      'many',
    ];
    for (const limits of bad) {
      const res = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { limits } });
      expect(res.status, JSON.stringify(limits)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    const patchBad = await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: { budget: { requests: 5 } } } });
    expect(patchBad.status).toBe(400);
    expect(patchBad.body.error.details[0].path).toEqual(['limits', 'budget', 'period']);
    expect((await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: { perMinute: 0 } } })).status).toBe(400);
    const listed = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN() });
    expect(listed.body.data.filter((k: { name: string | null }) => k.name === 'limited')[0].limits).toEqual({ perMinute: 10 });
  });

  it('404s PATCH of an unknown key and refuses it to tenant keys', async () => {
    expect((await api('/v1/admin/keys/key_nope', { method: 'PATCH', key: ADMIN(), body: { limits: null } })).status).toBe(404);
    const { key, keyId } = await newTenant();
    expect((await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key, body: { limits: null } })).status).toBe(401);
  });
});

describe("the limits of a hook's key", () => {
  const deliver = (hook: string, id: string) => {
    const body = JSON.stringify({ delivery: id });
    return post(hook, body, standardHeaders(id, body));
  };

  it("a PATCH of the key's limits reaches its hooks' deliveries at once", async () => {
    const { key, keyId, otherKey } = await limitedKey({ perMinute: 1_000 });
    const hook = await hookFor(key, await newAgent(otherKey), 'standard', STANDARD_SECRET);
    expect((await deliver(hook, 'msg_patch_1')).status).toBe(202); // the hook and its key's limits are cached now
    const patched = await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: { budget: { requests: 1, period: 'day' } } } });
    expect(patched.status).toBe(200);
    expect((await deliver(hook, 'msg_patch_2')).status).toBe(202);
    const refused = await deliver(hook, 'msg_patch_3');
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('budget_exhausted');
  });

  it('a hook registered before hooks recorded their key is attributed to the key its audit log names (migration 0011)', async () => {
    const { key, keyId, otherKey } = await limitedKey({ budget: { requests: 10, period: 'day' } });
    const hook = await hookFor(key, await newAgent(otherKey), 'standard', STANDARD_SECRET);
    await env.DB.prepare('UPDATE hooks SET key_id = NULL WHERE id = ?').bind(hook).run(); // as before migration 0008
    const backfill = env.TEST_MIGRATIONS.find((m) => m.name.startsWith('0011_'));
    expect(backfill?.name).toBe('0011_hooks_key_backfill.sql');
    for (const query of backfill!.queries) await env.DB.prepare(query).run();
    expect((await api(`/v1/hooks/${hook}`, { key })).body).toMatchObject({ keyId, keyRevoked: false });
    expect((await deliver(hook, 'msg_backfill_1')).status).toBe(202);
    expect((await api('/v1/usage', { key })).body.budget.requests).toBe(1);
  });
});

describe('keys without limits', () => {
  it('are not limited and carry no RateLimit headers', async () => {
    const { key } = await newTenant();
    const results = await Promise.all(Array.from({ length: 30 }, () => api('/v1/agents', { key })));
    expect(results.every((r) => r.status === 200 && r.headers.get('ratelimit-limit') === null)).toBe(true);
    expect((await api('/v1/usage', { key })).body).toEqual({ limits: null, inFlight: null, budget: null });
  });
});

describe('when the limiter fails', () => {
  /** Breaks the key's limiter: its SQLite tables are gone, so every lease or budget check throws. */
  async function breakLimiter(keyId: string) {
    const stub = env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(`key:${keyId}`));
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec('DROP TABLE leases');
      state.storage.sql.exec('DROP TABLE budget');
    });
  }

  it('fails open for a concurrency cap (availability first)', async () => {
    const { key, keyId } = await limitedKey({ concurrency: 1 });
    await breakLimiter(keyId);
    const res = await chat(key);
    expect(res.status).toBe(200);
    expect(res.headers.get('ratelimit-limit')).toBeNull();
  });

  it('fails closed for a budget: 503 unavailable with Retry-After, the upstream never called', async () => {
    const { key, keyId, otherKey, tag } = await limitedKey({ budget: { requests: 100, period: 'day' } });
    await breakLimiter(keyId);
    const res = await chat(key);
    expect(res.status).toBe(503);
    const counts = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json()) as Record<string, number>;
    expect(counts[tag]).toBeUndefined();
    expect(res.body.error.code).toBe('unavailable');
    expect(res.headers.get('retry-after')).toBe('1');
    // Requests that call no upstream are not budgeted, so they still pass.
    expect((await api('/v1/agents', { key })).status).toBe(200);
    expect((await chat(otherKey)).status).toBe(200);
  });
});
