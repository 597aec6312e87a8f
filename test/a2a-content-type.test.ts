import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant } from './support/api';

const CONTENT_TYPE_NOT_SUPPORTED = [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'CONTENT_TYPE_NOT_SUPPORTED', domain: 'a2a-protocol.org' }];

const gzip = async (text: string): Promise<Uint8Array> =>
  new Uint8Array(await new Response(new Blob([text]).stream().pipeThrough(new CompressionStream('gzip'))).arrayBuffer());

/**
 * A body the endpoint cannot read as sent (not application/json or application/a2a+json, a
 * charset other than UTF-8, a content coding) is A2A's ContentTypeNotSupportedError, -32005, in
 * JSON-RPC and HTTP 200 as every JSON-RPC error here (the SDK's own JSON-RPC server answers
 * so, and the a2a-tck's JSON-RPC client reads errors only from a 2xx). It used to be HTTP 415
 * with the gateway's envelope, which a JSON-RPC client cannot read.
 */
describe('A2A: a request body in a content type the endpoint does not read', () => {
  it('answers -32005 with ErrorInfo in 1.0, the request id when the body is readable JSON, else id null', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const request = JSON.stringify({ jsonrpc: '2.0', id: 'r-1', method: 'GetTask', params: { id: 'ex_none' } });
    const post = (rawBody: BodyInit, headers: Record<string, string>) => api(`/a2a/${id}/`, { key, rawBody, headers: { 'a2a-version': '1.0', ...headers } });

    const plain = await post(request, { 'content-type': 'text/plain' });
    expect(plain.status).toBe(200);
    expect(plain.headers.get('content-type')).toMatch(/^application\/json/);
    expect(plain.body).toEqual({ jsonrpc: '2.0', id: 'r-1', error: { code: -32005, message: expect.stringMatching(/text\/plain/), data: CONTENT_TYPE_NOT_SUPPORTED } });

    // Bytes, so that fetch adds no Content-Type of its own: a body sent without one.
    const refusals: [BodyInit, Record<string, string>, RegExp, string | null][] = [
      [new TextEncoder().encode(request), {}, /Content-Type/, 'r-1'],
      ['not json', { 'content-type': 'application/x-www-form-urlencoded' }, /x-www-form-urlencoded/, null],
      [request, { 'content-type': 'application/json; charset=iso-8859-1' }, /"iso-8859-1"/, null],
      [await gzip(request), { 'content-type': 'application/json', 'content-encoding': 'gzip' }, /"gzip"/, null],
    ];
    for (const [body, headers, message, requestId] of refusals) {
      const res = await post(body, headers);
      expect(res.status, JSON.stringify(headers)).toBe(200);
      expect(res.body, JSON.stringify(headers)).toEqual({ jsonrpc: '2.0', id: requestId, error: { code: -32005, message: expect.stringMatching(message), data: CONTENT_TYPE_NOT_SUPPORTED } });
    }
    // UTF-8 said out loud, and A2A's own media type, are read.
    for (const type of ['application/json; charset=utf-8', 'application/a2a+json']) {
      expect((await post(request, { 'content-type': type })).body.error, type).toMatchObject({ code: -32001 });
    }
  });

  it('answers -32005 without data in v0.3, and with the 1.0 shape when A2A-Version is one it does not serve', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const request = JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tasks/get', params: { id: 'ex_none' } });
    const legacy = await api(`/a2a/${id}/`, { key, rawBody: request, headers: { 'content-type': 'text/plain' } });
    expect(legacy.status).toBe(200);
    expect(legacy.body).toEqual({ jsonrpc: '2.0', id: 7, error: { code: -32005, message: expect.any(String) } });
    const unknown = await api(`/a2a/${id}/`, { key, rawBody: request, headers: { 'content-type': 'text/plain', 'a2a-version': '9.9' } });
    expect(unknown.body.error).toEqual({ code: -32005, message: expect.any(String), data: CONTENT_TYPE_NOT_SUPPORTED });
  });

  it('documents no 415 for the endpoint: the refusal is a JSON-RPC answer', async () => {
    const doc = (await api('/openapi.json')).body;
    for (const path of ['/a2a/{id}/', '/a2a/{id}']) {
      const { responses } = doc.paths[path].post;
      expect(responses['415'], path).toBeUndefined();
      expect(responses['200'].description, path).toMatch(/-32005/);
    }
  });
});
