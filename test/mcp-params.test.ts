import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { BASE, newTenant } from './support/api';

/**
 * Params of the protocol's own methods that do not fit the method, as a host (or curl) may
 * send them: each is answered -32602 Invalid params naming the field, with the request's id,
 * in the form the endpoint answers that protocol version with (an SSE event for 2025 clients,
 * JSON for 2026-07-28), and the rest of a batch is served as usual.
 */

async function post(key: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return SELF.fetch(`${BASE}/mcp`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(body),
  });
}

/** The JSON-RPC messages of an answer: its SSE events, or its JSON body (one or a batch). */
async function messages(res: Response): Promise<any[]> {
  const text = await res.text();
  if ((res.headers.get('content-type') ?? '').includes('event-stream')) return [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1] ?? 'null'));
  const body = JSON.parse(text);
  return Array.isArray(body) ? body : [body];
}

const clientInfo = { name: 'raw', version: '1' };
const initialize = (params: unknown) => ({ jsonrpc: '2.0', id: 'init-1', method: 'initialize', ...(params !== undefined && { params }) });
const good = { protocolVersion: '2025-11-25', capabilities: {}, clientInfo };

const meta2026 = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': clientInfo, 'io.modelcontextprotocol/clientCapabilities': {} };
const headers2026 = (method: string) => ({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': method });

/** The one answer to a request expected to be refused with -32602 naming `field`. */
async function refused(res: Response, id: string | number, field: RegExp): Promise<void> {
  expect(res.status).toBe(200);
  const [reply, ...rest] = await messages(res);
  expect(rest).toEqual([]);
  expect(reply).toEqual({ jsonrpc: '2.0', id, error: { code: -32602, message: expect.stringMatching(field) } });
}

describe('MCP: malformed params of initialize', () => {
  it('answers each with -32602 naming the field, not -32603, with the request id, as an SSE event', async () => {
    const { key } = await newTenant();
    const cases: [unknown, RegExp][] = [
      [undefined, /^Invalid params: protocolVersion: /],
      [{}, /^Invalid params: protocolVersion: /],
      [{ ...good, protocolVersion: 7 }, /^Invalid params: protocolVersion: .*expected string, received number/],
      [{ ...good, clientInfo: 'x' }, /^Invalid params: clientInfo: .*expected object, received string/],
      [{ ...good, clientInfo: { version: '1' } }, /^Invalid params: clientInfo\.name: /],
      [{ ...good, clientInfo: { name: 'raw', version: 5 } }, /^Invalid params: clientInfo\.version: /],
      [{ ...good, clientInfo: { ...clientInfo, icons: [{ src: 'a.png', theme: 'blue' }] } }, /^Invalid params: clientInfo\.icons\.0\.theme: /],
      [{ protocolVersion: '2025-11-25', clientInfo }, /^Invalid params: capabilities: .*expected object, received undefined/],
      [{ ...good, capabilities: [] }, /^Invalid params: capabilities: .*expected object, received array/],
      [{ ...good, capabilities: { roots: 5 } }, /^Invalid params: capabilities\.roots: /],
      [{ ...good, capabilities: { roots: { listChanged: 'yes' } } }, /^Invalid params: capabilities\.roots\.listChanged: /],
      [{ ...good, capabilities: { elicitation: { form: { applyDefaults: 'x' } } } }, /^Invalid params: capabilities\.elicitation\.form\.applyDefaults: /],
      [{ ...good, capabilities: { experimental: { feature: 5 } } }, /^Invalid params: capabilities\.experimental\.feature: /],
      [{ ...good, capabilities: { tasks: { requests: 5 } } }, /^Invalid params: capabilities\.tasks\.requests: /],
    ];
    for (const [params, field] of cases) {
      const res = await post(key, initialize(params));
      expect(res.headers.get('content-type'), JSON.stringify(params)).toMatch(/text\/event-stream/);
      await refused(res, 'init-1', field);
    }
  });

  it('still agrees to an initialize using every optional field the protocol defines', async () => {
    const { key } = await newTenant();
    const params = {
      protocolVersion: '2025-11-25',
      capabilities: {
        experimental: { feature: { on: true } },
        sampling: { context: {}, tools: {} },
        elicitation: {},
        roots: { listChanged: true },
        tasks: { list: {}, cancel: {}, requests: { sampling: { createMessage: {} }, elicitation: { create: {} } } },
        extensions: { 'io.example/ext': { v: 1 } },
        somethingNew: 5,
      },
      clientInfo: { name: 'raw', title: 'Raw', version: '1', icons: [{ src: 'a.png', mimeType: 'image/png', sizes: ['16x16'], theme: 'dark' }], websiteUrl: 'https://example.com', description: 'd' },
      _meta: { progressToken: 1 },
      extra: 'ignored',
    };
    const [reply] = await messages(await post(key, initialize(params)));
    expect(reply).toMatchObject({ id: 'init-1', result: { protocolVersion: '2025-11-25', serverInfo: { name: 'edge-agent-gateway' } } });
    const [withElicitation] = await messages(await post(key, initialize({ ...good, capabilities: { elicitation: { form: { applyDefaults: true }, url: {} } } })));
    expect(withElicitation.result?.protocolVersion).toBe('2025-11-25');
  });
});

describe('MCP: malformed params of tools/list', () => {
  it('answers a cursor that is not a string with -32602 naming it, as SSE (2025) and as JSON (2026-07-28)', async () => {
    const { key } = await newTenant();
    const legacy = await post(key, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { cursor: 5 } });
    expect(legacy.headers.get('content-type')).toMatch(/text\/event-stream/);
    await refused(legacy, 2, /^Invalid params: cursor: .*expected string, received number/);

    const modern = await post(key, { jsonrpc: '2.0', id: 3, method: 'tools/list', params: { cursor: 5, _meta: meta2026 } }, headers2026('tools/list'));
    expect(modern.headers.get('content-type')).toMatch(/application\/json/);
    await refused(modern, 3, /^Invalid params: cursor: /);

    // Well-formed, both still list the tools.
    const [listed] = await messages(await post(key, { jsonrpc: '2.0', id: 4, method: 'tools/list', params: { extra: 1 } }));
    expect(listed.result.tools).toHaveLength(5);
    const [listed2026] = await messages(await post(key, { jsonrpc: '2.0', id: 5, method: 'tools/list', params: { _meta: meta2026 } }, headers2026('tools/list')));
    expect(listed2026.result.tools).toHaveLength(5);
  });
});

describe('MCP: tools/list cursors', () => {
  it('lists every tool on one page with no nextCursor, and answers any cursor (none was ever given) -32602 naming it, in both eras', async () => {
    const { key } = await newTenant();
    const [first] = await messages(await post(key, { jsonrpc: '2.0', id: 1, method: 'tools/list' }));
    expect(first.result.tools).toHaveLength(5);
    expect(first.result.nextCursor).toBeUndefined();
    // The MCP spec (pagination): an invalid cursor SHOULD be -32602 Invalid params.
    for (const cursor of ['c', '', 'eyJvZmZzZXQiOjV9']) {
      await refused(await post(key, { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { cursor } }), 2, /^Invalid params: cursor: /);
    }
    await refused(await post(key, { jsonrpc: '2.0', id: 3, method: 'tools/list', params: { cursor: 'c', _meta: meta2026 } }, headers2026('tools/list')), 3, /^Invalid params: cursor: /);
  });
});

describe('MCP: malformed params of tools/call', () => {
  it('answers a name or arguments of the wrong type with -32602 naming the field in one line', async () => {
    const { key } = await newTenant();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ name: 5 }, /^Invalid params: name: .*expected string, received number$/],
      [{ arguments: {} }, /^Invalid params: name: /],
      [{ name: 'list_agents', arguments: 'x' }, /^Invalid params: arguments: .*expected record, received string$/],
      [{ name: 'list_agents', arguments: [] }, /^Invalid params: arguments: /],
      [{ name: 'list_agents', arguments: {}, task: { ttl: 'x' } }, /^Invalid params: task\.ttl: /],
    ];
    for (const [params, field] of cases) await refused(await post(key, { jsonrpc: '2.0', id: 7, method: 'tools/call', params }), 7, field);

    const modern = await post(key, { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: 5, _meta: meta2026 } }, headers2026('tools/call'));
    await refused(modern, 8, /^Invalid params: name: /);
  });
});

