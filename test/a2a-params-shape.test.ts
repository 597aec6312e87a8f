import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant } from './support/api';

let seq = 0;
const call = (key: string, agentId: string, method: string, params: unknown, version = '1.0') =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 3, method, params }, headers: { 'a2a-version': version } });
const listed = async (key: string, agentId: string): Promise<number> =>
  (await call(key, agentId, 'ListTasks', {})).body.result.tasks.length;

const INVALID_PARAMS = { code: -32602, data: [expect.objectContaining({ reason: 'INVALID_PARAMS' })] };

describe('A2A params are taken as sent, or refused with -32602 naming the field', () => {
  it('refuses, in 1.0, parts and roles the SDK would coerce, store garbled, or fail on with -32603', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const message = (fields: Record<string, unknown>) => ({ messageId: `shape-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hi' }], ...fields });
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ parts: [null] }, /^message\.parts\.0: .*object/],
      [{ parts: ['hello'] }, /^message\.parts\.0: .*object/],
      [{ parts: [] }, /^message\.parts: is empty/],
      [{ parts: { text: 'hi' } }, /^message\.parts: .*array/],
      [{ parts: null }, /^message\.parts: .*array/],
      [{ parts: [{}] }, /^message\.parts\.0: has no content/],
      [{ parts: [{ data: null }] }, /^message\.parts\.0: has no content/],
      [{ parts: [{ text: 'a', data: { b: 1 } }] }, /^message\.parts\.0: sets text and data/],
      [{ parts: [{ text: 5 }] }, /^message\.parts\.0\.text: /],
      [{ parts: [{ raw: '!!!not base64' }] }, /^message\.parts\.0\.raw: is not base64/],
      [{ parts: [{ url: 'https://x.example/a.png', mediaType: 7 }] }, /^message\.parts\.0\.mediaType: /],
      [{ role: 'user' }, /^message\.role: is not ROLE_USER or ROLE_AGENT/],
      [{ role: undefined }, /^message\.role: /],
      [{ messageId: 42 }, /^message\.messageId: /],
      [{ referenceTaskIds: 'ex_1' }, /^message\.referenceTaskIds: /],
    ];
    for (const [fields, reason] of refused) {
      for (const method of ['SendMessage', 'SendStreamingMessage']) {
        const res = await call(key, id, method, { message: message(fields) });
        expect(res.status, JSON.stringify(fields)).toBe(200);
        expect(res.headers.get('content-type'), JSON.stringify(fields)).toMatch(/application\/json/);
        expect(res.body.error, `${method} ${JSON.stringify(fields)}`).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(reason) });
      }
    }
    const config = await call(key, id, 'SendMessage', { message: message({}), configuration: { returnImmediately: 'yes' } });
    expect(config.body.error).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(/^configuration\.returnImmediately: /) });
    expect(await listed(key, id)).toBe(0);

    // Each kind of part, as sent, is kept as sent: in the task's history and the execution's input.
    const parts = [
      { text: 'hello' },
      { data: { order: 123 } },
      { data: [1, 2] },
      { url: 'https://files.example/a.pdf', mediaType: 'application/pdf', filename: 'a.pdf' },
      { raw: 'aGVsbG8=', mediaType: 'text/plain' },
      { raw: 'aGVsbG8', metadata: { note: 'unpadded' } },
    ];
    const sent = await call(key, id, 'SendMessage', { message: message({ parts }) });
    const task = sent.body.result.task;
    expect(task.history[0].parts).toEqual([...parts.slice(0, 5), { raw: 'aGVsbG8=', metadata: { note: 'unpadded' } }]);
    expect(task.history[0].role).toBe('ROLE_USER');
    const execution = await api(`/v1/agents/${id}/executions/${task.id}`, { key });
    expect(execution.body.input.parts).toEqual(task.history[0].parts);
  });

  it('refuses, in 0.3, a message without parts, text that is not a string and bytes that are not base64', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const message = (parts: unknown) => ({ kind: 'message', messageId: `shape-${++seq}`, role: 'user', parts });
    const refused: [unknown, RegExp][] = [
      [[], /^message\.parts: is empty/],
      [[{ kind: 'text', text: 5 }], /^message\.parts\.0\.text: is not a string/],
      [[{ kind: 'file', file: { bytes: '!!!' } }], /^message\.parts\.0\.file\.bytes: is not base64/],
    ];
    for (const [parts, reason] of refused) {
      for (const method of ['message/send', 'message/stream']) {
        const res = await call(key, id, method, { message: message(parts) }, '0.3');
        expect(res.body.error, `${method} ${JSON.stringify(parts)}`).toEqual({ code: -32602, message: expect.stringMatching(reason) });
      }
    }
    expect(await listed(key, id)).toBe(0);
    const ok = await call(key, id, 'message/send', { message: message([{ kind: 'text', text: 'hi' }, { kind: 'file', file: { bytes: 'aGVsbG8=', name: 'h.txt' } }]) }, '0.3');
    expect(ok.body.result.history[0].parts).toEqual([{ kind: 'text', text: 'hi' }, { kind: 'file', file: { bytes: 'aGVsbG8=', name: 'h.txt' } }]);
  });

  it('refuses, in 0.3, ids and lists that are not strings (the SDK failed on them with -32603)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const sent = await call(key, id, 'message/send', { message: { kind: 'message', messageId: `shape-${++seq}`, role: 'user', parts: [{ kind: 'text', text: 'hi' }] } }, '0.3');
    const taskId: string = sent.body.result.id;
    const message = (fields: Record<string, unknown>) => ({ kind: 'message', messageId: `shape-${++seq}`, role: 'user', parts: [{ kind: 'text', text: 'hi' }], ...fields });
    const refused: [string, Record<string, unknown>, RegExp][] = [
      ['tasks/get', { id: 5 }, /^id: /],
      ['tasks/get', { id: { a: 1 } }, /^id: /],
      ['tasks/cancel', { id: [taskId] }, /^id: /],
      ['tasks/resubscribe', { id: true }, /^id: /],
      ['tasks/pushNotificationConfig/list', { id: 5 }, /^id: /],
      ['tasks/pushNotificationConfig/get', { id: {}, pushNotificationConfigId: 'x' }, /^id: /],
      ['tasks/pushNotificationConfig/delete', { id: taskId, pushNotificationConfigId: 7 }, /^pushNotificationConfigId: /],
      ['tasks/pushNotificationConfig/set', { taskId, pushNotificationConfig: null }, /^pushNotificationConfig: /],
      ['message/send', { message: message({ taskId: 5 }) }, /^message\.taskId: /],
      ['message/send', { message: message({ referenceTaskIds: 'ex_1' }) }, /^message\.referenceTaskIds: /],
      ['message/stream', { message: message({ contextId: {} }) }, /^message\.contextId: /],
      ['message/send', { message: message({}), configuration: { acceptedOutputModes: 'text/plain' } }, /^configuration\.acceptedOutputModes: /],
    ];
    for (const [method, params, reason] of refused) {
      const res = await call(key, id, method, params, '0.3');
      expect(res.body.error, `${method} ${JSON.stringify(params)}`).toEqual({ code: -32602, message: expect.stringMatching(reason) });
    }
    expect((await call(key, id, 'tasks/get', { id: taskId }, '0.3')).body.result.id).toBe(taskId);
  });

  it('refuses, in 1.0, task and config ids that are not strings (an array id named the task it held: ["ex_…"] cancelled ex_…)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const sent = await call(key, id, 'SendMessage', { message: { messageId: `tck-input-required-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } });
    const taskId: string = sent.body.result.task.id;
    expect(sent.body.result.task.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    await call(key, id, 'CreateTaskPushNotificationConfig', { taskId, id: 'cfg', url: 'https://hooks.example/a2a' });
    const refused: [string, Record<string, unknown>, RegExp][] = [
      ['GetTask', { id: 5 }, /^id: /],
      ['GetTask', { id: true }, /^id: /],
      ['CancelTask', { id: [taskId] }, /^id: /],
      ['SubscribeToTask', { id: { a: 1 } }, /^id: /],
      ['ListTaskPushNotificationConfigs', { taskId: 5 }, /^taskId: /],
      ['ListTaskPushNotificationConfigs', { task_id: [taskId] }, /^task_id: /],
      ['GetTaskPushNotificationConfig', { taskId: [taskId], id: 'cfg' }, /^taskId: /],
      ['GetTaskPushNotificationConfig', { taskId, id: ['cfg'] }, /^id: /],
      ['DeleteTaskPushNotificationConfig', { taskId: [taskId], id: 'cfg' }, /^taskId: /],
    ];
    for (const [method, params, reason] of refused) {
      const res = await call(key, id, method, params);
      expect(res.body.error, `${method} ${JSON.stringify(params)}`).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(reason) });
    }
    // Nothing was cancelled or deleted; the ids as strings still work.
    const task = (await call(key, id, 'GetTask', { id: taskId })).body.result;
    expect(task.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    expect((await call(key, id, 'GetTaskPushNotificationConfig', { taskId, id: 'cfg' })).body.result).toMatchObject({ id: 'cfg' });
  });

  it('refuses a historyLength that is not a non-negative integer, in both versions, before anything is stored', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const sent = await call(key, id, 'SendMessage', { message: { messageId: `hist-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } });
    const taskId: string = sent.body.result.task.id;
    const v1 = { messageId: `hist-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] };
    const v03 = () => ({ kind: 'message', messageId: `hist-${++seq}`, role: 'user', parts: [{ kind: 'text', text: 'hi' }] });
    for (const historyLength of [-1, 1.5, '2']) {
      const refused: [string, Record<string, unknown>, string, RegExp][] = [
        ['GetTask', { id: taskId, historyLength }, '1.0', /^historyLength: is not a non-negative integer/],
        ['ListTasks', { historyLength }, '1.0', /^historyLength: is not a non-negative integer/],
        ['SendMessage', { message: v1, configuration: { historyLength } }, '1.0', /^configuration\.historyLength: is not a non-negative integer/],
        ['SendStreamingMessage', { message: v1, configuration: { history_length: historyLength } }, '1.0', /^configuration\.history_length: is not a non-negative integer/],
        ['tasks/get', { id: taskId, historyLength }, '0.3', /^historyLength: is not a non-negative integer/],
        ['message/send', { message: v03(), configuration: { historyLength } }, '0.3', /^configuration\.historyLength: is not a non-negative integer/],
      ];
      for (const [method, params, version, reason] of refused) {
        const res = await call(key, id, method, params, version);
        const error = version === '1.0' ? INVALID_PARAMS : { code: -32602 };
        expect(res.body.error, `${method} ${JSON.stringify(params)}`).toMatchObject({ ...error, message: expect.stringMatching(reason) });
      }
    }
    expect(await listed(key, id)).toBe(1);
    const got = await call(key, id, 'GetTask', { id: taskId, historyLength: 0 });
    expect(got.body.result.id).toBe(taskId);
    expect(got.body.result).not.toHaveProperty('history');
  });

  it('refuses a ListTasks includeArtifacts that is not a boolean (it counted as true)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await call(key, id, 'SendMessage', { message: { messageId: `art-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } });
    for (const includeArtifacts of ['yes', 'false', 1, {}]) {
      const res = await call(key, id, 'ListTasks', { includeArtifacts });
      expect(res.body.error, JSON.stringify(includeArtifacts)).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(/^includeArtifacts: is not a boolean/) });
    }
    const [withArtifacts] = (await call(key, id, 'ListTasks', { includeArtifacts: true })).body.result.tasks;
    expect(withArtifacts.artifacts.length).toBeGreaterThan(0);
    const [without] = (await call(key, id, 'ListTasks', { includeArtifacts: false })).body.result.tasks;
    expect(without.artifacts ?? []).toEqual([]);
  });

  it('refuses ListTasks filters of the wrong type (a filter used to be dropped or read as another value)', async () => {
    // statusTimestampAfter: 5 was ignored, so every task was listed as if unfiltered; a
    // contextId of 5 or {} was read as the string "5" or "[object Object]" and listed nothing.
    const { key } = await newTenant();
    const id = await newAgent(key);
    await call(key, id, 'SendMessage', { message: { messageId: `lf-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } });
    const refused: [Record<string, unknown>, RegExp][] = [
      [{ statusTimestampAfter: 5 }, /^statusTimestampAfter: /],
      [{ status_timestamp_after: true }, /^status_timestamp_after: /],
      [{ contextId: 5 }, /^contextId: /],
      [{ context_id: { a: 1 } }, /^context_id: /],
      [{ pageToken: 5 }, /^pageToken: /],
    ];
    for (const [params, message] of refused) {
      const res = await call(key, id, 'ListTasks', params);
      expect(res.body.error, JSON.stringify(params)).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(message) });
    }
    expect(await listed(key, id)).toBe(1);
  });

  it('refuses a push config delete that names no config, in both versions (it answered success and deleted nothing)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const sent = await call(key, id, 'SendMessage', { message: { messageId: `pd-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } });
    const taskId: string = sent.body.result.task.id;
    await call(key, id, 'CreateTaskPushNotificationConfig', { taskId, id: 'keep', url: 'https://hooks.example/a2a' });
    const v1 = await call(key, id, 'DeleteTaskPushNotificationConfig', { taskId });
    expect(v1.body.error).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(/^id: /) });
    const v03 = await call(key, id, 'tasks/pushNotificationConfig/delete', { id: taskId }, '0.3');
    expect(v03.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/^pushNotificationConfigId: /) });
    const still = await call(key, id, 'ListTaskPushNotificationConfigs', { taskId });
    expect(still.body.result.configs).toHaveLength(1);
    const deleted = await call(key, id, 'DeleteTaskPushNotificationConfig', { taskId, id: 'keep' });
    expect(deleted.body.error).toBeUndefined();
  });

  it('refuses, in 1.0, a push config get that names no config (it answered -32001 "config with id \'\' not found")', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const sent = await call(key, id, 'SendMessage', { message: { messageId: `pg-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } });
    const taskId: string = sent.body.result.task.id;
    await call(key, id, 'CreateTaskPushNotificationConfig', { taskId, id: 'keep', url: 'https://hooks.example/a2a' });
    const v1 = await call(key, id, 'GetTaskPushNotificationConfig', { taskId });
    expect(v1.body.error).toMatchObject({ ...INVALID_PARAMS, message: expect.stringMatching(/^id: /) });
    // v0.3's older form names the task alone and reads its first config (docs/A2A.md).
    const v03 = await call(key, id, 'tasks/pushNotificationConfig/get', { id: taskId }, '0.3');
    expect(v03.body.result).toMatchObject({ taskId, pushNotificationConfig: { id: 'keep' } });
    const got = await call(key, id, 'GetTaskPushNotificationConfig', { taskId, id: 'keep' });
    expect(got.body.result).toMatchObject({ taskId, id: 'keep' });
  });

  it('passes the tasks a message refers to on to the upstream, in the execution\'s input, in both versions', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const first = (await call(key, id, 'SendMessage', { message: { messageId: `ref-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'refund?' }] } })).body.result.task;
    const inputOf = async (taskId: string) => (await api(`/v1/agents/${id}/executions/${taskId}`, { key })).body.input;
    expect(await inputOf(first.id)).not.toHaveProperty('referenceTaskIds');

    const second = (await call(key, id, 'SendMessage', { message: { messageId: `ref-${++seq}`, role: 'ROLE_USER', parts: [{ text: 'and shipping?' }], referenceTaskIds: [first.id] } })).body.result.task;
    expect(await inputOf(second.id)).toMatchObject({ message: 'and shipping?', referenceTaskIds: [first.id] });
    const legacy = (await call(key, id, 'message/send', { message: { kind: 'message', messageId: `ref-${++seq}`, role: 'user', parts: [{ kind: 'text', text: 'hi' }], referenceTaskIds: [first.id, second.id] } }, '0.3')).body.result;
    expect((await inputOf(legacy.id)).referenceTaskIds).toEqual([first.id, second.id]);
  });
});
