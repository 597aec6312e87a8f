import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import {
  CancelTaskRequest, ListTasksRequest, SendMessageRequest, SubscribeToTaskRequest, TaskPushNotificationConfig, TaskState,
  type StreamResponse, type Task,
} from '@a2a-js/sdk';
import type { Client} from '@a2a-js/sdk/client';
import { api, BASE, eventually, mockUrl, newAgent, newTenant, uniqueId } from './support/api';
import { checkUpstream } from '../worker/agents/upstream-check';
import { a2aClient, getTask, rpc, sendTask } from './support/a2a';
import { A2A_STREAMS } from '../durable/a2a';

const CONFORMANCE = { kind: 'builtin', mode: 'a2a-conformance' };

let messageSeq = 0;
const send = (text: string, options: { messageId?: string; taskId?: string; contextId?: string; returnImmediately?: boolean; push?: Record<string, unknown> } = {}) =>
  SendMessageRequest.fromJSON({
    message: {
      messageId: options.messageId ?? `msg-${++messageSeq}`, role: 'ROLE_USER', parts: [{ text }],
      ...(options.taskId && { taskId: options.taskId }), ...(options.contextId && { contextId: options.contextId }),
    },
    configuration: { returnImmediately: options.returnImmediately ?? false, ...(options.push && { taskPushNotificationConfig: options.push }) },
  });

const textOf = (task: Task): string[] => task.artifacts.flatMap((a) => a.parts.flatMap((p) => (p.content?.$case === 'text' ? [p.content.value] : [])));
const waitForState = (client: Client, id: string, state: TaskState) => eventually(async () => { const t = await getTask(client, id); return t.status?.state === state && t; }, 15_000);

describe('A2A agent card', () => {
  it('is discovered by the SDK client: JSON-RPC 1.0 interface, bearer auth, skills from config', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { name: 'Support', a2a: { description: 'Answers shop questions', skills: [{ id: 'faq', name: 'FAQ', description: 'Shop FAQ', tags: ['support'] }] } });
    const client = await a2aClient(key, id);
    const card = await client.getAgentCard();
    expect(card.name).toBe('Support');
    expect(card.description).toBe('Answers shop questions');
    expect(card.supportedInterfaces).toEqual([expect.objectContaining({ url: `${BASE}/a2a/${id}/`, protocolBinding: 'JSONRPC', protocolVersion: '1.0' })]);
    expect(card.skills.map((s) => [s.id, s.name, s.tags])).toEqual([['faq', 'FAQ', ['support']]]);
    expect(card.securitySchemes.bearer?.scheme).toEqual({ $case: 'httpAuthSecurityScheme', value: expect.objectContaining({ scheme: 'Bearer' }) });
    expect(card.capabilities).toMatchObject({ streaming: true, pushNotifications: true });
  });

  it('needs the key unless public; private cache by default, ETag with 304, other tenants get 404', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const path = `/a2a/${id}/.well-known/agent-card.json`;
    expect((await api(path)).status).toBe(401);
    const card = await api(path, { key });
    expect(card.status).toBe(200);
    expect(card.body.skills).toHaveLength(1); // derived from the agent when the config has none
    expect(card.headers.get('cache-control')).toMatch(/^private/);
    const etag = card.headers.get('etag') ?? '';
    expect(etag).toMatch(/^".+"$/);
    expect((await api(path, { key, headers: { 'if-none-match': etag } })).status).toBe(304);

    const other = await newTenant();
    expect((await api(path, { key: other.key })).status).toBe(404);

    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { a2a: { publicCard: true } } });
    const open = await eventually(async () => { const r = await api(path); return r.status === 200 && r; });
    expect(open.headers.get('cache-control')).toMatch(/^public, max-age=\d+/);
    expect(open.body.name).toBe(id);
  });

  it('is in the OpenAPI document with the JSON-RPC endpoint', async () => {
    const doc = await api<{ paths: Record<string, unknown> }>('/openapi.json');
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(['/a2a/{id}/.well-known/agent-card.json', '/a2a/{id}/']));
  });
});

