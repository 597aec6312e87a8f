import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, BASE, newAgent, newTenant } from './support/api';
import { limitedKey, settledRequests } from './support/limits';

/**
 * Every route parses request bodies as UTF-8 JSON, so a body declared in another charset, or
 * sent with a content coding, cannot be read as sent: 415 unsupported_media_type, naming the
 * charset or coding. Both used to be read as plain UTF-8 (a latin1 "é" was stored as U+FFFD,
 * a gzipped body was "not valid JSON").
 */

const gzip = async (text: string): Promise<Uint8Array> =>
  new Uint8Array(await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream('gzip'))).arrayBuffer());

/** `text` as UTF-16LE bytes, as a client declaring charset=utf-16 would send it. */
const utf16 = (text: string): Uint8Array => new Uint8Array(Uint16Array.from(text, (c) => c.charCodeAt(0)).buffer);

async function agentContext() {
  const { key } = await newTenant();
  const id = await newAgent(key);
  const path = `/v1/agents/${id}/context`;
  const patch = (rawBody: BodyInit, headers: Record<string, string>) => api(path, { method: 'PATCH', key, rawBody, headers });
  return { key, path, patch };
}

describe('request bodies in another charset or with a content coding', () => {
  it('refuses a JSON body declared in a charset other than UTF-8 with 415 naming it, and stores nothing', async () => {
    const { key, path, patch } = await agentContext();
    const refused: [string, BodyInit][] = [
      ['application/merge-patch+json; charset=utf-16', utf16('{"a":"\u00e9"}')],
      ['application/json; charset=ISO-8859-1', new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xe9, 0x22, 0x7d])],
      ['application/json;charset="latin1"', '{"a":1}'],
      ['application/json; charset=', '{"a":1}'],
    ];
    for (const [type, body] of refused) {
      const res = await patch(body, { 'content-type': type });
      expect(res.status, type).toBe(415);
      expect(res.body.error, type).toMatchObject({ code: 'unsupported_media_type', message: expect.stringMatching(/charset/) });
    }
    expect((await patch(utf16('{}'), { 'content-type': 'application/json; charset=UTF-16' })).body.error.message).toMatch(/"utf-16"/);
    expect((await api(path, { key })).body).toEqual({ version: 0, data: {} });
    // Another JSON route, the same answer: the check is the app's, not the context route's.
    const created = await api('/v1/agents', { key, rawBody: '{"name":"x"}', headers: { 'content-type': 'application/json; charset=windows-1252' } });
    expect(created.status).toBe(415);
    expect(created.body.error.message).toMatch(/"windows-1252"/);
  });

  it('reads UTF-8 declared in any case, quoted or not, and US-ASCII (a subset)', async () => {
    const { patch } = await agentContext();
    const types = ['application/json; charset=utf-8', 'application/json; Charset=UTF-8', 'application/merge-patch+json;charset="Utf-8"', 'application/json; charset=us-ascii', 'application/json; foo=bar; charset=US-ASCII'];
    for (const [n, type] of types.entries()) {
      const res = await patch(JSON.stringify({ [`k${n}`]: 'caf\u00e9' }), { 'content-type': type });
      expect(res.status, type).toBe(200);
    }
    expect((await patch('{"last":true}', { 'content-type': 'application/json' })).body.version).toBe(types.length + 1);
  });

  it('refuses a body with a Content-Encoding other than identity with 415 naming it: the runtime hands the Worker the coded bytes', async () => {
    const { key, path, patch } = await agentContext();
    const zipped = await gzip('{"a":1}');
    // workerd does not decode a request body: what the Worker reads is the gzip stream itself.
    const request = new Request(`${BASE}/x`, { method: 'POST', body: zipped, headers: { 'content-encoding': 'gzip' } });
    expect(new Uint8Array(await request.arrayBuffer())).toEqual(zipped);

    for (const coding of ['gzip', 'GZIP', 'br', 'deflate', 'identity, gzip']) {
      const res = await patch(zipped, { 'content-type': 'application/json', 'content-encoding': coding });
      expect(res.status, coding).toBe(415);
      expect(res.body.error, coding).toMatchObject({ code: 'unsupported_media_type', message: expect.stringMatching(/Content-Encoding/) });
    }
    expect((await patch(zipped, { 'content-type': 'application/json', 'content-encoding': 'gzip' })).body.error.message).toMatch(/gzip/);
    expect((await api(path, { key })).body).toEqual({ version: 0, data: {} });
    expect((await patch('{"a":2}', { 'content-type': 'application/json', 'content-encoding': 'identity' })).body).toEqual({ version: 1, data: { a: 2 } });
  });

  it('refuses them on /mcp with its 415 envelope, and on an incoming hook before its signature is checked', async () => {
    const { key } = await newTenant();
    const initialize = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    const mcp = (body: BodyInit, headers: Record<string, string>) =>
      SELF.fetch(`${BASE}/mcp`, { method: 'POST', body, headers: { authorization: `Bearer ${key}`, accept: 'application/json, text/event-stream', ...headers } });
    for (const [body, headers] of [
      [initialize, { 'content-type': 'application/json; charset=latin1' }],
      [await gzip(initialize), { 'content-type': 'application/json', 'content-encoding': 'gzip' }],
    ] as const) {
      const res = await mcp(body, headers);
      expect(res.status).toBe(415);
      expect(await res.json()).toMatchObject({ error: { code: 'unsupported_media_type', message: expect.stringMatching(/charset|Content-Encoding/), requestId: expect.any(String) } });
    }
    expect((await mcp(initialize, { 'content-type': 'application/json; charset=utf-8' })).status).toBe(200);

    const hook = await api('/v1/hooks/no-such-hook', { rawBody: await gzip('{"a":1}'), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    expect(hook.status).toBe(415);
    expect((await api('/openapi.json')).body.paths['/v1/hooks/{id}'].post.responses['415']).toBeDefined();
    expect((await api('/v1/hooks/no-such-hook', { rawBody: '{"a":1}', headers: { 'content-type': 'application/json' } })).status).toBe(401);
  });

  it('refuses bytes that are not UTF-8 in a body that declares no charset with 415, on every face, storing and counting nothing', async () => {
    // `{"a":"café"}` and an execution with it, the é in latin1 (0xe9): no charset is declared,
    // so it used to be decoded as UTF-8 and stored as U+FFFD.
    const latin1 = (json: string): Uint8Array => Uint8Array.from(json, (ch) => ch.charCodeAt(0));
    const { key, path, patch } = await agentContext();
    const res = await patch(latin1('{"a":"caf\u00e9"}'), { 'content-type': 'application/merge-patch+json' });
    expect(res.status).toBe(415);
    expect(res.body.error).toMatchObject({ code: 'unsupported_media_type', message: expect.stringMatching(/not valid UTF-8/) });
    expect((await api(path, { key })).body).toEqual({ version: 0, data: {} });

    // A key with a budget: its limits read the body before the routes do, and a refused
    // request is given back.
    const limited = await limitedKey({ concurrency: 10, budget: { requests: 10, period: 'day' } });
    const agent = await newAgent(limited.key);
    const execution = await api(`/v1/agents/${agent}/executions`, { key: limited.key, rawBody: latin1('{"intent":"t","input":"caf\u00e9"}'), headers: { 'content-type': 'application/json' } });
    expect(execution.status).toBe(415);
    expect(execution.body.error.code).toBe('unsupported_media_type');
    const call = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: agent, intent: 't', input: 'caf\u00e9' } } });
    const mcp = await SELF.fetch(`${BASE}/mcp`, { method: 'POST', body: latin1(call), headers: { authorization: `Bearer ${limited.key}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json' } });
    expect(mcp.status).toBe(415);
    expect(await mcp.json()).toMatchObject({ error: { code: 'unsupported_media_type' } });
    const send = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'SendMessage', params: { message: { messageId: 'm-latin1', role: 'ROLE_USER', parts: [{ text: 'caf\u00e9' }] } } });
    const a2a = await api(`/a2a/${agent}/`, { key: limited.key, rawBody: latin1(send), headers: { 'content-type': 'application/json', 'a2a-version': '1.0' } });
    expect(a2a.body).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32005, message: expect.stringMatching(/not valid UTF-8/) } });
    expect((await api(`/v1/agents/${agent}/executions`, { key: limited.key })).body.data).toEqual([]);
    expect(await settledRequests(limited.key)).toBe(0);

    // The same text in UTF-8 is read as before.
    const utf8 = await api(`/v1/agents/${agent}/executions`, { key: limited.key, rawBody: new TextEncoder().encode('{"intent":"t","input":"caf\u00e9"}'), headers: { 'content-type': 'application/json' } });
    expect(utf8.status).toBe(200);
    expect(utf8.body.input).toBe('caf\u00e9');
  });
});
