import { createExecutionContext, env, SELF } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { KEY_STATUS_TTL_MS, revokedKeys } from '../worker/auth/key-status';
import { createApp } from '../worker/app';
import { sha256Hex } from '../worker/lib/hash';
import { watchKey } from '../worker/auth/key-watch';
import { limiter, limiterName } from '../worker/limits/limiter';
import { ADMIN, api, BASE, chatTarget, eventually, mockUrl, newAgent, newTenant, uniqueId } from './support/api';
import { frameReader, openSocket, openStream as openA2AStream, type Frame } from './support/sse';

/** An open SSE stream of an agent's events, read frame by frame. */
async function openStream(key: string, agentId: string) {
  const res = await SELF.fetch(`https://gateway.test/v1/agents/${agentId}/events`, { headers: { authorization: `Bearer ${key}` } });
  expect(res.status).toBe(200);
  return frameReader(res);
}

/** A tenant with an agent, a key that runs work, and a second key, made to watch, that is then revoked. */
async function setUp(limits?: Record<string, unknown>) {
  const { key, tenantId } = await newTenant();
  const agentId = await newAgent(key);
  const watcher = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'watcher', ...(limits && { limits }) } });
  expect(watcher.status).toBe(201);
  const run = async (intent: string): Promise<string> => {
    const res = await api(`/v1/agents/${agentId}/executions`, { key, body: { intent, input: 'hi' } });
    expect(res.status).toBe(200);
    return res.body.id as string;
  };
  const revoke = async () => expect((await api(`/v1/admin/keys/${watcher.body.id}`, { method: 'DELETE', key: ADMIN() })).status).toBe(204);
  return { key, agentId, watcherKey: watcher.body.key as string, watcherId: watcher.body.id as string, run, revoke };
}

const succeeded = (id: string) => (frames: Frame[]) => frames.some((f) => f.event === 'execution.succeeded' && f.data.data.id === id);

describe('an open event stream whose key is revoked', () => {
  it('SSE: ends with an unauthorized notice and carries none of the events after it; a valid key\'s stream goes on', async () => {
    const { key, agentId, watcherKey, run, revoke } = await setUp();
    const watched = await openStream(watcherKey, agentId);
    const other = await openStream(key, agentId);
    const first = await run('before');
    expect(succeeded(first)((await watched.until(succeeded(first))).frames)).toBe(true);

    await revoke();
    const second = await run('after');
    const { frames, ended } = await watched.until(() => false);
    expect(ended).toBe(true);
    expect(frames.at(-1)).toEqual({ event: 'unauthorized', data: { code: 'unauthorized', message: "this stream's API key was revoked" } });
    expect(frames.some((f) => f.data?.data?.id === second)).toBe(false);

    expect(succeeded(second)((await other.until(succeeded(second))).frames)).toBe(true);
    await other.cancel();
    // Its reconnect is refused.
    expect((await api(`/v1/agents/${agentId}/events`, { key: watcherKey })).status).toBe(401);
  });

  it('WebSocket: closes with 1008 and sends none of the events after it; a valid key\'s socket goes on', async () => {
    const { key, agentId, watcherKey, run, revoke } = await setUp();
    const watched = await openSocket(watcherKey, agentId);
    const other = await openSocket(key, agentId);
    const first = await run('before');
    const hasSucceeded = (messages: any[], id: string) => messages.some((m) => m.type === 'execution.succeeded' && m.data.id === id);
    for (let i = 0; i < 100 && !hasSucceeded(watched.messages, first); i++) await new Promise((r) => setTimeout(r, 50));
    expect(hasSucceeded(watched.messages, first)).toBe(true);

    await revoke();
    const second = await run('after');
    const closed = await Promise.race([watched.closed, new Promise<null>((r) => setTimeout(() => r(null), 5_000))]);
    expect(closed).toEqual({ code: 1008, reason: 'the API key was revoked' });
    expect(watched.messages.some((m) => m.data?.id === second)).toBe(false);

    for (let i = 0; i < 100 && !hasSucceeded(other.messages, second); i++) await new Promise((r) => setTimeout(r, 50));
    expect(hasSucceeded(other.messages, second)).toBe(true);
    other.socket.close(1000, 'done');
  });
});

/** A task's state as the valid key reads it (A2A 1.0). */
const taskState = async (key: string, agentId: string, id: string): Promise<string> =>
  (await api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 1, method: 'GetTask', params: { id } }, headers: { 'a2a-version': '1.0' } })).body.result.status.state;
