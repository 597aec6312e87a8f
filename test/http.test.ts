import { createExecutionContext, env, SELF } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { createApp } from '../worker/app';
import { ADMIN, api, BASE, newAgent, newTenant } from './support/api';


/**
 * The headers a route declares itself, not those middleware and the error handler put on answers,
 * which the document declares for every route: x-request-id, RateLimit-* and x-d1-bookmark on
 * every response (operator.test.ts checks those), x-should-retry on every 409 and 429.
 */
const MIDDLEWARE_HEADERS = new Set(['x-request-id', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'x-d1-bookmark', 'x-should-retry']);
const routeHeaders = (headers: Record<string, unknown> | undefined): string[] => Object.keys(headers ?? {}).filter((name) => !MIDDLEWARE_HEADERS.has(name)).sort();

describe('edge router', () => {
  it('answers /healthz without auth', async () => {
    const res = await api('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
  });

  it('puts a request id on every response and honours a valid incoming one', async () => {
    const fresh = await api('/healthz');
    expect(fresh.headers.get('x-request-id')).toMatch(/^[\w-]{8,}$/);
    const given = await api('/healthz', { headers: { 'x-request-id': 'client-req-42' } });
    expect(given.headers.get('x-request-id')).toBe('client-req-42');
    const invalid = await api('/healthz', { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(invalid.headers.get('x-request-id')).not.toBe('bad id with spaces');
  });

  it('puts the request id on the responses handlers build themselves: completions, streams, cache hits, events, WebSocket upgrades', async () => {
    const { key } = await newTenant();
    await api('/v1/pools/faq', { method: 'PUT', key, body: { targets: [{ id: 'local', kind: 'builtin' }], cache: { ttlSeconds: 60 } } });
    const agent = await newAgent(key);
    const send = (path: string, requestId: string, init: { body?: unknown; headers?: Record<string, string> } = {}) =>
      SELF.fetch(`${BASE}${path}`, {
        method: init.body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': requestId, ...init.headers },
        ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
      });
    const messages = [{ role: 'user', content: 'How do refunds work?' }];
    const completions = {
      plain: { model: 'faq', messages },
      stream: { model: 'faq', messages, stream: true },
      agent: { model: `agent:${agent}`, messages },
      'agent-stream': { model: `agent:${agent}`, messages, stream: true },
      'cache-miss': { model: 'faq', messages, temperature: 0 },
      'cache-hit': { model: 'faq', messages, temperature: 0 },
    };
    for (const [name, body] of Object.entries(completions)) {
      const res = await send('/v1/chat/completions', `rid-${name}`, { body });
      expect(res.status, name).toBe(200);
      expect(res.headers.get('x-request-id'), name).toBe(`rid-${name}`);
      expect(await res.text(), name).toMatch(/Refunds are issued/);
      if (name === 'cache-hit') expect(res.headers.get('x-gateway-cache')).toBe('HIT');
    }

    const events = await send(`/v1/agents/${agent}/events`, 'rid-events');
    expect(events.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(events.headers.get('x-request-id')).toBe('rid-events');
    await events.body?.cancel();

    // Immutable headers (the Durable Object's 101, a bookmark to hand back): the upgrade still works.
    const upgrade = await send(`/v1/agents/${agent}/events/ws?lastEventId=0`, 'rid-ws', { headers: { upgrade: 'websocket', 'x-d1-bookmark': '00000001-00000002-00004e5f-0123456789abcdef' } });
    expect(upgrade.status).toBe(101);
    expect(upgrade.headers.get('x-request-id')).toBe('rid-ws');
    const socket = upgrade.webSocket as WebSocket;
    const first = new Promise<string>((resolve) => socket.addEventListener('message', (m) => resolve(m.data as string), { once: true }));
    socket.accept();
    expect(JSON.parse(await first)).toMatchObject({ type: 'execution.queued' });
    socket.close();
  });

  it('renders errors in one envelope carrying the request id', async () => {
    const res = await api('/nope', { headers: { 'x-request-id': 'trace-1' } });
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: { code: 'not_found', message: expect.any(String), requestId: 'trace-1', type: 'not_found_error', param: null } });
  });

  it('says so when an unknown path differs from a route only by its trailing slash, and points / at the API', async () => {
    const { key } = await newTenant();
    const slash = await api('/v1/agents/', { key });
    expect(slash.status).toBe(404);
    expect(slash.body.error.message).toBe('no route for GET /v1/agents/: paths take no trailing slash (/v1/agents)');
    const plain = await api('/v1/nothing', { key });
    expect(plain.body.error.message).toBe('no route for GET /v1/nothing');
    const root = await api('/');
    expect(root.status).toBe(404);
    expect(root.body.error.message).toBe('no route for GET /: the API is under /v1; its reference is at /docs, its OpenAPI document at /openapi.json, the dashboard at /dashboard');
    // Where / points a user with a key: /v1 is no route itself, and /v1/ must not send them back to it.
    for (const path of ['/v1', '/v1/']) {
      const v1 = await api(path, { key });
      expect(v1.status).toBe(404);
      expect(v1.body.error.message).toBe(`no route for GET ${path}: the API's routes are below /v1 (GET /v1/agents lists your agents); its reference is at /docs, its OpenAPI document at /openapi.json`);
    }
  });

  it('points a caller without a key at the routes from /v1 too, where / sends a browser (it answered 401)', async () => {
    for (const path of ['/v1', '/v1/']) {
      const v1 = await api(path);
      expect(v1.status).toBe(404);
      expect(v1.body.error.message).toBe(`no route for GET ${path}: the API's routes are below /v1 (GET /v1/agents lists your agents); its reference is at /docs, its OpenAPI document at /openapi.json`);
    }
    // Only /v1 itself: every path below it still needs a key before it is told anything.
    expect((await api('/v1/nothing')).status).toBe(401);
    expect((await api('/v1/agents')).status).toBe(401);
  });

  it('bounds how much of an unknown path its 404 repeats, and says it was cut', async () => {
    const { key } = await newTenant();
    const long = `/v1/${'a'.repeat(5000)}`;
    const res = await api(long, { key });
    expect(res.status).toBe(404);
    const message: string = res.body.error.message;
    expect(message.startsWith(`no route for GET ${long.slice(0, 200)}`)).toBe(true);
    expect(message).toContain(`[cut: ${long.length - 200} more characters]`);
    expect(message.length).toBeLessThan(400);
    // The trailing-slash hint repeats the path too: it is bounded the same way.
    const slash = await api(`${long}/`, { key });
    expect(slash.status).toBe(404);
    expect(slash.body.error.message.length).toBeLessThan(800);
    expect(slash.body.error.message).toContain('paths take no trailing slash');
    // A path at the bound is shown whole.
    const edge = `/v1/${'b'.repeat(196)}`;
    expect((await api(edge, { key })).body.error.message).toBe(`no route for GET ${edge}`);
  });

  it('answers 405 with Allow for a known path and an unknown method', async () => {
    const res = await api('/healthz', { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.body.error.code).toBe('method_not_allowed');
    expect(res.headers.get('allow')).toContain('GET');
  });

  it('requires a bearer key on /v1 routes', async () => {
    const missing = await api('/v1/agents');
    expect(missing.status).toBe(401);
    expect(missing.body.error.code).toBe('unauthorized');
    const wrong = await api('/v1/agents', { key: 'eag_not-a-real-key' });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.message).toBe('invalid or revoked API key');
    // The operator token (or anything else without the key prefix) is named for what it is not.
    const admin = await api('/v1/agents', { key: env.ADMIN_TOKEN });
    expect(admin.status).toBe(401);
    expect(admin.body.error.message).toBe('not an API key: API keys start with eag_ (the operator token ADMIN_TOKEN is for /v1/admin routes only)');
  });

  it('rejects bodies over 1 MiB with 413', async () => {
    const { key } = await newTenant();
    const res = await api('/v1/agents', { key, rawBody: JSON.stringify({ name: 'x'.repeat(1024 * 1024 + 10) }), headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
  });

  it('counts a body without a length as it arrives: whole under 1 MiB, 413 over it after reading it through', async () => {
    const { key } = await newTenant();
    /** A chunked body of `total` bytes of one JSON document, and how much of it was read. */
    const streamed = (field: 'name' | 'instructions', total: number, chunkSize: number) => {
      const text = new TextEncoder().encode(JSON.stringify({ [field]: 'x'.repeat(total - field.length - 7) }));
      let sent = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (sent >= text.byteLength) return controller.close();
          const chunk = text.subarray(sent, sent + chunkSize);
          sent += chunk.byteLength;
          controller.enqueue(chunk);
        },
      });
      return { body, sent: () => sent, size: text.byteLength };
    };
    const post = (body: ReadableStream<Uint8Array>) =>
      SELF.fetch('https://gateway.test/v1/agents', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });

    const small = streamed('name', 200, 16);
    const created = await post(small.body);
    expect(created.status).toBe(201);
    expect(((await created.json()) as { name: string }).name).toBe('x'.repeat(189));

    // Read to its end (within a bound), so the client's connection stays usable afterwards.
    const big = streamed('instructions', 3 * 1024 * 1024, 64 * 1024);
    const refused = await post(big.body);
    expect(refused.status).toBe(413);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('payload_too_large');
    expect(big.sent()).toBe(big.size);
  });

  it('answers a GET that carries a body as one without it: a chunked one was a 500', async () => {
    // An HTTP client can send one (curl -X GET -H 'transfer-encoding: chunked' --data …), which
    // the runtime hands over as it came, but fetch cannot build one here: a POST with a streamed
    // body that calls itself a GET stands for it.
    const { key } = await newTenant();
    const app = createApp();
    const getWithBody = (path: string): Request => {
      const post = new Request(`${BASE}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: new Blob(['{"a":1}']).stream() });
      return new Proxy(post, {
        get(target, name) {
          if (name === 'method') return 'GET';
          const value: unknown = Reflect.get(target, name, target);
          return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
    };
    for (const path of ['/healthz', '/v1/agents']) {
      const res = await app.fetch(getWithBody(path), env, createExecutionContext());
      expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
    }
  });

  it('rejects non-JSON bodies with 415 and malformed JSON with 400', async () => {
    const { key } = await newTenant();
    const text = await api('/v1/agents', { key, rawBody: 'hello', headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
    expect(text.body.error.code).toBe('unsupported_media_type');
    // The first mistake with curl: `-d` without `-H 'content-type: application/json'` sends
    // application/x-www-form-urlencoded. The message says what to send and what came.
    expect(text.body.error.message).toBe('the request body must be JSON, sent with "Content-Type: application/json"; this one came as "text/plain"');
    const form = await api('/v1/agents', { key, rawBody: '{"id":"x"}', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(form.status).toBe(415);
    expect(form.body.error.message).toContain('"application/x-www-form-urlencoded"');
    const none = await api('/v1/agents', { key, rawBody: new TextEncoder().encode('{"id":"x"}') });
    expect(none.status).toBe(415);
    expect(none.body.error.message).toBe('the request body must be JSON, sent with "Content-Type: application/json"; this one came without a Content-Type');
    const broken = await api('/v1/agents', { key, rawBody: '{"id": ', headers: { 'content-type': 'application/json' } });
    expect(broken.status).toBe(400);
    expect(broken.body.error.code).toBe('invalid_request');
  });

  it('reports zod issues in details', async () => {
    const { key } = await newTenant();
    const res = await api('/v1/agents', { key, body: { id: 'not valid!', concurrency: 99 } });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    const paths = res.body.error.details.map((d: { path: string[] }) => d.path.join('.'));
    expect(paths).toEqual(expect.arrayContaining(['id', 'concurrency']));
    // What OpenAI's clients read (APIError.type, .param): the first issue's path.
    expect(res.body.error.type).toBe('invalid_request_error');
    expect(res.body.error.param).toBe(paths[0]);
  });

  it('serves the OpenAPI 3.1 document', async () => {
    const res = await api('/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    expect(Object.keys(res.body.paths)).toEqual(expect.arrayContaining(['/v1/agents', '/v1/agents/{id}/executions', '/healthz']));
  });

  it('documents the headers a route declares, and validates them whatever their case', async () => {
    const doc = (await api('/openapi.json')).body;
    const headerNames = (operation: { parameters?: { in: string; name: string }[] }) => (operation.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
    expect(headerNames(doc.paths['/v1/chat/completions'].post)).toEqual(expect.arrayContaining(['x-agent-id', 'x-gateway-cache-ttl']));
    expect(headerNames(doc.paths['/v1/agents/{id}/executions'].post)).toEqual(['idempotency-key']);
    expect(headerNames(doc.paths['/v1/agents/{id}/events'].get)).toEqual(['last-event-id']);

    const { key } = await newTenant();
    const chat = { model: 'nowhere', messages: [{ role: 'user', content: 'hi' }] };
    const badTtl = await api('/v1/chat/completions', { key, headers: { 'X-Gateway-Cache-TTL': 'soon' }, body: chat });
    expect(badTtl.status).toBe(400);
    expect(badTtl.body.error.code).toBe('invalid_request');
    expect(badTtl.body.error.details.map((d: { path: string[] }) => d.path)).toEqual([['x-gateway-cache-ttl']]);
    // A valid header reaches the handler parsed: here, the agent that answers the chat.
    const agent = await newAgent(key);
    const viaAgent = await api('/v1/chat/completions', { key, headers: { 'X-Agent-Id': agent }, body: chat });
    expect(viaAgent.status).toBe(200);
    expect(viaAgent.body.model).toBe(`agent:${agent}`);
    const badKey = await api(`/v1/agents/${agent}/executions`, { key, headers: { 'Idempotency-Key': 'x'.repeat(300) }, body: { intent: 'x' } });
    expect(badKey.status).toBe(400);
    expect(badKey.body.error.details[0].path).toEqual(['idempotency-key']);
  });

  it('documents the response headers it sends: Location and Idempotent-Replayed on executions and transactions, ETag on the context', async () => {
    const doc = (await api('/openapi.json')).body;
    const declared = (path: string, method: string, status: string) => routeHeaders(doc.paths[path][method].responses[status].headers);
    for (const status of ['200', '202']) expect(declared('/v1/agents/{id}/executions', 'post', status)).toEqual(['idempotent-replayed', 'location']);
    for (const status of ['200', '409']) expect(declared('/v1/transactions', 'post', status)).toEqual(['idempotent-replayed', 'location']);
    expect(declared('/v1/agents/{id}/context', 'get', '200')).toEqual(['etag']);
    expect(declared('/v1/agents/{id}/context', 'patch', '200')).toEqual(['etag']);

    // And the server sends what the document says.
    const { key } = await newTenant();
    const agent = await newAgent(key);
    const headers = { 'Idempotency-Key': `doc-${agent}` };
    await api(`/v1/agents/${agent}/executions`, { key, headers, body: { intent: 'x', mode: 'async' } });
    const replay = await api(`/v1/agents/${agent}/executions`, { key, headers, body: { intent: 'x', mode: 'async' } });
    expect(replay.status).toBe(202);
    expect(replay.headers.get('location')).toBe(`/v1/agents/${agent}/executions/${replay.body.id}`);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    const tx = await api('/v1/transactions', { key, body: { operations: [{ agentId: agent, patch: { a: 1 } }] } });
    expect(tx.headers.get('location')).toBe(`/v1/transactions/${tx.body.id}`);
    const context = await api(`/v1/agents/${agent}/context`, { key });
    expect(context.headers.get('etag')).toBe(`"${context.body.version}"`);
  });

  it("documents the gateway's response headers of chat completions", async () => {
    const doc = (await api('/openapi.json')).body;
    const { responses } = doc.paths['/v1/chat/completions'].post;
    expect(routeHeaders(responses['200'].headers)).toEqual(['age', 'cf-cache-status', 'idempotent-replayed', 'x-gateway-attempts', 'x-gateway-cache', 'x-gateway-execution', 'x-gateway-upstream']);
    expect(responses['200'].headers['x-gateway-cache'].schema.enum).toEqual(['HIT', 'MISS', 'BYPASS']);
    expect(responses['200'].headers['x-gateway-attempts'].required).toBe(true);
    for (const status of ['502', '504']) expect(Object.keys(responses[status].headers)).toEqual(expect.arrayContaining(['x-gateway-upstream', 'x-gateway-attempts']));
  });

  it('logs a request answered in over a second as a warning with slow: true, even when only warnings are logged', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const app = createApp();
    const lines: Record<string, unknown>[] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((line: unknown) => {
      if (typeof line === 'string' && line.includes('"msg":"request"')) lines.push(JSON.parse(line) as Record<string, unknown>);
    });
    try {
      const run = (input: unknown) => app.request(`/v1/agents/${id}/executions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ intent: 'x', input }),
      }, { ...env, LOG_LEVEL: 'warn' });
      expect((await run({ message: 'hi' })).status).toBe(200);
      expect((await run({ message: 'hi', simulateLatencyMs: 1_100 })).status).toBe(200);
    } finally {
      spy.mockRestore();
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', status: 200, slow: true, path: `/v1/agents/${id}/executions` });
    expect(lines[0]?.latencyMs).toBeGreaterThanOrEqual(1_000);
  });
});

