import { env, SELF } from 'cloudflare:test';
import { beforeAll, describe, expect, it } from 'vitest';
import { ERROR_STATUS } from '../worker/errors';
import { sealSecret } from '../worker/pools/secrets';
import { ADMIN, BASE, api, chatTarget, newAgent, newTenant, type ApiResponse } from './support/api';
import { STANDARD_SECRET, post, standardHeaders } from './support/hooks';
import { accepts, type Schema } from './support/json-schema';
import { buildWorld, fillPath, paramFor } from './support/world';

/**
 * The document against what the Worker answers, from outside: for each request, the status is
 * one the operation declares, every header the answer carries is declared on that status (save
 * the transport's own), the headers it marks required are there, and an error the document
 * says is the envelope is one, with a code of worker/errors.ts and that code's status.
 */

interface Header {
  required?: boolean;
  $ref?: string;
}
interface Operation {
  responses: Record<string, { headers?: Record<string, Header>; content?: Record<string, { schema?: { $ref?: string } }> }>;
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components: { headers: Record<string, Header> };
}

/** Headers of HTTP itself or of the runtime, which no operation documents. */
const TRANSPORT = new Set(['content-type', 'content-length', 'date', 'connection', 'transfer-encoding', 'vary', 'cache-control', 'content-encoding']);

let doc: Document;
beforeAll(async () => {
  doc = (await api<Document>('/openapi.json')).body;
});

/** What is wrong with `res` as an answer of `method template`, by the document (empty: nothing). */
function mismatches(method: string, template: string, res: ApiResponse): string[] {
  const operation = doc.paths[template]?.[method.toLowerCase()];
  if (!operation) return [`${method} ${template} is not in the document`];
  const declared = operation.responses[String(res.status)];
  if (!declared) return [`${res.status} is not declared (${Object.keys(operation.responses).join(', ')})`];
  const problems: string[] = [];
  const headers = new Map(Object.entries(declared.headers ?? {}).map(([name, header]) => [name.toLowerCase(), header]));
  for (const [name] of res.headers) {
    if (!TRANSPORT.has(name) && !headers.has(name)) problems.push(`${res.status} sends ${name}, not declared`);
  }
  for (const [name, header] of headers) {
    const resolved = header.$ref ? doc.components.headers[header.$ref.split('/').pop() ?? ''] : header;
    if (resolved?.required && !res.headers.has(name)) problems.push(`${res.status} lacks ${name}, declared required`);
  }
  // Where the document promises the envelope (not a JSON-RPC error, nor a target's own body).
  if (declared.content?.['application/json']?.schema?.$ref === '#/components/schemas/Error') {
    const code = (res.body as { error?: { code?: string } } | null)?.error?.code;
    if (!code || !(code in ERROR_STATUS)) problems.push(`${res.status} has no envelope with a known code: ${JSON.stringify(res.body)}`);
    else if (ERROR_STATUS[code as keyof typeof ERROR_STATUS] !== res.status) problems.push(`${code} answered with ${res.status}`);
  }
  return problems;
}

const expectContract = (method: string, template: string, res: ApiResponse, status: number) => {
  expect(res.status, `${method} ${template}`).toBe(status);
  expect(mismatches(method, template, res), `${method} ${template}`).toEqual([]);
};