const a2aMessage = (messageId: string) => ({ message: { messageId, role: 'ROLE_USER', parts: [{ text: 'take your time' }] } });
const REVOKED_RPC = { code: -32000, message: "unauthorized: this stream's API key was revoked" };

describe('a call streamed to a key that is then revoked', () => {
  it('A2A SendStreamingMessage: ends with a JSON-RPC error event, and the task still completes', async () => {
    const { key, agentId, watcherKey, revoke } = await setUp();
    await api(`/v1/agents/${agentId}`, { method: 'PATCH', key, body: { upstream: { kind: 'builtin', mode: 'a2a-conformance' } } });
    const stream = await openA2AStream(watcherKey, agentId, a2aMessage(`tck-long-running-${uniqueId()}`));
    const task = (await stream.next())?.data.result.task;
    expect(task.status.state).toBe('TASK_STATE_WORKING');

    await revoke();
    expect(await stream.next()).toEqual({ event: 'error', data: { jsonrpc: '2.0', id: 'st', error: REVOKED_RPC } });
    expect(await stream.next()).toBeNull();
    // The client was cut off, not the work: the turn runs to its end.
    expect(await eventually(async () => (await taskState(key, agentId, task.id)) === 'TASK_STATE_COMPLETED')).toBe(true);
  });

  it('A2A SubscribeToTask: ends with a JSON-RPC error event, and the task still completes', async () => {
    const { key, agentId, watcherKey, revoke } = await setUp();
    await api(`/v1/agents/${agentId}`, { method: 'PATCH', key, body: { upstream: { kind: 'builtin', mode: 'a2a-conformance' } } });
    const sent = await api(`/a2a/${agentId}/`, { key, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 2, method: 'SendMessage', params: { ...a2aMessage(`tck-long-running-${uniqueId()}`), configuration: { returnImmediately: true } } } });
    const taskId = sent.body.result.task.id as string;
    const stream = await openA2AStream(watcherKey, agentId, { id: taskId }, 'SubscribeToTask');
    expect((await stream.next())?.data.result.task.id).toBe(taskId);

    await revoke();
    expect(await stream.next()).toEqual({ event: 'error', data: { jsonrpc: '2.0', id: 'st', error: REVOKED_RPC } });
    expect(await stream.next()).toBeNull();
    expect(await eventually(async () => (await taskState(key, agentId, taskId)) === 'TASK_STATE_COMPLETED')).toBe(true);
  });

  it('MCP over SSE: the pending call is answered with a JSON-RPC error and the stream ends; the execution still succeeds', async () => {
    const { key, agentId, watcherKey, revoke } = await setUp();
    await api(`/v1/agents/${agentId}`, { method: 'PATCH', key, body: { upstream: { kind: 'agent-http', url: mockUrl('/agent') } } });
    const res = await SELF.fetch(`${BASE}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${watcherKey}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId, intent: 'slow', input: { mock: { delayMs: 1_500 } }, wait: true } } }),
    });
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const running = await eventually(async () => (await api(`/v1/agents/${agentId}/executions?status=running`, { key })).body.data[0]);

    await revoke();
    const frames = await frameReader(res).until(() => false);
    expect(frames.ended).toBe(true);
    expect(frames.frames).toEqual([{ event: 'message', data: { jsonrpc: '2.0', id: 7, error: REVOKED_RPC } }]);
    expect(await eventually(async () => (await api(`/v1/agents/${agentId}/executions/${running.id}`, { key })).body.status === 'succeeded')).toBe(true);
  });

  it('a pooled chat stream: ends with an OpenAI error chunk (no [DONE]) and its upstream call is aborted', async () => {
    const { key, watcherKey, revoke } = await setUp();
    const target = `revoked-${uniqueId()}`;
    expect((await api('/v1/pools/chat', { method: 'PUT', key, body: { targets: [chatTarget(target, 'record=1,chunkDelayMs=200')] } })).status).toBe(201);
    const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${watcherKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten' }] }),
    });
    expect(res.status).toBe(200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = decoder.decode((await reader.read()).value);

    await revoke();
    for (let next = await reader.read(); !next.done; next = await reader.read()) text += decoder.decode(next.value, { stream: true });
    const events = text.split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe(`data: ${JSON.stringify({ error: { message: "this stream's API key was revoked", type: 'invalid_request_error', code: 'unauthorized' } })}`);
    expect(text).not.toContain('[DONE]');
    expect(text).not.toContain('" ten"');
    const seen = await eventually(async () => {
      const { requests } = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=target:${target}`)).json()) as { requests: { aborted: boolean }[] };
      return requests[0]?.aborted && requests;
    });
    expect(seen).toHaveLength(1);
  });

  it("a streamed chat through an agent: a key revoked while the execution runs gets 401, and the execution still succeeds and counts", async () => {
    const budget = { requests: 10, period: 'day' } as const;
    const { key, agentId, watcherKey, watcherId, revoke } = await setUp({ budget });
    await api(`/v1/agents/${agentId}`, { method: 'PATCH', key, body: { upstream: { kind: 'agent-http', url: mockUrl('/agent?delayMs=1500') } } });
    const answer = api('/v1/chat/completions', { key: watcherKey, body: { model: `agent:${agentId}`, stream: true, messages: [{ role: 'user', content: 'hello' }] } });
    const running = await eventually(async () => (await api(`/v1/agents/${agentId}/executions?status=running`, { key })).body.data[0]);

    await revoke();
    const refused = await answer;
    expect(refused.status).toBe(401);
    expect(refused.body.error).toMatchObject({ code: 'unauthorized', message: "this request's API key was revoked while it ran", details: { executionId: running.id, keyRevoked: true } });
    expect(await eventually(async () => (await api(`/v1/agents/${agentId}/executions/${running.id}`, { key })).body.status === 'succeeded')).toBe(true);
    // Unlike other 401s, it ran: the key's budget keeps it.
    const usage = await eventually(async () => {
      const used = await limiter(env, limiterName(watcherId)).usage({ budget });
      return used.inFlight === null && used.budget?.reservedTokens === 0 && used.budget;
    });
    expect(usage.requests).toBe(1);
  });
});