describe('query parameters', () => {
  it('says a repeated query parameter was given more than once, on every list route: 400 invalid_request at that param, not "received NaN"', async () => {
    const { key, tenantId } = await newTenant();
    const agent = await newAgent(key);
    const tenantLists = ['/v1/agents', `/v1/agents/${agent}/executions`, `/v1/agents/${agent}/deliveries`, '/v1/pools', '/v1/hooks', '/v1/audit'];
    const adminLists = ['/v1/admin/tenants', `/v1/admin/tenants/${tenantId}/keys`, `/v1/admin/tenants/${tenantId}/hooks`, '/v1/admin/audit'];
    for (const [path, auth] of [...tenantLists.map((p) => [p, key]), ...adminLists.map((p) => [p, ADMIN()])] as const) {
      for (const [query, param] of [['limit=5&limit=6', 'limit'], ['limit=5&limit=5', 'limit'], ['cursor=a&cursor=b', 'cursor']] as const) {
        const res = await api(`${path}?${query}`, { key: auth });
        expect(res.status, `${path}?${query}`).toBe(400);
        expect(res.body.error, `${path}?${query}`).toMatchObject({ code: 'invalid_request', param });
        expect(res.body.error.message, `${path}?${query}`).toContain(`${param}: given more than once`);
      }
    }
  });
});
