import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { BASE, newTenant } from './support/api';

/**
 * The protocol's edges as a host (or curl) meets them on POST /mcp, pinned so an SDK upgrade
 * that changes them is noticed: version negotiation, notifications, posted responses, methods
 * the gateway does not serve.
 */

async function post(key: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return SELF.fetch(`${BASE}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });
}

/** The single JSON-RPC message of an answer, JSON or one SSE event. */
async function message(res: Response): Promise<any> {
  const text = await res.text();
  return JSON.parse((res.headers.get('content-type') ?? '').includes('event-stream') ? (/^data: (.*)$/m.exec(text)?.[1] ?? 'null') : text);
}

const initialize = (protocolVersion: string) => ({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

describe('MCP: protocol edges', () => {
  it('initialize agrees to each 2024-2025 version a client asks for, and answers an unknown one with its latest', async () => {
    const { key } = await newTenant();
    for (const version of ['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05']) {
      const reply = await message(await post(key, initialize(version)));
      expect(reply.result, version).toMatchObject({ protocolVersion: version, serverInfo: { name: 'edge-agent-gateway' }, capabilities: { tools: { listChanged: false } } });
    }
    expect((await message(await post(key, initialize('1999-01-01')))).result.protocolVersion).toBe('2025-11-25');
  });

  it('accepts notifications and posted JSON-RPC responses with 202 and no body', async () => {
    const { key } = await newTenant();
    for (const body of [
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } },
      { jsonrpc: '2.0', id: 5, result: {} },
      [{ jsonrpc: '2.0', method: 'notifications/initialized' }],
    ]) {
      const res = await post(key, body);
      expect(res.status, JSON.stringify(body)).toBe(202);
      expect(await res.text()).toBe('');
    }
  });

  it('refuses a notification it knows whose params do not fit with 400 and a -32602 without an id; unknown ones stay 202', async () => {
    const { key } = await newTenant();
    const notification = (method: string, params?: unknown) => ({ jsonrpc: '2.0', method, ...(params !== undefined && { params }) });
    const refused = async (res: Response, field: RegExp, label: string) => {
      expect(res.status, label).toBe(400);
      const body = await res.json();
      expect(body, label).toEqual({ jsonrpc: '2.0', error: { code: -32602, message: expect.stringMatching(field) } });
    };
    await refused(await post(key, notification('notifications/cancelled', { requestId: { not: 'an id' } })), /^Invalid params: notifications\/cancelled: requestId: /, 'cancelled');
    await refused(await post(key, notification('notifications/progress', { progressToken: 't', progress: 'half' })), /^Invalid params: notifications\/progress: progress: /, 'progress');
    // Refused whole in a batch, its request unanswered: one POST has one status.
    await refused(await post(key, [{ jsonrpc: '2.0', id: 1, method: 'ping' }, notification('notifications/cancelled', { reason: 5 })]), /cancelled: reason: /, 'batch');
    // 2026-07-28 makes requestId required.
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
    const modern = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'notifications/cancelled' };
    await refused(await post(key, notification('notifications/cancelled', { _meta: meta }), modern), /cancelled: requestId: /, '2026 cancelled');
    const fine = await post(key, notification('notifications/cancelled', { requestId: 'r-1', _meta: meta }), modern);
    expect(fine.status).toBe(202);

    // A method the server does not know may be ignored: 202 whatever its params.
    const unknown = await post(key, notification('notifications/something_new', { requestId: { not: 'an id' } }));
    expect(unknown.status).toBe(202);
    expect(await unknown.text()).toBe('');
  });

  it('serves a JSON-RPC batch under 2025-03-26 (and without a version header, which means it), and refuses one under the versions that removed batching with 400 -32600', async () => {
    const { key } = await newTenant();
    const batch = [{ jsonrpc: '2.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', id: 2, method: 'tools/list' }];
    for (const version of ['2024-11-05', '2025-03-26', undefined]) {
      const res = await post(key, batch, version ? { 'mcp-protocol-version': version } : {});
      expect(res.status, version).toBe(200);
      const ids = [...(await res.text()).matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1] ?? 'null').id);
      expect(ids.sort(), version).toEqual([1, 2]);
    }
    // 2025-06-18 removed batching ("the body MUST be a single JSON-RPC request, notification, or
    // response"), and 2025-11-25 kept it so: the batch is refused whole, nothing of it served.
    for (const version of ['2025-06-18', '2025-11-25']) {
      for (const body of [batch, [{ jsonrpc: '2.0', id: 3, method: 'ping' }], [{ jsonrpc: '2.0', method: 'notifications/initialized' }]]) {
        const res = await post(key, body, { 'mcp-protocol-version': version });
        expect(res.status, version).toBe(400);
        expect(await res.json(), version).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringContaining(version) } });
      }
      // One message, as that version sends it, is served.
      expect((await message(await post(key, batch[1], { 'mcp-protocol-version': version }))).result.tools, version).toHaveLength(5);
    }
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
    const modern = await post(key, [{ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: meta } }], { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' });
    expect(modern.status).toBe(400);
    expect(await modern.json()).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600 } });
  });

  it('answers a request whose id is a number but no safe integer -32600 with id null, never an id the client did not send', async () => {
    const { key } = await newTenant();
    const raw = (text: string, headers: Record<string, string> = {}) =>
      SELF.fetch(`${BASE}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body: text });
    const modern = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' };
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
    const cases: [string, Record<string, string>][] = [
      ['{"jsonrpc":"2.0","id":1.5,"method":"ping"}', {}],
      // Parsed, 12345678901234567890 is 12345678901234567000: echoed, it is another id.
      ['{"jsonrpc":"2.0","id":12345678901234567890,"method":"ping"}', {}],
      ['{"jsonrpc":"2.0","id":-1e300,"method":"tools/list"}', { 'mcp-protocol-version': '2025-06-18' }],
      [`{"jsonrpc":"2.0","id":0.25,"method":"tools/list","params":{"_meta":${JSON.stringify(meta)}}}`, modern],
    ];
    for (const [text, headers] of cases) {
      const res = await raw(text, headers);
      expect(res.status, text).toBe(400);
      expect(await res.json(), text).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.any(String) } });
    }
    // A valid id is still echoed with the SDK's other refusals.
    const paramsNotObject = await raw('{"jsonrpc":"2.0","id":9007199254740991,"method":"tools/list","params":"x"}');
    expect(paramsNotObject.status).toBe(400);
    expect(await paramsNotObject.json()).toMatchObject({ id: 9007199254740991, error: { code: -32600 } });
    expect((await message(await raw('{"jsonrpc":"2.0","id":-7,"method":"ping"}'))).id).toBe(-7);
  });

  it('answers ping, and methods it does not serve (resources, prompts, logging, completion) with -32601', async () => {
    const { key } = await newTenant();
    expect(await message(await post(key, { jsonrpc: '2.0', id: 9, method: 'ping' }))).toEqual({ jsonrpc: '2.0', id: 9, result: {} });
    for (const method of ['resources/list', 'resources/templates/list', 'prompts/list', 'logging/setLevel', 'completion/complete']) {
      const res = await post(key, { jsonrpc: '2.0', id: 10, method, params: {} });
      expect(res.status, method).toBe(200);
      expect(await message(res), method).toMatchObject({ id: 10, error: { code: -32601 } });
    }
  });

  it('answers a 2026-07-28 method it does not serve HTTP 404 -32601, and headers that disagree with the body 400 -32020, as /openapi.json declares', async () => {
    const { key } = await newTenant();
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
    const doc = await (await SELF.fetch(`${BASE}/openapi.json`)).json<any>();
    const declared = doc.paths['/mcp'].post.responses;
    for (const method of ['resources/list', 'prompts/list', 'ping']) {
      const res = await post(key, { jsonrpc: '2.0', id: 3, method, params: { _meta: meta } }, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': method });
      expect(res.status, method).toBe(404);
      expect(await res.json(), method).toMatchObject({ jsonrpc: '2.0', id: 3, error: { code: -32601 } });
    }
    expect(declared['404']?.content['application/json'].schema.required).toEqual(['jsonrpc', 'error', 'id']);
    expect(declared['404'].description).toMatch(/-32601/);
    const mismatch = await post(key, { jsonrpc: '2.0', id: 4, method: 'tools/list', params: { _meta: meta } }, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'prompts/list' });
    expect(mismatch.status).toBe(400);
    expect(await mismatch.json()).toMatchObject({ jsonrpc: '2.0', id: 4, error: { code: -32020 } });
    expect(declared['400'].description).toMatch(/-32020/);
  });

  it('refuses an Accept without both media types 406 in the 2025 versions only: 2026-07-28 answers JSON whatever Accept lists, as /openapi.json says', async () => {
    const { key } = await newTenant();
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
    const legacy = await post(key, { jsonrpc: '2.0', id: 1, method: 'tools/list' }, { accept: 'application/json', 'mcp-protocol-version': '2025-06-18' });
    expect(legacy.status).toBe(406);
    for (const accept of ['application/json', 'text/event-stream']) {
      const modern = await post(key, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { _meta: meta } }, { accept, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' });
      expect(modern.status, accept).toBe(200);
      expect(modern.headers.get('content-type'), accept).toMatch(/^application\/json/);
      expect((await modern.json<any>()).result.tools, accept).toHaveLength(5);
    }
    const doc = await (await SELF.fetch(`${BASE}/openapi.json`)).json<any>();
    expect(doc.paths['/mcp'].post.responses['406'].description).toMatch(/2025/);
  });

  it('reads Accept case-insensitively, as media types are: both types listed in capitals are served, not refused 406', async () => {
    const { key } = await newTenant();
    for (const accept of ['APPLICATION/JSON, TEXT/EVENT-STREAM', 'Application/Json, Text/Event-Stream']) {
      const res = await post(key, { jsonrpc: '2.0', id: 1, method: 'ping' }, { accept, 'mcp-protocol-version': '2025-11-25' });
      expect(res.status, accept).toBe(200);
      expect(await message(res), accept).toMatchObject({ id: 1, result: {} });
    }
    // Still refused when one of the two is missing, whatever its case.
    expect((await post(key, { jsonrpc: '2.0', id: 2, method: 'ping' }, { accept: 'APPLICATION/JSON', 'mcp-protocol-version': '2025-11-25' })).status).toBe(406);
  });
});