describe('the OpenAPI document against the answers', () => {
  it('declares the Location of a created agent', async () => {
    const { key } = await newTenant();
    const created = await api('/v1/agents', { key, body: { name: 'contract' } });
    expectContract('POST', '/v1/agents', created, 201);
    expect(created.headers.get('location')).toBe(`/v1/agents/${created.body.id}`);
  });

  it('declares WWW-Authenticate on the 401 of a missing or refused key or token', async () => {
    const { key } = await newTenant();
    const agent = await newAgent(key);
    const refused: [string, string, string, Record<string, string>][] = [
      ['GET', '/v1/agents', '/v1/agents', {}],
      ['GET', '/v1/agents/{id}', `/v1/agents/${agent}`, { authorization: 'Bearer eag_not_a_key' }],
      ['POST', '/v1/admin/tenants', '/v1/admin/tenants', { authorization: 'Bearer not-the-token' }],
      ['POST', '/mcp', '/mcp', { accept: 'application/json, text/event-stream' }],
      ['POST', '/a2a/{id}/', `/a2a/${agent}/`, {}],
      ['GET', '/a2a/{id}/.well-known/agent-card.json', `/a2a/${agent}/.well-known/agent-card.json`, {}],
    ];
    for (const [method, template, path, headers] of refused) {
      const body = method === 'POST' ? { jsonrpc: '2.0', id: 1, method: 'tools/list' } : undefined;
      const res = await api(path, { method, headers, body });
      expectContract(method, template, res, 401);
      expect(res.headers.get('www-authenticate'), `${method} ${template}`).toBe('Bearer');
    }
  });

  it("declares an agent card's ETag and Cache-Control, on the 200 and the 304", async () => {
    const { key } = await newTenant();
    const agent = await newAgent(key, { a2a: { publicCard: true } });
    const card = await api(`/a2a/${agent}/.well-known/agent-card.json`);
    expectContract('GET', '/a2a/{id}/.well-known/agent-card.json', card, 200);
    const etag = card.headers.get('etag') ?? '';
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    const again = await api(`/a2a/${agent}/.well-known/agent-card.json`, { headers: { 'if-none-match': etag } });
    expectContract('GET', '/a2a/{id}/.well-known/agent-card.json', again, 304);
    expect(again.headers.get('etag')).toBe(etag);
    for (const status of ['200', '304']) {
      const headers = Object.keys(doc.paths['/a2a/{id}/.well-known/agent-card.json']?.get?.responses[status]?.headers ?? {});
      expect(headers, status).toEqual(expect.arrayContaining(['ETag', 'Cache-Control']));
    }
  });

  it('declares x-d1-bookmark on /mcp, which runs in a D1 session as /v1 does', async () => {
    // A key's lookup reads D1's primary outside the session: the session hands back the bookmark it was sent.
    const bookmark = (await api('/v1/admin/tenants', { key: ADMIN() })).headers.get('x-d1-bookmark') ?? '';
    expect(bookmark).toMatch(/\S/);
    const res = await api('/mcp', { headers: { authorization: 'Bearer eag_not_a_key', accept: 'application/json, text/event-stream', 'x-d1-bookmark': bookmark }, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } });
    expectContract('POST', '/mcp', res, 401);
    expect(res.headers.get('x-d1-bookmark')).toBe(bookmark);
    const parameters = (doc.paths['/mcp']?.post as { parameters?: { $ref?: string }[] }).parameters ?? [];
    expect(parameters.map((p) => p.$ref)).toContain('#/components/parameters/x-d1-bookmark');
  });

  it('declares Retry-After on every 503, as every 503 of the API carries it', () => {
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const unavailable = operation.responses['503'];
        if (unavailable) expect(Object.keys(unavailable.headers ?? {}), `${method} ${path}`).toContain('Retry-After');
      }
    }
  });

  it('documents the null that removes an agent’s A2A settings, which the API accepts', async () => {
    const update = (doc as unknown as { components: { schemas: Record<string, { properties: Record<string, { anyOf?: unknown[] }> }> } }).components.schemas.UpdateAgent;
    expect(update?.properties.a2a?.anyOf).toEqual(expect.arrayContaining([{ $ref: '#/components/schemas/A2AConfig' }, { type: 'null' }]));

    const { key } = await newTenant();
    const agent = await newAgent(key, { a2a: { publicCard: true, description: 'shop questions' } });
    const patched = await api(`/v1/agents/${agent}`, { method: 'PATCH', key, body: { a2a: null } });
    expectContract('PATCH', '/v1/agents/{id}', patched, 200);
    expect(patched.body.a2a).toBeUndefined();
    expect((await api(`/a2a/${agent}/.well-known/agent-card.json`)).status).toBe(401);
  });

  it('declares Location on a sync execution that ended badly, as on one that succeeded', async () => {
    const { key } = await newTenant();
    const agent = await newAgent(key);
    const slow = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'x', input: { message: 'hi', simulateLatencyMs: 2_000 }, timeoutMs: 100 } });
    expectContract('POST', '/v1/agents/{id}/executions', slow, 504);
    expect(slow.headers.get('location')).toBe(`/v1/agents/${agent}/executions/${slow.body.error.details.executionId}`);
  });

  it('declares the Retry-After of a 502 whose every attempt was asked to wait', async () => {
    const { key } = await newTenant();
    const tag = `ra${Date.now()}`;
    expect((await api('/v1/pools/busy', { method: 'PUT', key, body: { retry: { attempts: 1 }, targets: [chatTarget(tag, 'status=429,retryAfter=3')] } })).status).toBe(201);
    const res = await api('/v1/chat/completions', { key, body: { model: 'busy', messages: [{ role: 'user', content: 'x' }] } });
    expectContract('POST', '/v1/chat/completions', res, 502);
    expect(res.headers.get('retry-after')).toBe('3');
  });

  it("declares a target's own 4xx where the gateway declares the same status: its body and x-gateway-upstream", async () => {
    const { key } = await newTenant();
    const tag = `c${Date.now()}`;
    expect((await api('/v1/pools/creds', { method: 'PUT', key, body: { targets: [chatTarget(tag, 'status=401')] } })).status).toBe(201);
    const res = await api('/v1/chat/completions', { key, body: { model: 'creds', messages: [{ role: 'user', content: 'x' }] } });
    expectContract('POST', '/v1/chat/completions', res, 401);
    expect(res.headers.get('x-gateway-upstream')).toBe(`creds/${tag}`);
    const schema = (doc.paths['/v1/chat/completions']?.post?.responses['401']?.content?.['application/json']?.schema ?? {}) as { anyOf?: { $ref?: string }[] };
    expect(schema.anyOf?.map((s) => s.$ref)).toEqual(['#/components/schemas/Error', undefined]);
    // The gateway's own 401 is still the envelope.
    expectContract('POST', '/v1/chat/completions', await api('/v1/chat/completions', { key: 'eag_wrong', body: { model: 'creds', messages: [] } }), 401);
  });

  it("documents a key's limits as refused when null at creation and answered null when absent", async () => {
    const schemas = (doc as unknown as { components: { schemas: Record<string, { type?: unknown; properties?: Record<string, { anyOf?: unknown[]; $ref?: string }> }> } }).components.schemas;
    expect(schemas.KeyLimits?.type).toBe('object');
    expect(schemas.CreateKey?.properties?.limits).toEqual({ $ref: '#/components/schemas/KeyLimits' });
    for (const name of ['KeySummary', 'CreatedKey', 'KeyUsage']) {
      expect(schemas[name]?.properties?.limits?.anyOf, name).toEqual([{ $ref: '#/components/schemas/KeyLimits' }, { type: 'null' }]);
    }

    const tenant = await api('/v1/admin/tenants', { key: ADMIN(), body: { name: 'contract' } });
    const refused = await api(`/v1/admin/tenants/${tenant.body.id}/keys`, { key: ADMIN(), body: { limits: null } });
    expectContract('POST', '/v1/admin/tenants/{tenant}/keys', refused, 400);
    const created = await api(`/v1/admin/tenants/${tenant.body.id}/keys`, { key: ADMIN(), body: {} });
    expectContract('POST', '/v1/admin/tenants/{tenant}/keys', created, 201);
    expect(created.body.limits).toBeNull();
  });

  it("says which members a pool target's kind needs, which the API checks", async () => {
    const item = (doc as unknown as { components: { schemas: { PutPool: { properties: { targets: { items: { description?: string } } } } } } }).components.schemas.PutPool.properties.targets.items;
    expect(item.description).toMatch(/"openai-chat" needs baseUrl and model.*"agent-http" needs url/);
    const { key } = await newTenant();
    const refused = await api('/v1/pools/p', { method: 'PUT', key, body: { targets: [{ id: 't', kind: 'openai-chat', model: 'm' }] } });
    expectContract('PUT', '/v1/pools/{name}', refused, 400);
    expect(refused.body.error.details[0].path).toEqual(['targets', '0', 'baseUrl']);
  });

  it('declares the pool list a page: limit and cursor, and nextCursor beside data', async () => {
    type Parameter = { name: string; in: string; schema?: { minimum?: number; maximum?: number; default?: number } };
    type ListOperation = { parameters?: Parameter[]; responses: Record<string, { content: Record<string, { schema: { properties?: Record<string, unknown>; required?: string[] } }> }> };
    const operation = (doc as unknown as { paths: Record<string, { get: ListOperation }> }).paths['/v1/pools']?.get;
    const query = (operation?.parameters ?? []).filter((p) => p.in === 'query');
    expect(query.map((p) => p.name).sort()).toEqual(['cursor', 'limit']);
    expect(query.find((p) => p.name === 'limit')?.schema).toMatchObject({ minimum: 1, maximum: 500, default: 500 });
    const schema = operation?.responses['200']?.content['application/json']?.schema;
    expect(Object.keys(schema?.properties ?? {}).sort()).toEqual(['data', 'nextCursor']);
  });

  it("bounds a transaction operation's increment and min to 1-32 keys, as the API does", async () => {
    type Item = { description?: string; properties: Record<string, { minProperties?: number; maxProperties?: number }> };
    const item = (doc as unknown as { components: { schemas: { CreateTransaction: { properties: { operations: { items: Item } } } } } }).components.schemas.CreateTransaction.properties.operations.items;
    for (const member of ['increment', 'min']) expect(item.properties[member], member).toMatchObject({ minProperties: 1, maxProperties: 32 });
    expect(item.description).toMatch(/a patch, an increment, or both; one operation per agent/);
    const { key } = await newTenant();
    const agent = await newAgent(key);
    const refused = await api('/v1/transactions', { key, body: { operations: [{ agentId: agent, increment: {} }] } });
    expectContract('POST', '/v1/transactions', refused, 400);
  });

  it("declares the headers a cached completion comes back with from the runtime's cache", async () => {
    const { key } = await newTenant();
    expect((await api('/v1/pools/cached', { method: 'PUT', key, body: { targets: [{ id: 'faq', kind: 'builtin' }] } })).status).toBe(201);
    const ask = () => api('/v1/chat/completions', { key, headers: { 'x-gateway-cache-ttl': '60' }, body: { model: 'cached', messages: [{ role: 'user', content: 'How do refunds work?' }] } });
    expectContract('POST', '/v1/chat/completions', await ask(), 200);
    const hit = await ask();
    expectContract('POST', '/v1/chat/completions', hit, 200);
    expect(hit.headers.get('x-gateway-cache')).toBe('HIT');
  });

  // A hook whose secret UPSTREAM_ENCRYPTION_KEY cannot open is a 500 naming it (hooks.test.ts);
  // the operation declared every other status but that one.
  it("declares the 500 of a delivery to a hook whose secret the gateway's key cannot open", async () => {
    const { key, tenantId, keyId } = await newTenant();
    const agentId = await newAgent(key);
    const id = `hook-contract-${crypto.randomUUID().slice(0, 8)}`;
    // Not the test key (vitest.config.mts: 32 bytes of 7).
    const otherKey = btoa(String.fromCharCode(...new Uint8Array(32).fill(9)));
    await env.DB.prepare('INSERT INTO hooks (id, tenant_id, agent_id, intent, scheme, secret, created_at, updated_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .bind(id, tenantId, agentId, 'on.standard', 'standard', await sealSecret(otherKey, STANDARD_SECRET, `hook/${id}`), Date.now(), Date.now(), keyId)
      .run();
    const body = JSON.stringify({ type: 'x' });
    const res = await post(id, body, standardHeaders('m-contract', body));
    const answer = { status: res.status, headers: res.headers, body: await res.json() };
    expectContract('POST', '/v1/hooks/{id}', answer, 500);
  });

  // The error handler answers any fault it does not recognise 500 internal_error, on every
  // route past the app's middleware (authentication included): /mcp, /a2a and an incoming hook
  // used to leave it out of their documents, so a generated client had no type for it.
  it('declares the 500 internal_error on every operation a route handler answers', () => {
    // Nothing there can fault: the health check reads nothing, middleware answers the preflight from its headers.
    const middlewareOnly = new Set(['get /healthz', 'options /mcp']);
    const missing: string[] = [];
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        if (middlewareOnly.has(`${method} ${path}`)) continue;
        const declared = operation.responses['500']?.content?.['application/json']?.schema?.$ref;
        if (declared !== '#/components/schemas/Error') missing.push(`${method} ${path}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("declares the 409 conflict of a revoked key's PATCH, with its details", async () => {
    const tenant = await api('/v1/admin/tenants', { key: ADMIN(), body: { name: 'contract' } });
    const created = await api(`/v1/admin/tenants/${tenant.body.id}/keys`, { key: ADMIN(), body: {} });
    expect((await api(`/v1/admin/keys/${created.body.id}`, { method: 'DELETE', key: ADMIN() })).status).toBe(204);
    const res = await api(`/v1/admin/keys/${created.body.id}`, { method: 'PATCH', key: ADMIN(), body: { name: 'renamed' } });
    expectContract('PATCH', '/v1/admin/keys/{keyId}', res, 409);
    expect(res.body.error.details).toEqual({ keyId: created.body.id, revokedAt: expect.any(String) });
  });

  // The 409 of a PATCH whose compare-and-set kept missing says when to retry; the document
  // declared no header on it, so a client generated from it dropped Retry-After.
  it("declares the Retry-After of a key's PATCH that kept meeting concurrent changes", async () => {
    const tenant = await api('/v1/admin/tenants', { key: ADMIN(), body: { name: 'contract' } });
    const created = await api(`/v1/admin/tenants/${tenant.body.id}/keys`, { key: ADMIN(), body: {} });
    const id = created.body.id as string;
    // Every write of this key changes nothing, as when another PATCH lands between each read and write.
    const trigger = `busy_${id.replace(/\W/g, '_')}`;
    await env.DB.prepare(`CREATE TRIGGER ${trigger} BEFORE UPDATE ON api_keys WHEN OLD.id = '${id}' BEGIN SELECT RAISE(IGNORE); END`).run();
    try {
      const res = await api(`/v1/admin/keys/${id}`, { method: 'PATCH', key: ADMIN(), body: { name: 'renamed' } });
      expectContract('PATCH', '/v1/admin/keys/{keyId}', res, 409);
      expect(res.body.error.message).toMatch(/kept changing/);
      expect(res.headers.get('retry-after')).toBe('1');
    } finally {
      await env.DB.prepare(`DROP TRIGGER ${trigger}`).run();
    }
  });

  it('declares the 502 of a stream whose first event is an error on every target', async () => {
    const { key } = await newTenant();
    const id = `fe${Date.now()}`;
    const event = `data: ${JSON.stringify({ error: { message: 'the engine is overloaded', type: 'server_error' } })}\n\ndata: [DONE]\n\n`;
    const target = { id, kind: 'openai-chat', baseUrl: `${env.MOCK_UPSTREAM_URL}/v1?target=${id}&contentType=${encodeURIComponent('text/event-stream')}&body=${encodeURIComponent(event)}`, model: 'm' };
    expect((await api('/v1/pools/firsterr', { method: 'PUT', key, body: { retry: { attempts: 1 }, targets: [target] } })).status).toBe(201);
    const res = await api('/v1/chat/completions', { key, body: { model: 'firsterr', stream: true, messages: [{ role: 'user', content: 'x' }] } });
    expectContract('POST', '/v1/chat/completions', res, 502);
    expect(res.body.error.code).toBe('upstream_failed');
  });

  it('answers the admin routes within the document, with the operator token', async () => {
    const tenant = await api('/v1/admin/tenants', { key: ADMIN(), body: { name: 'contract' } });
    expectContract('POST', '/v1/admin/tenants', tenant, 201);
    const keys = await api(`/v1/admin/tenants/${tenant.body.id}/keys`, { key: ADMIN() });
    expectContract('GET', '/v1/admin/tenants/{tenant}/keys', keys, 200);
  });

  it('answers 400 invalid_request, naming the body missing, to every operation whose document requires a JSON body it did not get', async () => {
    const world = await buildWorld();
    const full = (await api<{ paths: Record<string, Record<string, { requestBody?: { required?: boolean } }>> }>('/openapi.json')).body;
    // Their bodies are read by their protocols, not by a schema: a signature (401), JSON-RPC errors.
    const ownRules = (path: string) => path === '/v1/hooks/{id}' || path === '/mcp' || path.startsWith('/a2a/');
    const required = Object.entries(full.paths).flatMap(([path, ops]) =>
      Object.entries(ops).filter(([, op]) => op.requestBody?.required && !ownRules(path)).map(([method]) => ({ method: method.toUpperCase(), path })),
    );
    expect(required.length).toBeGreaterThan(10);
    const agents = async () => (await api(`/v1/agents?limit=100`, { key: world.key })).body.data.length;
    const before = await agents();
    for (const { method, path } of required) {
      const url = fillPath(path, (name) => paramFor(world, path, name));
      const key = path.startsWith('/v1/admin/') ? ADMIN() : world.key;
      // No body at all, and an empty one sent as JSON: both are a body that is missing.
      for (const init of [{}, { rawBody: '', headers: { 'content-type': 'application/json' } }]) {
        const what = `${method} ${path} ${init.rawBody === undefined ? 'without a body' : 'with an empty JSON body'}`;
        const res = await api(url, { method, key, ...init });
        expect(res.status, what).toBe(400);
        expect(res.body.error, what).toMatchObject({ code: 'invalid_request', message: expect.stringMatching(/^request body is missing/) });
        expect(mismatches(method, path, res), what).toEqual([]);
      }
    }
    // POST /v1/agents without a body used to create an agent from `{}`.
    expect(await agents()).toBe(before);
  });

  // A generated client (or a user reading the reference) relies on the schema to know what
  // will be refused. Before, `{}` to either PATCH, a 33rd metadata key or one over 64
  // characters, a budget of neither requests nor tokens, an operation with neither patch nor
  // increment, a target missing what its kind needs and a webhook to ftp: were all valid by
  // the document and refused 400 by the route.
  it("accepts and refuses a JSON body as the operation's schema says, for every operation that takes one", async () => {
    const world = await buildWorld();
    type Full = { paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema: Schema }> } }>>; components: { schemas: Record<string, Schema> } };
    const full = (await api<Full>('/openapi.json')).body;
    // Read by their protocols, not by a schema (as in the test above); a hook's PUT is not.
    const ownRules = (method: string, path: string) => (method === 'post' && path === '/v1/hooks/{id}') || path === '/mcp' || path.startsWith('/a2a/');
    const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));
    // Bodies on each side of a bound the route checks; every operation is also sent `{}`.
    const probes: Record<string, unknown[]> = {
      'post /v1/agents': [
        { metadata: many(32) }, { metadata: many(33) }, { metadata: { ['k'.repeat(64)]: 1 } }, { metadata: { ['k'.repeat(65)]: 1 } },
        { upstream: { kind: 'agent-http', url: 'ftp://agent.example/run' } }, { upstream: { kind: 'openai-chat', baseUrl: 'file:///etc', model: 'm' } },
      ],
      'patch /v1/agents/{id}': [{ metadata: many(33) }, { metadata: { ['k'.repeat(65)]: 1 } }, { name: null }, { paused: false }],
      'post /v1/agents/batch': [{ agents: [{ metadata: many(33) }] }],
      'post /v1/admin/tenants/{tenant}/keys': [{ limits: { budget: { period: 'day' } } }, { limits: { budget: { period: 'day', tokens: 10 } } }],
      'patch /v1/admin/keys/{keyId}': [{ name: 'renamed' }],
      'post /v1/transactions': [{ operations: [{ agentId: world.otherAgentId }] }, { operations: [{ agentId: world.otherAgentId, patch: { x: 1 } }] }],
      'put /v1/pools/{name}': [
        { targets: [{ id: 'a', kind: 'openai-chat', model: 'm' }] },
        { targets: [{ id: 'a', kind: 'openai-chat', baseUrl: 'https://api.example/v1', model: 'm', url: 'https://api.example/v1' }] },
        { targets: [{ id: 'a', kind: 'agent-http' }] },
        { targets: [{ id: 'a', kind: 'agent-http', url: 'https://agent.example/run', model: 'm' }] },
        { targets: [{ id: 'a', kind: 'builtin', apiKey: 'sk-something-long' }] },
        { targets: [{ id: 'a', kind: 'builtin', model: 'named' }] },
        { targets: [{ id: 'a', kind: 'agent-http', url: 'ftp://agent.example/run' }] },
      ],
      'post /v1/agents/{id}/webhooks': [{ url: 'ftp://receiver.example/hook' }, { url: 'not a url' }, { url: 'HTTPS://receiver.example/hook' }],
    };
    const operations = Object.entries(full.paths).flatMap(([path, ops]) =>
      Object.entries(ops).flatMap(([method, op]) => {
        const schema = op.requestBody?.content?.['application/json']?.schema;
        return schema === undefined || ownRules(method, path) ? [] : [{ method, path, schema }];
      }),
    );
    expect(operations.length).toBeGreaterThan(10);
    const unknown = Object.keys(probes).filter((name) => !operations.some(({ method, path }) => `${method} ${path}` === name));
    expect(unknown, 'probes of operations the document does not have').toEqual([]);
    const wrong: string[] = [];
    let n = 0;
    for (const { method, path, schema } of operations) {
      for (const body of [{}, ...(probes[`${method} ${path}`] ?? [])]) {
        // A new name for each PUT: a second one would replace the first, which is another answer.
        const url = fillPath(path, (name) => (method === 'put' ? `doc-${++n}-${world.agentId}` : paramFor(world, path, name)));
        const res = await api(url, { method: method.toUpperCase(), key: path.startsWith('/v1/admin/') ? ADMIN() : world.key, body });
        const documented = accepts(full, schema, body);
        if (documented !== (res.status !== 400)) wrong.push(`${method} ${path} ${JSON.stringify(body).slice(0, 120)}: the document ${documented ? 'accepts' : 'refuses'} it, the route answered ${res.status} ${JSON.stringify(res.body).slice(0, 160)}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  // What JSON Schema cannot say (ids distinct across items, limits left by a merge, the model's
  // grammar) the schema says in words, and the route refuses it.
  it('describes the rules of a body its schema cannot express, which the routes refuse', async () => {
    const world = await buildWorld();
    type Full = { paths: Record<string, Record<string, { requestBody: { content: Record<string, { schema: Schema }> } }>>; components: { schemas: Record<string, Schema> } };
    const full = (await api<Full>('/openapi.json')).body;
    const expand = (value: unknown, depth = 0): unknown => {
      if (Array.isArray(value)) return value.map((v) => expand(v, depth));
      if (value === null || typeof value !== 'object') return value;
      const ref = (value as { $ref?: string }).$ref;
      if (ref !== undefined && depth < 6) return expand(full.components.schemas[ref.split('/').pop() ?? ''], depth + 1);
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expand(v, depth)]));
    };
    const twoOps = [{ agentId: world.agentId, increment: { n: 1 } }, { agentId: world.agentId, increment: { n: 2 } }];
    const cases: [string, string, unknown, RegExp][] = [
      ['post', '/v1/agents/batch', { agents: [{ id: 'twice' }, { id: 'twice' }] }, /an id given twice is refused/],
      ['put', '/v1/pools/{name}', { targets: [{ id: 'a', kind: 'builtin' }, { id: 'a', kind: 'builtin' }] }, /ids are unique in the pool/],
      ['post', '/v1/transactions', { operations: twoOps }, /one operation per agent/],
      ['post', '/v1/admin/tenants/{tenant}/keys', { limits: { shards: 2 } }, /perSecond, perMinute: one is required with it/],
      ['patch', '/v1/admin/keys/{keyId}', { limits: { budget: { period: 'day' } } }, /a budget needs requests or tokens/],
      ['patch', '/v1/admin/keys/{keyId}', { limits: { shards: 2 } }, /shards needs perSecond or perMinute/],
      ['post', '/v1/chat/completions', { model: `${world.poolName}/`, messages: [{ role: 'user', content: 'x' }] }, /<pool>\/<model>/],
      ['post', '/v1/chat/completions', { model: 'agent:', messages: [{ role: 'user', content: 'x' }] }, /agent:<agent id>/],
    ];
    for (const [method, path, body, rule] of cases) {
      const schema = full.paths[path]?.[method]?.requestBody.content['application/json']?.schema ?? false;
      const what = `${method} ${path} ${JSON.stringify(body)}`;
      // Valid by the schema: when the document can say it, it belongs in the test above.
      expect(accepts(full, schema, body), what).toBe(true);
      expect(JSON.stringify(expand(schema)), what).toMatch(rule);
      const url = fillPath(path, (name) => paramFor(world, path, name));
      const res = await api(url, { method: method.toUpperCase(), key: path.startsWith('/v1/admin/') ? ADMIN() : world.key, body });
      expect(res.status, what).toBe(400);
      expect(res.body.error.code, what).toBe('invalid_request');
    }
  });

  // The header's pattern cannot refuse the reserved prefix (a lookahead, which the regex
  // engines of many generated clients lack), so its description must: before, only the chat
  // route's said so, and an execution or transaction sent `hook:…` was refused unannounced.
  it('describes the Idempotency-Key a route refuses, on every operation that takes one', async () => {
    const world = await buildWorld();
    type Parameter = { name: string; in: string; description?: string; schema: Schema };
    const full = (await api<{ paths: Record<string, Record<string, { parameters?: Parameter[] }>> }>('/openapi.json')).body;
    const bodies: Record<string, { body: unknown; headers?: Record<string, string> }> = {
      'post /v1/agents/{id}/executions': { body: { intent: 'x', input: 'hi' } },
      'post /v1/transactions': { body: { operations: [{ agentId: world.otherAgentId, increment: { n: 1 } }] } },
      'post /v1/chat/completions': { body: { messages: [{ role: 'user', content: 'hi' }], model: world.poolName }, headers: { 'x-agent-id': world.otherAgentId } },
    };
    const keyed = Object.entries(full.paths).flatMap(([path, ops]) =>
      Object.entries(ops).flatMap(([method, op]) => (op.parameters ?? []).filter((p) => p.in === 'header' && p.name === 'idempotency-key').map((p) => ({ name: `${method} ${path}`, method, path, p }))),
    );
    expect(keyed.map(({ name }) => name).sort()).toEqual(Object.keys(bodies).sort());
    for (const { name, method, path, p } of keyed) {
      expect(p.description, name).toMatch(/not beginning hook:/);
      const { body, headers } = bodies[name]!;
      const url = fillPath(path, (param) => paramFor(world, path, param));
      const res = await api(url, { method: method.toUpperCase(), key: world.key, body, headers: { ...headers, 'idempotency-key': 'hook:mine' } });
      expect(res.status, name).toBe(400);
      expect(res.body.error.message, name).toMatch(/hook:/);
    }
  });

  // A generated client offers only the headers an operation declares. Before, none declared the
  // x-request-id every request may name itself with, and the agent card and A2A endpoint
  // declared neither the A2A-Version header (only its query-string fallback) nor, for the
  // card's 304, If-None-Match; nor did /mcp its transport's MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name.
  it('declares on every operation the request headers it reads', async () => {
    type Parameter = { name: string; in: string; $ref?: string; schema?: Schema };
    const full = (await api<{ paths: Record<string, Record<string, { parameters?: Parameter[]; responses: Record<string, unknown> }>>; components: { parameters: Record<string, Parameter> } }>('/openapi.json')).body;
    const missing: string[] = [];
    let requestId: Parameter | undefined;
    for (const [path, ops] of Object.entries(full.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        const params = (op.parameters ?? []).map((p) => (p.$ref ? full.components.parameters[p.$ref.split('/').pop() ?? ''] : p));
        const headers = new Set(params.filter((p) => p?.in === 'header').map((p) => p!.name.toLowerCase()));
        const query = new Set(params.filter((p) => p?.in === 'query').map((p) => p!.name.toLowerCase()));
        // The MCP transport's own headers, which its 400s name (MCP SDK).
        const mcp = path === '/mcp' && method === 'post' ? ['mcp-protocol-version', 'mcp-session-id', 'mcp-method', 'mcp-name'] : [];
        const need = ['x-request-id', ...('304' in op.responses ? ['if-none-match'] : []), ...('412' in op.responses ? ['if-match'] : []), ...(query.has('a2a-version') ? ['a2a-version'] : []), ...mcp];
        for (const name of need) if (!headers.has(name)) missing.push(`${method} ${path}: ${name}`);
        requestId ??= params.find((p) => p?.in === 'header' && p.name === 'x-request-id');
      }
    }
    expect(missing).toEqual([]);
    // What the schema allows is what the gateway keeps: else it answers with an id of its own.
    const { key } = await newTenant();
    for (const [id, kept] of [['order-42_retry=1', true], ['x'.repeat(128), true], ['x'.repeat(129), false], ['has space', false]] as const) {
      expect(accepts({}, requestId?.schema ?? false, id), id).toBe(kept);
      const res = await api('/v1/agents', { key, headers: { 'x-request-id': id } });
      expect(res.headers.get('x-request-id') === id, id).toBe(kept);
    }
  });

  it('answers every documented operation within the document', async () => {
    const { key, tenantId, keyId } = await newTenant();
    const agent = await newAgent(key, { a2a: { publicCard: true } });
    const answered = new Set<string>();
    const check = async (method: string, template: string, path: string, status: number, init: Parameters<typeof api>[1] = {}) => {
      const res = await api(path, { method, key, ...init });
      expectContract(method, template, res, status);
      answered.add(`${method.toLowerCase()} ${template}`);
      return res;
    };
    // An event stream never ends: its answer is read up to the headers.
    const stream = async (template: string, path: string) => {
      const res = await SELF.fetch(`${BASE}${path}`, { headers: { authorization: `Bearer ${key}` } });
      await res.body?.cancel();
      expectContract('GET', template, { status: res.status, headers: res.headers, body: null }, 200);
      answered.add(`get ${template}`);
    };
    const admin = { key: ADMIN() };
    const a = `/v1/agents/${agent}`;

    await check('GET', '/healthz', '/healthz', 200, { key: undefined });
    await check('POST', '/v1/admin/tenants', '/v1/admin/tenants', 201, { ...admin, body: { name: 'sweep' } });
    await check('GET', '/v1/admin/tenants', '/v1/admin/tenants?limit=1', 200, admin);
    await check('GET', '/v1/admin/tenants/{tenant}', `/v1/admin/tenants/${tenantId}`, 200, admin);
    await check('POST', '/v1/admin/tenants/{tenant}/keys', `/v1/admin/tenants/${tenantId}/keys`, 201, { ...admin, body: { name: 'spare' } });
    await check('GET', '/v1/admin/tenants/{tenant}/keys', `/v1/admin/tenants/${tenantId}/keys`, 200, admin);
    await check('PATCH', '/v1/admin/keys/{keyId}', `/v1/admin/keys/${keyId}`, 200, { ...admin, body: { name: 'renamed' } });
    await check('GET', '/v1/admin/audit', `/v1/admin/audit?tenant=${tenantId}`, 200, admin);
    await check('POST', '/v1/agents', '/v1/agents', 409, { body: { id: agent } });
    await check('GET', '/v1/agents', '/v1/agents?limit=1', 200);
    await check('POST', '/v1/agents/batch', '/v1/agents/batch', 200, { body: { agents: [{ name: 'one' }] } });
    await check('GET', '/v1/agents/{id}', a, 200);
    await check('PATCH', '/v1/agents/{id}', a, 200, { body: { name: 'swept' } });
    const run = await check('POST', '/v1/agents/{id}/executions', `${a}/executions`, 200, { body: { intent: 'support.reply', input: { message: 'hi' } } });
    await check('GET', '/v1/agents/{id}/executions', `${a}/executions`, 200);
    await check('GET', '/v1/agents/{id}/executions/{eid}', `${a}/executions/${run.body.id}`, 200);
    await check('POST', '/v1/agents/{id}/executions/{eid}/cancel', `${a}/executions/${run.body.id}/cancel`, 409);
    await check('GET', '/v1/agents/{id}/status', `${a}/status`, 200);
    await check('GET', '/v1/agents/{id}/context', `${a}/context`, 200);
    await check('PATCH', '/v1/agents/{id}/context', `${a}/context`, 412, { body: { x: 1 }, headers: { 'if-match': '"0"' } });
    await check('PUT', '/v1/pools/{name}', '/v1/pools/local', 201, { body: { targets: [{ id: 'faq', kind: 'builtin' }] } });
    await check('GET', '/v1/pools/{name}', '/v1/pools/local', 200);
    await check('GET', '/v1/pools', '/v1/pools', 200);
    await check('GET', '/v1/pools', '/v1/pools?limit=1', 200);
    await check('GET', '/v1/pools', '/v1/pools?limit=0', 400);
    await check('POST', '/v1/chat/completions', '/v1/chat/completions', 200, { body: { model: 'local', messages: [{ role: 'user', content: 'hi' }] } });
    await check('GET', '/v1/models', '/v1/models', 200);
    await check('GET', '/v1/models/{model}', '/v1/models/local', 200);
    await check('GET', '/v1/models/{model}', '/v1/models/local%2Fnone', 404);
    await check('DELETE', '/v1/pools/{name}', '/v1/pools/local', 204);
    const webhook = await check('POST', '/v1/agents/{id}/webhooks', `${a}/webhooks`, 201, { body: { url: 'https://receiver.example/hook' } });
    await check('GET', '/v1/agents/{id}/webhooks', `${a}/webhooks`, 200);
    await check('GET', '/v1/agents/{id}/deliveries', `${a}/deliveries`, 200);
    await check('POST', '/v1/agents/{id}/deliveries/{did}/retry', `${a}/deliveries/msg_none/retry`, 404);
    await check('DELETE', '/v1/agents/{id}/webhooks/{wid}', `${a}/webhooks/${webhook.body.id}`, 204);
    await stream('/v1/agents/{id}/events', `${a}/events`);
    await check('GET', '/v1/agents/{id}/events/ws', `${a}/events/ws`, 426);
    const hook = `sweep-${agent}`;
    await check('PUT', '/v1/hooks/{id}', `/v1/hooks/${hook}`, 201, { body: { agentId: agent, intent: 'x', scheme: 'github', secret: 'a-github-secret-of-some-length' } });
    await check('GET', '/v1/hooks/{id}', `/v1/hooks/${hook}`, 200);
    await check('GET', '/v1/hooks', `/v1/hooks?limit=1&agentId=${agent}`, 200);
    await check('GET', '/v1/hooks', '/v1/hooks?cursor=%25', 400);
    await check('GET', '/v1/admin/tenants/{tenant}/hooks', `/v1/admin/tenants/${tenantId}/hooks?limit=1`, 200, admin);
    await check('GET', '/v1/admin/tenants/{tenant}/hooks', '/v1/admin/tenants/no-such-tenant/hooks', 404, admin);
    await check('DELETE', '/v1/admin/tenants/{tenant}/hooks/{id}', `/v1/admin/tenants/${tenantId}/hooks/no-such-hook`, 404, admin);
    await check('POST', '/v1/hooks/{id}', `/v1/hooks/${hook}`, 401, { key: undefined, body: { unsigned: true } });
    await check('DELETE', '/v1/hooks/{id}', `/v1/hooks/${hook}`, 204);
    await check('GET', '/v1/stats', '/v1/stats', 200);
    const tx = await check('POST', '/v1/transactions', '/v1/transactions', 200, { body: { operations: [{ agentId: agent, increment: { n: 1 } }] } });
    await check('GET', '/v1/transactions/{id}', `/v1/transactions/${tx.body.id}`, 200);
    await check('GET', '/v1/admin/tenants/{tenant}/agents/{agentId}/lock', `/v1/admin/tenants/${tenantId}/agents/${agent}/lock`, 200, admin);
    const resolve = `/v1/admin/tenants/${tenantId}/agents/${agent}/transactions/${tx.body.id}/resolve`;
    await check('POST', '/v1/admin/tenants/{tenant}/agents/{agentId}/transactions/{txId}/resolve', resolve, 409, { ...admin, body: { outcome: 'abort' } });
    await check('GET', '/v1/audit', '/v1/audit', 200);
    await check('GET', '/v1/usage', '/v1/usage', 200);
    const mcp = { headers: { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' } };
    await check('POST', '/mcp', '/mcp', 200, { ...mcp, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } });
    // An initialize's answer gives the client its Mcp-Session-Id; 2026-07-28 answers a method not served 404.
    await check('POST', '/mcp', '/mcp', 200, { headers: { accept: 'application/json, text/event-stream' }, body: { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'contract', version: '1' } } } });
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'contract', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
    await check('POST', '/mcp', '/mcp', 404, { headers: { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'prompts/list' }, body: { jsonrpc: '2.0', id: 2, method: 'prompts/list', params: { _meta: meta } } });
    // An allowed origin's 204 needs MCP_ALLOWED_ORIGINS set: test/mcp.test.ts checks it against the document.
    await check('OPTIONS', '/mcp', '/mcp', 403, { key: undefined, headers: { origin: 'https://elsewhere.example', 'access-control-request-method': 'POST' } });
    await check('OPTIONS', '/mcp', '/mcp', 405, { key: undefined });
    await check('GET', '/a2a/{id}/.well-known/agent-card.json', `/a2a/${agent}/.well-known/agent-card.json`, 200, { key: undefined });
    const list = { jsonrpc: '2.0', id: 1, method: 'ListTasks', params: {} };
    await check('POST', '/a2a/{id}/', `/a2a/${agent}/`, 200, { body: list, headers: { 'a2a-version': '1.0' } });
    await check('POST', '/a2a/{id}', `/a2a/${agent}`, 200, { body: list, headers: { 'a2a-version': '1.0' } });
    await check('DELETE', '/v1/agents/{id}', a, 204);
    await check('DELETE', '/v1/admin/keys/{keyId}', `/v1/admin/keys/${keyId}`, 204, admin);

    const documented = Object.entries(doc.paths).flatMap(([path, operations]) => Object.keys(operations).map((method) => `${method} ${path}`));
    expect(documented.filter((operation) => !answered.has(operation))).toEqual([]);
  });
});