describe('MCP: malformed params in a batch', () => {
  it('refuses only the malformed calls, each with its id, and serves the others', async () => {
    const { key } = await newTenant();
    const res = await post(key, [
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      { jsonrpc: '2.0', id: 2, method: 'tools/list', params: { cursor: 5 } },
      { jsonrpc: '2.0', id: 3, method: 'ping' },
      { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'list_agents', arguments: 'x' } },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
    ]);
    expect(res.status).toBe(200);
    const byId = Object.fromEntries((await messages(res)).map((m) => [m.id, m]));
    expect(Object.keys(byId).sort()).toEqual(['1', '2', '3', '4']);
    expect(byId[1].result.tools).toHaveLength(5);
    expect(byId[2]).toEqual({ jsonrpc: '2.0', id: 2, error: { code: -32602, message: expect.stringMatching(/^Invalid params: cursor: /) } });
    expect(byId[3]).toEqual({ jsonrpc: '2.0', id: 3, result: {} });
    expect(byId[4].error).toEqual({ code: -32602, message: expect.stringMatching(/^Invalid params: arguments: /) });
  });

  it('answers a batch of a malformed initialize and a notification with the -32602 alone', async () => {
    const { key } = await newTenant();
    const res = await post(key, [initialize({ ...good, protocolVersion: 7 }), { jsonrpc: '2.0', method: 'notifications/initialized' }]);
    await refused(res, 'init-1', /^Invalid params: protocolVersion: /);
  });
});

