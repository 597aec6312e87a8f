import { describe, expect, it } from 'vitest';
import { api, mockUrl, newAgent, newTenant, uniqueId } from './support/api';

const nested = (depth: number): unknown => {
  let value: unknown = 'leaf';
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
};

let seq = 0;
const message = (fields: Record<string, unknown> = {}) => ({ messageId: `lim-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hello' }], ...fields });
const call = (key: string, agentId: string, method: string, params: unknown, version = '1.0') =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 7, method, params }, headers: { 'a2a-version': version } });
const send = (key: string, agentId: string, fields: Record<string, unknown>, method = 'SendMessage') => call(key, agentId, method, { message: message(fields) });
const tasksOf = async (key: string, agentId: string): Promise<string[]> =>
  (await call(key, agentId, 'ListTasks', { status: 'TASK_STATE_UNSPECIFIED' })).body.result.tasks.map((t: { id: string }) => t.id);

const INVALID_PARAMS = { code: -32602, data: [expect.objectContaining({ reason: 'INVALID_PARAMS', domain: 'a2a-protocol.org' })] };

describe('A2A messages have the limits of REST execution input', () => {
  it('refuses a message whose execution input exceeds 256 KiB with -32602, storing nothing; the text counts twice', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const huge = await send(key, id, { parts: [{ text: 'x'.repeat(300_000) }] });
    expect(huge.status).toBe(200);
    expect(huge.body).toMatchObject({ jsonrpc: '2.0', id: 7, error: INVALID_PARAMS });
    // 150,000 characters fit in 256 KiB once, not twice (input.message and input.parts).
    const doubled = await send(key, id, { parts: [{ text: 'y'.repeat(150_000) }] });
    expect(doubled.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/counts twice/) });
    expect(await tasksOf(key, id)).toEqual([]);
    expect((await api(`/v1/agents/${id}/status`, { key })).body.lastExecution).toBeNull();

    const fits = await send(key, id, { parts: [{ text: 'z'.repeat(100_000) }] });
    expect(fits.body.result.task.status.state).toBe('TASK_STATE_COMPLETED');
    // The REST view of an A2A execution keeps both forms of the text.
    const execution = await api(`/v1/agents/${id}/executions/${fits.body.result.task.id}`, { key });
    expect(execution.body.input.message).toHaveLength(100_000);
    expect(execution.body.input.parts).toEqual([{ text: 'z'.repeat(100_000) }]);
  });

  it('refuses data nested deeper than the execution input allows (32 levels), and far deeper without a 500', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    // input → parts → part → the data: 29 levels of data make an input 32 deep.
    expect((await send(key, id, { parts: [{ data: nested(29) }] })).body.result.task.status.state).toBe('TASK_STATE_COMPLETED');
    for (const depth of [30, 40, 5_000]) {
      const res = await send(key, id, { parts: [{ data: nested(depth) }] });
      expect(res.status).toBe(200);
      expect(res.body.error).toMatchObject(INVALID_PARAMS);
    }
    expect(await tasksOf(key, id)).toHaveLength(1);
  });

  it('bounds the tasks a message refers to and the extensions it names, before any is loaded', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const ids = (n: number) => Array.from({ length: n }, (_, i) => `ex_${i}`);
    const refused = [{ referenceTaskIds: ids(20_000) }, { referenceTaskIds: ids(17) }, { referenceTaskIds: ['x'.repeat(81)] }, { extensions: ids(17).map((i) => `https://ext.example/${i}`) }];
    for (const fields of refused) {
      const res = await send(key, id, fields);
      expect(res.body.error).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(/referenceTaskIds|extensions/) });
    }
    expect(await tasksOf(key, id)).toEqual([]);
    expect((await send(key, id, { referenceTaskIds: ids(16) })).body.result.task.status.state).toBe('TASK_STATE_COMPLETED');
  });

  it('bounds messageId and contextId at 256 characters and taskId at 80, as the API bounds ids', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    for (const fields of [{ messageId: 'm'.repeat(10_000) }, { contextId: 'c'.repeat(5_000) }, { taskId: 't'.repeat(81) }, { messageId: 'm'.repeat(257) }]) {
      const res = await send(key, id, fields);
      expect(res.body.error).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(/longer than/) });
    }
    expect(await tasksOf(key, id)).toEqual([]);
    const longest = await send(key, id, { messageId: 'm'.repeat(256), contextId: 'c'.repeat(256) });
    expect(longest.body.result.task.contextId).toBe('c'.repeat(256));
  });

  it('refuses an oversized follow-up before it joins the task\'s history, and an oversized stream before any event', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const asking = (await send(key, id, { messageId: `tck-input-required-${uniqueId()}` })).body.result.task;
    expect(asking.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    const before = (await call(key, id, 'GetTask', { id: asking.id })).body.result.history.length;
    const followUp = await send(key, id, { taskId: asking.id, contextId: asking.contextId, parts: [{ text: 'x'.repeat(300_000) }] });
    expect(followUp.body.error).toMatchObject(INVALID_PARAMS);
    const after = (await call(key, id, 'GetTask', { id: asking.id })).body.result;
    expect(after.history).toHaveLength(before);
    expect(after.status.state).toBe('TASK_STATE_INPUT_REQUIRED');

    const stream = await send(key, id, { parts: [{ text: 'x'.repeat(300_000) }] }, 'SendStreamingMessage');
    expect(stream.headers.get('content-type')).toMatch(/^application\/json/);
    expect(stream.body.error).toMatchObject(INVALID_PARAMS);
  });

  it('refuses the same in the v0.3 names, with v0.3\'s error (no ErrorInfo there)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const params = { message: { kind: 'message', messageId: 'm-03', role: 'user', parts: [{ kind: 'text', text: 'x'.repeat(300_000) }] } };
    const res = await api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 'v03', method: 'message/send', params } });
    expect(res.body).toMatchObject({ id: 'v03', error: { code: -32602 } });
    expect(res.body.error.data).toBeUndefined();
    expect(await tasksOf(key, id)).toEqual([]);
  });
});

