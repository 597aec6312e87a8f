import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant, uniqueId } from './support/api';

const ERROR_INFO = (reason: string) => [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason, domain: 'a2a-protocol.org' }];

describe('A2A errors, as docs/A2A.md lists them', () => {
  it('in 1.0 the A2A errors and -32602 carry ErrorInfo; the JSON-RPC protocol errors and every v0.3 error carry none', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const v1 = (body: unknown, version = '1.0') => api(`/a2a/${id}/`, { key, body, headers: { 'a2a-version': version } });
    const rpc = (method: string, params: unknown, version = '1.0') => v1({ jsonrpc: '2.0', id: 1, method, params }, version);

    const parse = await api(`/a2a/${id}/`, { key, rawBody: '{nope', headers: { 'content-type': 'application/json', 'a2a-version': '1.0' } });
    expect(parse.body.error).toEqual({ code: -32700, message: expect.any(String) });
    expect((await v1({ jsonrpc: '1.0', method: 'GetTask' })).body.error).toEqual({ code: -32600, message: expect.any(String) });
    expect((await rpc('NoSuchMethod', {})).body.error).toEqual({ code: -32601, message: expect.any(String) });
    // Params by position make a valid JSON-RPC request (it was -32600) whose params no A2A method takes.
    for (const version of ['1.0', '0.3']) {
      const positional = await rpc(version === '1.0' ? 'GetTask' : 'tasks/get', ['ex_unknown'], version);
      expect(positional.body, version).toMatchObject({ id: 1, error: { code: -32602, message: expect.stringMatching(/^params: .*by name/) } });
    }
    expect((await rpc('GetTask', ['ex_unknown'])).body.error.data).toEqual(ERROR_INFO('INVALID_PARAMS'));
    // An unknown method is -32601 whatever its params (JSON-RPC), by name or by position, as the SDK words it in each version.
    for (const [version, method] of [['1.0', 'NoSuchMethod'], ['0.3', 'no/such'], ['0.3', 'ListTasks'], ['1.0', 'tasks/get']] as const) {
      const byName = (await rpc(method, {}, version)).body;
      const byPosition = (await rpc(method, ['ex_unknown'], version)).body;
      expect(byPosition, `${version} ${method}`).toEqual({ jsonrpc: '2.0', id: 1, error: { code: -32601, message: expect.any(String) } });
      expect(byPosition, `${version} ${method}`).toEqual(byName);
      expect(byName.error.message).toBe(version === '0.3' ? `Method not found: ${method}` : 'Invalid method.');
    }
    // Any string is a method name: an empty or a long one is no A2A method (it was -32600).
    for (const method of ['', 'x'.repeat(200)]) {
      expect((await rpc(method, {})).body, method).toEqual({ jsonrpc: '2.0', id: 1, error: { code: -32601, message: 'Invalid method.' } });
      expect((await rpc(method, {}, '0.3')).body.error, method).toEqual({ code: -32601, message: `Method not found: ${method.slice(0, 128)}` });
    }

    expect((await rpc('ListTasks', { pageToken: 'not-a-token' })).body.error).toMatchObject({ code: -32602, data: ERROR_INFO('INVALID_PARAMS') });
    expect((await rpc('GetTask', { id: 'ex_unknown' })).body.error).toMatchObject({ code: -32001, data: ERROR_INFO('TASK_NOT_FOUND') });
    const done = (await rpc('SendMessage', { message: { messageId: `tck-complete-task-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } })).body.result.task;
    expect((await rpc('CancelTask', { id: done.id })).body.error).toMatchObject({ code: -32002, data: ERROR_INFO('TASK_NOT_CANCELABLE') });
    expect((await rpc('SubscribeToTask', { id: done.id })).body.error).toMatchObject({ code: -32004, data: ERROR_INFO('UNSUPPORTED_OPERATION') });
    expect((await rpc('GetTask', { id: done.id }, '7.0')).body.error).toMatchObject({ code: -32009, data: ERROR_INFO('VERSION_NOT_SUPPORTED') });

    // JSON-RPC lets a call leave out params: a ListTasks without them lists.
    const listed = await v1({ jsonrpc: '2.0', id: 2, method: 'ListTasks' });
    expect(listed.body.result.tasks.map((t: { id: string }) => t.id)).toContain(done.id);

    const legacy = await rpc('tasks/get', { id: 'ex_unknown' }, '0.3');
    expect(legacy.body.error).toEqual({ code: -32001, message: expect.any(String) });
  });

  it('takes the version from the A2A-Version request parameter when no header is sent (A2A §3.6.1), for the endpoint and the card', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { a2a: { publicCard: true } });
    const list = { jsonrpc: '2.0', id: 1, method: 'ListTasks', params: {} };
    for (const query of ['?A2A-Version=1.0', '?a2a-version=1.0']) {
      for (const path of [`/a2a/${id}/`, `/a2a/${id}`]) {
        const res = await api(`${path}${query}`, { key, body: list });
        expect(res.status, path + query).toBe(200);
        expect(res.body, path + query).toEqual({ jsonrpc: '2.0', id: 1, result: expect.objectContaining({ tasks: [] }) });
      }
    }
    const unsupported = await api(`/a2a/${id}/?A2A-Version=7.0`, { key, body: list });
    expect(unsupported.body.error).toMatchObject({ code: -32009, message: expect.stringMatching(/^A2A-Version 7\.0 is not supported/), data: ERROR_INFO('VERSION_NOT_SUPPORTED') });
    // The header wins when both are sent; without either it is 0.3, which has no ListTasks.
    expect((await api(`/a2a/${id}/?A2A-Version=7.0`, { key, body: list, headers: { 'a2a-version': '1.0' } })).body.result.tasks).toEqual([]);
    expect((await api(`/a2a/${id}/`, { key, body: list })).body.error.code).toBe(-32601);
    const legacy = await api(`/a2a/${id}/?A2A-Version=0.3`, { key, body: { jsonrpc: '2.0', id: 2, method: 'tasks/get', params: { id: 'ex_x' } } });
    expect(legacy.body.error).toEqual({ code: -32001, message: expect.any(String) });
    // The card: the v1.0 card alone with the parameter, v0.3's fields too without it.
    const card = await api(`/a2a/${id}/.well-known/agent-card.json?A2A-Version=1.0`);
    expect(card.status).toBe(200);
    expect(card.body.supportedInterfaces).toHaveLength(1);
    expect(card.body.url).toBeUndefined();
    expect((await api(`/a2a/${id}/.well-known/agent-card.json`)).body.url).toMatch(/\/a2a\//);
  });

  it('names a finished task\'s state in words when it refuses a message to it or a subscription, in both versions', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const rpc = (method: string, params: unknown, version = '1.0') => api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers: { 'a2a-version': version } });
    const done = (await rpc('SendMessage', { message: { messageId: `tck-complete-task-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } })).body.result.task;
    const rejected = (await rpc('SendMessage', { message: { messageId: `tck-reject-task-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } })).body.result.task;
    expect(rejected.status.state).toBe('TASK_STATE_REJECTED');

    const followUp = (taskId: string) => ({ message: { messageId: `m-${uniqueId()}`, taskId, role: 'ROLE_USER', parts: [{ text: 'more' }] } });
    for (const method of ['SendMessage', 'SendStreamingMessage']) {
      expect((await rpc(method, followUp(done.id))).body.error).toMatchObject({ code: -32004, message: expect.stringMatching(/is TASK_STATE_COMPLETED: a finished task takes no more messages/), data: ERROR_INFO('UNSUPPORTED_OPERATION') });
    }
    expect((await rpc('SendMessage', followUp(rejected.id))).body.error.message).toMatch(/is TASK_STATE_REJECTED/);
    expect((await rpc('SubscribeToTask', { id: done.id })).body.error).toMatchObject({ code: -32004, message: expect.stringMatching(/is TASK_STATE_COMPLETED: a finished task cannot be subscribed to/) });
    const legacy = await rpc('message/send', { message: { kind: 'message', messageId: `m-${uniqueId()}`, taskId: done.id, role: 'user', parts: [{ kind: 'text', text: 'more' }] } }, '0.3');
    expect(legacy.body.error).toEqual({ code: -32004, message: expect.stringMatching(/is TASK_STATE_COMPLETED/) });
    expect((await rpc('tasks/resubscribe', { id: rejected.id }, '0.3')).body.error).toEqual({ code: -32004, message: expect.stringMatching(/is TASK_STATE_REJECTED/) });
  });

  it('answers an id it cannot echo exactly (past 2^53, fractional, an object) with -32600 and id null, naming the member', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const raw = (text: string) => api(`/a2a/${id}/`, { key, rawBody: text, headers: { 'content-type': 'application/json', 'a2a-version': '1.0' } });
    for (const bad of ['123456789012345678901234567890', '9007199254740993', '1.5', '{"a":1}', 'true', `"${'x'.repeat(257)}"`]) {
      const res = await raw(`{"jsonrpc":"2.0","id":${bad},"method":"GetTask","params":{"id":"ex_x"}}`);
      expect(res.status, bad).toBe(200);
      expect(res.body, bad).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringMatching(/^Invalid Request: id: /) } });
    }
    // The largest exact integer, and the other members' refusals, still echo the id.
    const largest = await raw('{"jsonrpc":"2.0","id":9007199254740991,"method":"GetTask","params":{"id":"ex_x"}}');
    expect(largest.body).toMatchObject({ id: 9007199254740991, error: { code: -32001 } });
    const badMethod = await raw('{"jsonrpc":"2.0","id":"a-1","method":5}');
    expect(badMethod.body).toEqual({ jsonrpc: '2.0', id: 'a-1', error: { code: -32600, message: expect.stringMatching(/^Invalid Request: method: /) } });
  });

  it('answers a JSON-RPC batch (a JSON array) with one -32600 that says batches are not served, and runs none of it', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const send = { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: `batch-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } } };
    for (const [body, version] of [[[send], '1.0'], [[send, { jsonrpc: '2.0', id: 2, method: 'ListTasks' }], '1.0'], [[], '1.0'], [[{ jsonrpc: '2.0', id: 3, method: 'tasks/get', params: { id: 'x' } }], '0.3']] as const) {
      const res = await api(`/a2a/${id}/`, { key, body, headers: { 'a2a-version': version } });
      expect(res.status).toBe(200);
      expect(res.body, JSON.stringify(body)).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32600, message: expect.stringMatching(/^Invalid Request: a batch .*send one request per POST/) } });
    }
    expect((await api(`/v1/agents/${id}/executions`, { key })).body.data).toEqual([]);
  });

  it('answers a notification (a request without id) with 204 and no body, and runs nothing, in both versions', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const notify = (body: Record<string, unknown>, version: string) =>
      api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', ...body }, headers: { 'a2a-version': version } });
    const v1 = { message: { messageId: `note-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } };
    const v03 = { message: { kind: 'message', messageId: `note-${uniqueId()}`, role: 'user', parts: [{ kind: 'text', text: 'hi' }] } };
    for (const [method, params, version] of [
      ['SendMessage', v1, '1.0'], ['SendStreamingMessage', v1, '1.0'], ['message/send', v03, '0.3'], ['message/stream', v03, '0.3'],
      ['GetTask', { id: 'ex_x' }, '1.0'], ['ListTasks', { status: 'BOGUS' }, '1.0'], ['NoSuchMethod', {}, '1.0'], ['GetTask', {}, '9.9'],
    ] as const) {
      const res = await notify({ method, params }, version);
      expect(res.status, `${method} ${version}`).toBe(204);
      expect(res.body, `${method} ${version}`).toBeNull();
    }
    expect((await api(`/v1/agents/${id}/executions`, { key })).body.data).toEqual([]);
    // An id of null is a request (JSON-RPC discourages it), answered as one.
    const nullId = await notify({ id: null, method: 'ListTasks', params: {} }, '1.0');
    expect(nullId.body).toMatchObject({ id: null, result: { tasks: [] } });
  });

  it('answers a bad agent id with the 400 invalid_request envelope, for the endpoint and the card', async () => {
    const { key } = await newTenant();
    for (const path of ['/a2a/bad.id/', '/a2a/bad.id/.well-known/agent-card.json']) {
      const res = await api(path, { key, ...(path.endsWith('/') && { body: { jsonrpc: '2.0', id: 1, method: 'GetTask', params: { id: 'x' } } }) });
      expect(res.status, path).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', details: [expect.objectContaining({ path: ['id'] })] });
    }
  });

  it('documents the endpoint\'s body (both media types, the envelope\'s schema) and its non-JSON-RPC answers in /openapi.json', async () => {
    const doc = (await api('/openapi.json')).body;
    const endpoint = doc.paths['/a2a/{id}/'].post;
    for (const type of ['application/json', 'application/a2a+json']) {
      expect(endpoint.requestBody.content[type].schema).toEqual({ $ref: '#/components/schemas/A2AJsonRpcRequest' });
    }
    expect(doc.components.schemas.A2AJsonRpcRequest).toMatchObject({ type: 'object', required: ['jsonrpc', 'method'] });
    expect(Object.keys(endpoint.responses)).toEqual(expect.arrayContaining(['200', '400', '401', '404', '413', '429', '431', '503']));
    expect(Object.keys(doc.paths['/a2a/{id}/.well-known/agent-card.json'].get.responses)).toEqual(expect.arrayContaining(['200', '304', '400', '401', '404', '503']));
    // Documented, not validated: a body that is not JSON-RPC is still answered in JSON-RPC.
    const { key } = await newTenant();
    const id = await newAgent(key);
    const notRpc = await api(`/a2a/${id}/`, { key, body: { hello: 'world' } });
    expect(notRpc.status).toBe(200);
    expect(notRpc.body.error.code).toBe(-32600);
  });
});