describe('A2A tasks are gateway executions', () => {
  it('blocking SendMessage completes the task; it is the execution of the REST API, and GetTask honours historyLength', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await a2aClient(key, id);
    const task = await sendTask(client, send('How do refunds work?'));
    expect(task.id).toMatch(/^ex_/);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(textOf(task)[0]).toMatch(/^Refunds are issued/);

    const execution = await api(`/v1/agents/${id}/executions/${task.id}`, { key });
    expect(execution.status).toBe(200);
    expect(execution.body).toMatchObject({ id: task.id, intent: 'a2a.message', status: 'succeeded', input: { message: 'How do refunds work?' } });
    expect(execution.body.output.reply).toBe(textOf(task)[0]);
    // …and in the agent's execution list (the D1 projection, eventually).
    await eventually(async () => (await api(`/v1/agents/${id}/executions`, { key })).body.data?.some((e: { id: string }) => e.id === task.id));

    expect((await getTask(client, task.id)).history.length).toBeGreaterThanOrEqual(1);
    expect((await getTask(client, task.id, 0)).history).toEqual([]);
    const last = await getTask(client, task.id, 1);
    expect(last.history).toHaveLength(1);
  });

  it('an execution made through the REST API is a task for GetTask and ListTasks', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'support.reply', input: { message: 'When are you open?' } } });
    const client = await a2aClient(key, id);
    const task = await getTask(client, exec.body.id);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(textOf(task)[0]).toBe(exec.body.output.reply);
    const list = await client.listTasks(ListTasksRequest.fromJSON({ status: 'TASK_STATE_UNSPECIFIED' }));
    expect(list.tasks.map((t) => t.id)).toContain(exec.body.id);
  });

  it('an upstream may ask for input; the next message is a new turn of the same task', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent') } });
    const asks = JSON.stringify({ output: { reply: 'Which order?', a2a: { state: 'input-required' } } });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'support.reply', input: { mock: { body: asks } } } });
    expect(exec.body.status).toBe('succeeded');
    const client = await a2aClient(key, id);
    const asking = await getTask(client, exec.body.id);
    expect(asking.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    expect(asking.status?.message?.parts[0]?.content).toEqual({ $case: 'text', value: 'Which order?' });

    const answered = await sendTask(client, send('order 42', { taskId: exec.body.id, contextId: asking.contextId }));
    expect(answered.id).toBe(exec.body.id);
    expect(answered.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    // The follow-up turn is an execution of its own, not a task of its own.
    const list = await client.listTasks(ListTasksRequest.fromJSON({ status: 'TASK_STATE_UNSPECIFIED' }));
    expect(list.tasks.map((t) => t.id)).toEqual([exec.body.id]);
    const executions = await eventually(async () => { const r = await api(`/v1/agents/${id}/executions`, { key }); return r.body.data?.length === 2 && r.body.data; });
    expect(executions.map((e: { intent: string }) => e.intent).sort()).toEqual(['a2a.message', 'support.reply']);
  });

  it('non-blocking SendMessage returns at once; GetTask later sees it completed', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const client = await a2aClient(key, id);
    const task = await sendTask(client, send('slow', { messageId: `tck-long-running-${uniqueId()}`, returnImmediately: true }));
    expect([TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING]).toContain(task.status?.state);
    const done = await waitForState(client, task.id, TaskState.TASK_STATE_COMPLETED);
    expect(textOf(done)).toEqual(['long running work finished']);
    expect((await api(`/v1/agents/${id}/executions/${task.id}`, { key })).body.status).toBe('succeeded');
  });

  it('CancelTask cancels a working task and its execution; cancelling a finished task is -32002', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const client = await a2aClient(key, id);
    const task = await sendTask(client, send('wait', { messageId: `tck-cancel-${uniqueId()}`, returnImmediately: true }));
    await waitForState(client, task.id, TaskState.TASK_STATE_WORKING);
    const canceled = await client.cancelTask(CancelTaskRequest.fromJSON({ id: task.id }));
    expect(canceled.status?.state).toBe(TaskState.TASK_STATE_CANCELED);
    expect((await api(`/v1/agents/${id}/executions/${task.id}`, { key })).body.status).toBe('cancelled');

    const finished = await sendTask(client, send('done', { messageId: `tck-complete-task-${uniqueId()}` }));
    await expect(client.cancelTask(CancelTaskRequest.fromJSON({ id: finished.id }))).rejects.toMatchObject({ envelopeCode: -32002 });
    const raw = await rpc(key, id, 'CancelTask', { id: finished.id });
    expect(raw.status).toBe(200);
    expect(raw.body.error).toMatchObject({ code: -32002, data: [expect.objectContaining({ reason: 'TASK_NOT_CANCELABLE', domain: 'a2a-protocol.org' })] });
    // A canceled task is finished too (REST answers 409 already_finished for the same record).
    expect((await rpc(key, id, 'CancelTask', { id: task.id })).body.error).toMatchObject({ code: -32002 });
    expect((await api(`/v1/agents/${id}/executions/${task.id}/cancel`, { method: 'POST', key })).body.error.code).toBe('already_finished');
  });

  it('a cancel through the REST API is the task\'s cancel', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const client = await a2aClient(key, id);
    const task = await sendTask(client, send('wait', { messageId: `tck-cancel-${uniqueId()}`, returnImmediately: true }));
    expect((await api(`/v1/agents/${id}/executions/${task.id}/cancel`, { method: 'POST', key })).status).toBe(200);
    await waitForState(client, task.id, TaskState.TASK_STATE_CANCELED);
  });

  it('a task shows the same cancel whichever API cancelled it: the execution\'s error as its status message, its end as the timestamp', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const client = await a2aClient(key, id);
    const viaRest = await sendTask(client, send('wait', { messageId: `tck-cancel-${uniqueId()}`, returnImmediately: true }));
    const viaA2a = await sendTask(client, send('wait', { messageId: `tck-cancel-${uniqueId()}`, returnImmediately: true }));
    expect((await api(`/v1/agents/${id}/executions/${viaRest.id}/cancel`, { method: 'POST', key })).status).toBe(200);
    expect((await rpc(key, id, 'CancelTask', { id: viaA2a.id })).body.result.status.state).toBe('TASK_STATE_CANCELED');
    for (const task of [viaRest, viaA2a]) {
      const execution = (await api(`/v1/agents/${id}/executions/${task.id}`, { key })).body;
      expect(execution.status).toBe('cancelled');
      const { status, history } = (await rpc(key, id, 'GetTask', { id: task.id })).body.result;
      // The cancel through A2A used to say only "cancelled by request", under a message id of its own.
      expect(status.message).toMatchObject({ messageId: `${task.id}-status`, parts: [{ text: `${execution.error.code}: ${execution.error.message}` }] });
      expect(status.timestamp).toBe(execution.finishedAt);
      expect(history.filter((m: { role: string }) => m.role === 'ROLE_AGENT')).toHaveLength(1);
    }
  });

  it('a CancelTask of a task no send follows (queued on a paused agent, made through REST) shows the same cancel as any other', async () => {
    // The SDK cancelled these itself: "Task cancellation requested by user." under a random message id.
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: true } });
    const viaA2a = (await rpc(key, id, 'SendMessage', { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } })).body.result.task;
    expect(viaA2a.status.state).toBe('TASK_STATE_SUBMITTED');
    const viaRest = (await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', mode: 'async' } })).body;
    for (const taskId of [viaA2a.id, viaRest.id]) {
      const answer = (await rpc(key, id, 'CancelTask', { id: taskId })).body.result;
      const execution = (await api(`/v1/agents/${id}/executions/${taskId}`, { key })).body;
      expect(execution.status).toBe('cancelled');
      const task = (await rpc(key, id, 'GetTask', { id: taskId })).body.result;
      expect(answer).toEqual(task);
      expect(task.status.message).toMatchObject({ messageId: `${taskId}-status`, parts: [{ text: `${execution.error.code}: ${execution.error.message}` }] });
      expect(task.status.timestamp).toBe(execution.finishedAt);
      expect(task.history.at(-1)).toEqual(task.status.message);
      expect(JSON.stringify(task.history)).not.toContain('Task cancellation requested by user.');
    }
  });

  it('a CancelTask of a task asking for input shows the gateway\'s cancel, as every other cancel does, and no SDK text', async () => {
    // The SDK cancelled it itself: "Task cancellation requested by user." under a random message id.
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    for (const prefix of ['tck-input-required', 'tck-auth-required']) {
      const asking = (await rpc(key, id, 'SendMessage', { message: { messageId: `${prefix}-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }] } })).body.result.task;
      expect(asking.status.state).toMatch(/_REQUIRED$/);
      const answer = (await rpc(key, id, 'CancelTask', { id: asking.id })).body.result;
      const task = (await rpc(key, id, 'GetTask', { id: asking.id })).body.result;
      expect(answer).toEqual(task);
      expect(task.status.state, prefix).toBe('TASK_STATE_CANCELED');
      expect(task.status.message, prefix).toMatchObject({ messageId: `${asking.id}-cancel`, role: 'ROLE_AGENT', parts: [{ text: 'cancelled: cancelled by request' }] });
      expect(task.history.at(-1), prefix).toEqual(task.status.message);
      expect(JSON.stringify(task.history), prefix).not.toContain('Task cancellation requested by user.');
      // Still so after a restart of the object: the status is the stored one.
      const listed = (await rpc(key, id, 'ListTasks', { status: 'TASK_STATE_CANCELED' })).body.result.tasks.find((t: { id: string }) => t.id === asking.id);
      expect(listed?.status.message, prefix).toEqual(task.status.message);
    }
  });

  it('on a paused agent a blocking SendMessage answers the submitted task, which runs once resumed', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: true } });
    const client = await a2aClient(key, id);
    const task = await sendTask(client, send('hello'));
    expect(task.status?.state).toBe(TaskState.TASK_STATE_SUBMITTED);
    expect((await api(`/v1/agents/${id}/executions/${task.id}`, { key })).body.status).toBe('queued');
    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: false } });
    await waitForState(client, task.id, TaskState.TASK_STATE_COMPLETED);
  });

  it('GetTask of an unknown task is -32001', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await a2aClient(key, id);
    await expect(getTask(client, 'ex_unknown')).rejects.toMatchObject({ envelopeCode: -32001 });
  });

  it('ListTasks pages newest first with a cursor', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await a2aClient(key, id);
    const ids: string[] = [];
    for (const text of ['hello', 'refund?', 'shipping?']) ids.push((await sendTask(client, send(text))).id);
    const first = await client.listTasks(ListTasksRequest.fromJSON({ pageSize: 2, status: 'TASK_STATE_UNSPECIFIED' }));
    expect(first.tasks.map((t) => t.id)).toEqual([ids[2], ids[1]]);
    expect(first.totalSize).toBe(3);
    expect(first.nextPageToken).not.toBe('');
    expect(first.tasks[0]?.artifacts).toEqual([]); // artifacts only with includeArtifacts
    const second = await client.listTasks(ListTasksRequest.fromJSON({ pageSize: 2, pageToken: first.nextPageToken, status: 'TASK_STATE_UNSPECIFIED', includeArtifacts: true }));
    expect(second.tasks.map((t) => t.id)).toEqual([ids[0]]);
    expect(second.nextPageToken).toBe('');
    expect(textOf(second.tasks[0] as Task)[0]).toMatch(/^Hello!/);
    const completed = await client.listTasks(ListTasksRequest.fromJSON({ status: 'TASK_STATE_CANCELED' }));
    expect(completed.tasks).toEqual([]);
  });
});

describe('A2A streaming and push notifications', () => {
  it('SendStreamingMessage streams the task from submitted to completed over SSE', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await a2aClient(key, id);
    const events: StreamResponse[] = [];
    for await (const event of client.sendMessageStream(send('Where is my order?'))) events.push(event);
    // The builtin upstream answers at once; the stream still starts with the task as submitted
    // (or working) and ends with the one terminal status, the artifact before it.
    const payloads = events.map((e) => e.payload);
    expect(payloads[0]?.$case === 'task' && payloads[0].value.status?.state).toBeOneOf([TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING]);
    expect(payloads.slice(0, -1).every((p) => p?.$case !== 'statusUpdate' || p.value.status?.state !== TaskState.TASK_STATE_COMPLETED)).toBe(true);
    expect(payloads.findIndex((p) => p?.$case === 'artifactUpdate')).toBe(payloads.length - 2);
    const last = events.at(-1)?.payload;
    expect(last?.$case).toBe('statusUpdate');
    if (last?.$case !== 'statusUpdate') throw new Error('unreachable');
    expect(last.value.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    const artifact = events.find((e) => e.payload?.$case === 'artifactUpdate')?.payload;
    expect(artifact?.$case === 'artifactUpdate' && artifact.value.artifact?.parts[0]?.content).toEqual({ $case: 'text', value: expect.stringMatching(/^You can follow your order/) });
  });

  it('keeps a quiet stream alive with SSE comments while a turn runs, which the SDK client skips', async () => {
    // Between WORKING and the end of a turn (up to 5 minutes) a stream used to send nothing,
    // and proxies that close idle connections (60 s is a common default) cut it.
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const saved = A2A_STREAMS.heartbeatMs;
    A2A_STREAMS.heartbeatMs = 100; // the long-running turn takes about a second
    try {
      const body = { jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params: { message: { messageId: `tck-long-running-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'slow' }] } } };
      const res = await SELF.fetch(`${BASE}/a2a/${id}/`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0' }, body: JSON.stringify(body) });
      const text = await res.text();
      expect(text).toMatch(/^: heartbeat$/m);
      // Whole frames only: every event still parses, and the stream ends with the turn.
      const events = text.split('\n\n').filter((frame) => frame.startsWith('data:')).map((frame) => JSON.parse(frame.slice(5)) as { result: Record<string, { status?: { state: string } }> });
      expect(events.at(-1)?.result.statusUpdate?.status?.state).toBe('TASK_STATE_COMPLETED');
      const client = await a2aClient(key, id);
      const states: (TaskState | undefined)[] = [];
      for await (const event of client.sendMessageStream(send('slow', { messageId: `tck-long-running-${uniqueId()}` }))) {
        if (event.payload?.$case === 'statusUpdate') states.push(event.payload.value.status?.state);
      }
      expect(states.at(-1)).toBe(TaskState.TASK_STATE_COMPLETED);
    } finally {
      A2A_STREAMS.heartbeatMs = saved;
    }
  });

  it('SubscribeToTask follows a running task to its end', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const client = await a2aClient(key, id);
    const task = await sendTask(client, send('slow', { messageId: `tck-long-running-${uniqueId()}`, returnImmediately: true }));
    const states: (TaskState | undefined)[] = [];
    for await (const event of client.resubscribeTask(SubscribeToTaskRequest.fromJSON({ id: task.id }))) {
      if (event.payload?.$case === 'task') states.push(event.payload.value.status?.state);
      if (event.payload?.$case === 'statusUpdate') states.push(event.payload.value.status?.state);
    }
    expect(states.at(-1)).toBe(TaskState.TASK_STATE_COMPLETED);
  });

  it('delivers push notifications with the config\'s token and credentials, through the outbound guard', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const client = await a2aClient(key, id);
    const token = `tok-${uniqueId()}`;
    const push = { url: mockUrl('/a2a-push'), token, authentication: { scheme: 'Bearer', credentials: 'receiver-secret' } };
    const task = await sendTask(client, send('slow', { messageId: `tck-long-running-${uniqueId()}`, returnImmediately: true, push }));
    const received = await eventually(async () => {
      const res = await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${token}`);
      const { requests } = (await res.json()) as { requests: { body: { task?: { id: string; status: { state: string } } }; headers: Record<string, string> }[] };
      return requests.find((r) => r.body.task?.status.state === 'TASK_STATE_COMPLETED');
    }, 15_000);
    expect(received.body.task?.id).toBe(task.id);
    expect(received.headers.authorization).toBe('Bearer receiver-secret');
    expect(received.headers['x-a2a-notification-token']).toBe(token);

    const configs = await client.listTaskPushNotificationConfig({ tenant: '', taskId: task.id, pageSize: 10, pageToken: '' });
    expect(configs.configs.map((c) => c.url)).toEqual([push.url]);
    // A URL the outbound guard refuses is refused when the config is made.
    const refused = await rpc(key, id, 'CreateTaskPushNotificationConfig', TaskPushNotificationConfig.toJSON(TaskPushNotificationConfig.fromJSON({ taskId: task.id, url: 'ftp://example.com/x' })));
    expect(refused.body.error?.code).toBe(-32602);
  });
});

describe('A2A protocol versions and errors', () => {
  it('answers -32009 for an unsupported A2A-Version, and v0.3 method names without one', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const future = await a2aClient(key, id, { 'a2a-version': '9.9' });
    await expect(getTask(future, 'ex_x')).rejects.toMatchObject({ envelopeCode: -32009 });
    const raw = await rpc(key, id, 'GetTask', { id: 'ex_x' }, { 'a2a-version': '2.0' });
    expect(raw.body.error).toMatchObject({ code: -32009, data: [expect.objectContaining({ reason: 'VERSION_NOT_SUPPORTED' })] });

    const sent = await api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 'a', method: 'message/send', params: { message: { kind: 'message', messageId: 'm-03', role: 'user', parts: [{ kind: 'text', text: 'hello' }] } } } });
    expect(sent.body.result).toMatchObject({ kind: 'task', status: { state: 'completed' } });
    const got = await api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 'b', method: 'tasks/get', params: { id: sent.body.result.id } } });
    expect(got.body.result).toMatchObject({ id: sent.body.result.id, kind: 'task' });
  });

  it('answers JSON-RPC errors for bad JSON and bad envelopes, 401 without a key, 404 for another tenant\'s agent', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const parse = await api(`/a2a/${id}/`, { key, rawBody: '{nope', headers: { 'content-type': 'application/json' } });
    expect(parse.body.error.code).toBe(-32700);
    const invalid = await api(`/a2a/${id}/`, { key, body: { jsonrpc: '1.0', method: 'GetTask' } });
    expect(invalid.body.error.code).toBe(-32600);
    const unknown = await rpc(key, id, 'NoSuchMethod', {});
    expect(unknown.body.error.code).toBe(-32601);
    expect((await api(`/a2a/${id}/`, { body: { jsonrpc: '2.0', id: 1, method: 'GetTask', params: { id: 'x' } } })).status).toBe(401);
    const other = await newTenant();
    expect((await rpc(other.key, id, 'GetTask', { id: 'x' })).status).toBe(404);
  });
});

describe('A2A durability', () => {
  it('a task survives a restart of the agent\'s object, finished or still running', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const client = await a2aClient(key, id);
    const finished = await sendTask(client, send('hi', { messageId: `tck-complete-task-${uniqueId()}` }));
    const running = await sendTask(client, send('slow', { messageId: `tck-long-running-${uniqueId()}`, returnImmediately: true }));

    await abortAllDurableObjects();
    await runDurableObjectAlarm(env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`)));

    const after = await getTask(client, finished.id);
    expect(after.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(after.contextId).toBe(finished.contextId);
    expect(after.history.map((m) => m.messageId)).toEqual(finished.history.map((m) => m.messageId));
    const resumed = await waitForState(client, running.id, TaskState.TASK_STATE_COMPLETED);
    expect(textOf(resumed)).toEqual(['long running work finished']);
  });
});