describe('MCP: what the params check leaves alone', () => {
  it('answers methods it does not serve with -32601 whatever their params', async () => {
    const { key } = await newTenant();
    for (const method of ['resources/list', 'prompts/get', 'completion/complete', 'logging/setLevel', 'tasks/get']) {
      const [reply] = await messages(await post(key, { jsonrpc: '2.0', id: 10, method, params: { cursor: 5, name: 5, level: 5, ref: 5 } }));
      expect(reply, method).toMatchObject({ id: 10, error: { code: -32601 } });
    }
    // 2026-07-28 has no initialize: still -32601 (HTTP 404), not a params check.
    const modernInit = await post(key, { ...initialize({ ...good, protocolVersion: 7 }), params: { protocolVersion: 7, _meta: meta2026 } }, headers2026('initialize'));
    expect(modernInit.status).toBe(404);
    expect((await messages(modernInit))[0]).toMatchObject({ id: 'init-1', error: { code: -32601 } });
  });
});

describe('MCP: params nested too deep', () => {
  /** An initialize whose capabilities.experimental holds a value `levels` deep, as raw JSON (JSON.stringify recurses). */
  const deepInitialize = (levels: number) =>
    `{"jsonrpc":"2.0","id":"init-1","method":"initialize","params":{"protocolVersion":"2025-11-25","clientInfo":{"name":"raw","version":"1"},"capabilities":{"experimental":{"x":${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}}}}}`;
  const postText = (key: string, body: string) =>
    SELF.fetch(`${BASE}/mcp`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body });

  it('refuses a message whose params nest deeper than 64 levels with -32602, not a parse error carrying a RangeError', async () => {
    const { key } = await newTenant();
    // 5,000 levels overflowed the SDK's validation of the capabilities: 400 -32700 "Parse error", data "RangeError: Maximum call stack size exceeded".
    const res = await postText(key, deepInitialize(5000));
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text).not.toContain('RangeError');
    expect(JSON.parse(text)).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32602, message: 'Invalid params: initialize: params are nested deeper than 64 levels' } });
    // In a batch and in a notification too: the body is refused whole.
    const batch = await postText(key, `[${deepInitialize(65 - 3)},{"jsonrpc":"2.0","id":2,"method":"ping"}]`);
    expect(batch.status).toBe(400);
    expect((await batch.json()) as unknown).toMatchObject({ id: null, error: { code: -32602 } });
  });

  it('still serves params of exactly 64 levels', async () => {
    const { key } = await newTenant();
    // params (1), capabilities (2), experimental (3), then 61 objects: 64.
    const [reply] = await messages(await postText(key, deepInitialize(61)));
    expect(reply).toMatchObject({ id: 'init-1', result: { serverInfo: { name: 'edge-agent-gateway' } } });
  });
});