describe('A2A push notification configs are bounded field by field', () => {
  /** A delivery URL on the mock receiver, padded to `length` characters. */
  const pushUrl = (length: number) => {
    const base = `${mockUrl('/a2a-push')}?pad=`;
    return base + 'p'.repeat(length - base.length);
  };
  const configsOf = async (key: string, agentId: string, taskId: string, version = '1.0') =>
    version === '1.0'
      ? (await call(key, agentId, 'ListTaskPushNotificationConfigs', { taskId })).body.result.configs ?? []
      : (await call(key, agentId, 'tasks/pushNotificationConfig/list', { id: taskId }, '0.3')).body.result;

  it('refuses CreateTaskPushNotificationConfig with a field over its bound with -32602 naming it, storing nothing; the bounds themselves fit', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const taskId: string = (await send(key, id, {})).body.result.task.id;
    const over: [string, Record<string, unknown>][] = [
      ['url', { url: pushUrl(2049) }],
      ['token', { token: 't'.repeat(1025) }],
      ['id', { id: 'i'.repeat(257) }],
      ['authentication.scheme', { authentication: { scheme: 'S'.repeat(65), credentials: 'c' } }],
      ['authentication.credentials', { authentication: { scheme: 'Bearer', credentials: 'c'.repeat(4097) } }],
      ['taskId', { taskId: 'x'.repeat(81) }],
      ['url', { url: 12 }],
    ];
    for (const [field, fields] of over) {
      const res = await call(key, id, 'CreateTaskPushNotificationConfig', { taskId, url: pushUrl(100), ...fields });
      expect(res.body.error, field).toMatchObject({ ...INVALID_PARAMS, message: expect.stringContaining(`${field}:`) });
    }
    expect(await configsOf(key, id, taskId)).toEqual([]);

    const longest = { taskId, id: 'i'.repeat(256), url: pushUrl(2048), token: 't'.repeat(1024), authentication: { scheme: 'S'.repeat(64), credentials: 'c'.repeat(4096) } };
    expect((await call(key, id, 'CreateTaskPushNotificationConfig', longest)).body.result).toMatchObject({ id: longest.id, url: longest.url });
    expect(await configsOf(key, id, taskId)).toEqual([expect.objectContaining({ id: longest.id, token: longest.token })]);
  });

  it('refuses a message whose push config is over a bound before the task exists, in SendMessage and SendStreamingMessage', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    for (const method of ['SendMessage', 'SendStreamingMessage']) {
      const params = { message: message(), configuration: { taskPushNotificationConfig: { url: pushUrl(100), token: 't'.repeat(5_000) } } };
      const res = await call(key, id, method, params);
      expect(res.headers.get('content-type'), method).toMatch(/^application\/json/);
      expect(res.body.error, method).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(/^configuration\.taskPushNotificationConfig\.token: is longer than 1024 characters/) });
    }
    expect(await tasksOf(key, id)).toEqual([]);
  });

  it('refuses a follow-up whose push config the task cannot take (a refused URL, an 11th config) before it joins the history, in both versions', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const waiting = (await send(key, id, { messageId: `tck-input-required-${uniqueId()}` })).body.result.task;
    expect(waiting.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    const historyOf = async () => (await call(key, id, 'GetTask', { id: waiting.id })).body.result.history.map((m: { messageId: string }) => m.messageId);
    const before = await historyOf();
    const followUp = (method: string, config: Record<string, unknown>, version = '1.0') => version === '1.0'
      ? call(key, id, method, { message: message({ messageId: `tck-complete-task-${uniqueId()}`, taskId: waiting.id }), configuration: { taskPushNotificationConfig: config } })
      : call(key, id, method, { message: { kind: 'message', messageId: `tck-complete-task-${uniqueId()}`, taskId: waiting.id, role: 'user', parts: [{ kind: 'text', text: 'hi' }] }, configuration: { pushNotificationConfig: config } }, '0.3');

    for (const [method, version] of [['SendMessage', '1.0'], ['SendStreamingMessage', '1.0'], ['message/send', '0.3'], ['message/stream', '0.3']] as const) {
      const res = await followUp(method, { url: 'ftp://hooks.example/a2a' }, version);
      expect(res.body.error, method).toMatchObject({ code: -32602, message: expect.stringMatching(/push notification URL refused/) });
    }
    for (let i = 0; i < 10; i++) expect((await call(key, id, 'CreateTaskPushNotificationConfig', { taskId: waiting.id, url: pushUrl(100) })).body.result).toBeDefined();
    const eleventh = await followUp('SendMessage', { url: pushUrl(100) });
    expect(eleventh.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/at most 10 push notification configs/) });

    expect(await historyOf()).toEqual(before);
    const task = (await call(key, id, 'GetTask', { id: waiting.id })).body.result;
    expect(task.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    expect(await configsOf(key, id, waiting.id)).toHaveLength(10);
  });

  it('refuses a token, scheme or credentials with a control character (no header carries one; its pushes were never sent), in both versions', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const taskId: string = (await send(key, id, {})).body.result.task.id;
    const bad: [string, Record<string, unknown>][] = [
      ['token', { token: 'tok\r\nX-Injected: 1' }],
      ['token', { token: 'tok\u0000' }],
      ['authentication.scheme', { authentication: { scheme: 'Bearer\n', credentials: 'c' } }],
      ['authentication.credentials', { authentication: { scheme: 'Bearer', credentials: 'abc\r\nX-Injected: 1' } }],
      ['authentication.credentials', { authentication: { scheme: 'Bearer', credentials: 'a\tb' } }],
    ];
    for (const [field, fields] of bad) {
      const res = await call(key, id, 'CreateTaskPushNotificationConfig', { taskId, url: pushUrl(100), ...fields });
      expect(res.body.error, JSON.stringify(fields)).toMatchObject({ ...INVALID_PARAMS, message: expect.stringContaining(`${field}: has a control character`) });
    }
    const withMessage = await call(key, id, 'SendMessage', { message: message(), configuration: { taskPushNotificationConfig: { url: pushUrl(100), token: 'a\nb' } } });
    expect(withMessage.body.error).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(/^configuration\.taskPushNotificationConfig\.token: has a control character/) });
    const legacy = await call(key, id, 'tasks/pushNotificationConfig/set', { taskId, pushNotificationConfig: { url: pushUrl(100), authentication: { schemes: ['Bearer\r'], credentials: 'c' } } }, '0.3');
    expect(legacy.body.error).toMatchObject({ code: -32602, message: expect.stringContaining('pushNotificationConfig.authentication.schemes.0: has a control character') });
    expect(await configsOf(key, id, taskId)).toEqual([]);
    expect(await tasksOf(key, id)).toEqual([taskId]);

    // What a header carries is taken: printable characters, spaces inside, non-ASCII letters.
    const fine = await call(key, id, 'CreateTaskPushNotificationConfig', { taskId, url: pushUrl(100), token: 'tok en-ü', authentication: { scheme: 'Bearer', credentials: 'a b=c' } });
    expect(fine.body.result).toMatchObject({ token: 'tok en-ü' });
  });

  it('bounds the v0.3 names the same, and the number of v0.3 schemes (8)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const taskId: string = (await send(key, id, {})).body.result.task.id;
    const v03 = (method: string, params: unknown) => call(key, id, method, params, '0.3');
    const schemes = (n: number) => ({ url: pushUrl(100), authentication: { schemes: Array.from({ length: n }, (_, i) => `S${i}`), credentials: 'c' } });

    const tooMany = await v03('tasks/pushNotificationConfig/set', { taskId, pushNotificationConfig: schemes(9) });
    expect(tooMany.body.error).toEqual({ code: -32602, message: expect.stringContaining('pushNotificationConfig.authentication.schemes: names more than 8 schemes') });
    const longUrl = await v03('tasks/pushNotificationConfig/set', { taskId, pushNotificationConfig: { url: pushUrl(2049) } });
    expect(longUrl.body.error).toMatchObject({ code: -32602, message: expect.stringContaining('pushNotificationConfig.url:') });
    expect(await configsOf(key, id, taskId, '0.3')).toEqual([]);
    expect((await v03('tasks/pushNotificationConfig/set', { taskId, pushNotificationConfig: schemes(8) })).body.result).toBeDefined();
    expect(await configsOf(key, id, taskId, '0.3')).toHaveLength(1);

    const legacyMessage = { kind: 'message', messageId: `m-${uniqueId()}`, role: 'user', parts: [{ kind: 'text', text: 'hi' }] };
    for (const method of ['message/send', 'message/stream']) {
      const res = await v03(method, { message: legacyMessage, configuration: { pushNotificationConfig: { url: pushUrl(100), authentication: { schemes: ['Bearer'], credentials: 'c'.repeat(4097) } } } });
      expect(res.body.error, method).toEqual({ code: -32602, message: expect.stringContaining('configuration.pushNotificationConfig.authentication.credentials: is longer than 4096 characters') });
    }
    expect(await tasksOf(key, id)).toEqual([taskId]);
  });
});