describe('A2A storage', () => {
  it('a new agent creates its A2A tables at its first A2A request; REST work before that needs none and is a task after', async () => {
    const { key, tenantId } = await newTenant();
    const agentId = await newAgent(key);
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));
    const tables = () => runInDurableObject(stub, (_i, state) =>
      state.storage.sql.exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'a2a%' ORDER BY name").toArray().map((r) => r.name));
    expect(await tables()).toEqual([]);
    const rest = await api(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'before-a2a' } });
    expect(rest.status).toBe(200);
    // The flush after it (outbox, retention, push-config check) runs without the tables.
    await eventually(() => env.DB.prepare('SELECT 1 AS one FROM executions WHERE id = ? AND status = ?').bind(rest.body.id, 'succeeded').first());
    expect(await tables()).toEqual([]);
    const task = await getTask(await a2aClient(key, agentId), rest.body.id);
    expect(task.id).toBe(rest.body.id);
    expect(task.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(await tables()).toEqual(['a2a_push_configs', 'a2a_tasks', 'a2a_turns']);
  });
});

describe('the a2a-conformance upstream', () => {
  it('is refused unless the operator enables it', async () => {
    const upstream = { kind: 'builtin', mode: 'a2a-conformance' } as const;
    await expect(checkUpstream({ ...env, ENABLE_CONFORMANCE_UPSTREAM: 'false' }, 't', upstream)).rejects.toMatchObject({ code: 'invalid_request', status: 400 });
    await expect(checkUpstream({ ...env, ENABLE_CONFORMANCE_UPSTREAM: 'true' }, 't', upstream)).resolves.toBeUndefined();
  });

  it('plays the suite\'s scripted behaviours by message-id prefix', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const client = await a2aClient(key, id);
    const run = (prefix: string) => sendTask(client, send('tck', { messageId: `${prefix}-${uniqueId()}` }));

    expect((await run('tck-complete-task')).status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect((await run('tck-reject-task')).status?.state).toBe(TaskState.TASK_STATE_REJECTED);
    expect((await run('tck-task-failure')).status?.state).toBe(TaskState.TASK_STATE_FAILED);
    expect((await run('tck-auth-required')).status?.state).toBe(TaskState.TASK_STATE_AUTH_REQUIRED);
    expect(textOf(await run('tck-artifact-text'))).toEqual(['Generated text content']);

    const asking = await run('tck-input-required');
    expect(asking.status?.state).toBe(TaskState.TASK_STATE_INPUT_REQUIRED);
    const answered = await sendTask(client, send('here you go', { taskId: asking.id, contextId: asking.contextId }));
    expect(answered.id).toBe(asking.id);
    expect(answered.status?.state).toBe(TaskState.TASK_STATE_COMPLETED);
    expect(answered.history.map((m) => m.role)).toContain(1); // the user's turns are in the history
  });
});