describe('a call answered whole to a key revoked while it ran', () => {
  const budget = { requests: 10, period: 'day' } as const;
  const meta2026 = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };

  /**
   * Starts `call` with a key that has a budget on an agent whose upstream takes 1.5 s, revokes
   * the key while the execution runs, and returns the answer, the execution (which must still
   * succeed) and the requests the key's budget kept.
   */
  async function revokedWhileRunning(call: (watcherKey: string, agentId: string) => Promise<{ status: number; body: any }>) {
    const { key, agentId, watcherKey, watcherId, revoke } = await setUp({ budget });
    await api(`/v1/agents/${agentId}`, { method: 'PATCH', key, body: { upstream: { kind: 'agent-http', url: mockUrl('/agent?delayMs=1500') } } });
    const answer = call(watcherKey, agentId);
    const running = await eventually(async () => (await api(`/v1/agents/${agentId}/executions?status=running`, { key })).body.data[0]);
    await revoke();
    const refused = await answer;
    expect(await eventually(async () => (await api(`/v1/agents/${agentId}/executions/${running.id}`, { key })).body.status === 'succeeded')).toBe(true);
    const usage = await eventually(async () => {
      const used = await limiter(env, limiterName(watcherId)).usage({ budget });
      return used.inFlight === null && used.budget?.reservedTokens === 0 && used.budget;
    });
    return { refused, executionId: running.id as string, counted: usage.requests };
  }

  const revokedError = (details: Record<string, unknown>) => ({ code: 'unauthorized', message: "this request's API key was revoked while it ran", details: { ...details, keyRevoked: true } });

  it('a sync execution: 401 naming the execution (or the Idempotency-Key it was sent with); it runs on and counts', async () => {
    const plain = await revokedWhileRunning((watcherKey, agentId) => api(`/v1/agents/${agentId}/executions`, { key: watcherKey, body: { intent: 'slow' } }));
    expect(plain.refused.status).toBe(401);
    expect(plain.refused.body.error).toMatchObject(revokedError({ executionId: plain.executionId }));
    expect(plain.counted).toBe(1);

    const idempotencyKey = `revoked-${uniqueId()}`;
    const keyed = await revokedWhileRunning((watcherKey, agentId) => api(`/v1/agents/${agentId}/executions`, { key: watcherKey, headers: { 'idempotency-key': idempotencyKey }, body: { intent: 'slow' } }));
    expect(keyed.refused.status).toBe(401);
    expect(keyed.refused.body.error).toEqual(expect.objectContaining(revokedError({ idempotencyKey })));
    expect(keyed.counted).toBe(1);
  });

  it('a chat through an agent, not streamed: 401 naming the execution; it counts', async () => {
    const chat = await revokedWhileRunning((watcherKey, agentId) => api('/v1/chat/completions', { key: watcherKey, body: { model: `agent:${agentId}`, messages: [{ role: 'user', content: 'hello' }] } }));
    expect(chat.refused.status).toBe(401);
    expect(chat.refused.body.error).toMatchObject(revokedError({ executionId: chat.executionId }));
    expect(chat.counted).toBe(1);
  });

  it('an A2A blocking SendMessage: 401 as the request would get now; the turn runs on and counts', async () => {
    const sent = await revokedWhileRunning((watcherKey, agentId) => api(`/a2a/${agentId}/`, { key: watcherKey, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 3, method: 'SendMessage', params: a2aMessage(`revoked-${uniqueId()}`) } }));
    expect(sent.refused.status).toBe(401);
    expect(sent.refused.body.error).toMatchObject(revokedError({}));
    expect(sent.counted).toBe(1);
  });

  it('an MCP execute_intent answered as JSON (2026-07-28): 401; the execution runs on and counts', async () => {
    const called = await revokedWhileRunning((watcherKey, agentId) => api('/mcp', {
      key: watcherKey,
      headers: { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'execute_intent' },
      body: { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId, intent: 'slow', wait: true }, _meta: meta2026 } },
    }));
    expect(called.refused.status).toBe(401);
    expect(called.refused.body.error).toMatchObject(revokedError({}));
    expect(called.counted).toBe(1);
  });
});

describe('watching a key revoked in another isolate', () => {
  it('finds it revoked once its 30 s answer lapses, with one D1 read for every answer of that key', async () => {
    const { keyId } = await newTenant();
    let reads = 0;
    const counted = (db: Pick<D1Database, 'prepare'>) => ({ prepare: (query: string) => (reads++, db.prepare(query)) });
    const db = { ...counted(env.DB), withSession: () => counted(env.DB.withSession('first-primary')) } as unknown as D1Database;
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
    try {
      const watches = [watchKey(db, keyId), watchKey(db, keyId)];
      // Revoked where no stream of it runs: only D1 knows.
      await env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').bind(Date.now(), keyId).run();
      vi.advanceTimersByTime(KEY_STATUS_TTL_MS - 1_000);
      expect(reads).toBe(0);
      expect(watches.some((w) => w.knownRevoked())).toBe(false);

      vi.advanceTimersByTime(1_000);
      await Promise.race([watches[0]?.revoked, watches[1]?.revoked, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      vi.advanceTimersByTime(1_000);
      const found = await Promise.race([Promise.all(watches.map((w) => w.revoked)).then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 5_000))]);
      expect(found).toBe(true);
      expect(reads).toBe(1);
      for (const watch of watches) watch.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  // A stream's check that found the key revoked told only the streams: the isolate went on
  // admitting the key from its caches (up to 30 s here, 60 s more from KV), so the cut client's
  // reconnect was answered 200, and a new stream, cut again at its first check.
  it('refuses the key at once in the isolate that found it revoked, whatever its caches still hold', async () => {
    const { key, keyId } = await newTenant();
    const app = createApp();
    const asKey = () => app.request('/v1/agents', { headers: { authorization: `Bearer ${key}` } }, env, createExecutionContext());
    expect((await asKey()).status).toBe(200);
    expect(await env.CACHE.get(`apikey:v2:${await sha256Hex(key)}`)).not.toBeNull();
    // Revoked in another isolate: its caches (and KV) still hold the key as valid.
    await env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').bind(Date.now(), keyId).run();
    expect((await asKey()).status).toBe(200);
    // A stream's check here reads D1 and finds it revoked.
    expect(await revokedKeys(env.DB.withSession('first-primary'), [keyId])).toEqual(new Set([keyId]));
    const refused = await asKey();
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
  });

  it('is not kept valid by the requests admitted with the key meanwhile: each of them was admitted from caches', async () => {
    const { keyId } = await newTenant();
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
    try {
      const first = watchKey(env.DB, keyId);
      vi.advanceTimersByTime(20_000);
      // Revoked in another isolate; this one still admits the key from its caches for a while.
      await env.DB.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?').bind(Date.now(), keyId).run();
      const later = watchKey(env.DB, keyId);
      vi.advanceTimersByTime(KEY_STATUS_TTL_MS - 20_000);
      const within = (watch: { revoked: Promise<void> }) => Promise.race([watch.revoked.then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 5_000))]);
      expect(await within(first)).toBe(true);
      vi.advanceTimersByTime(1_000);
      expect(await within(later)).toBe(true);
      first.stop();
      later.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
