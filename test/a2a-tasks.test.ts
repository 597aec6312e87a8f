import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { parseAllowCidrs } from '../worker/upstream/outbound-guard';
import { describe, expect, it } from 'vitest';
import { PAUSED_NOTE } from '../durable/a2a-executor';
import { ListTasksRequest, SendMessageRequest, type StreamResponse, type Task } from '@a2a-js/sdk';
import { api, BASE, eventually, mockUrl, newAgent, newTenant, uniqueId } from './support/api';
import { a2aClient, getTask, rpc, sendTask } from './support/a2a';

const CONFORMANCE = { kind: 'builtin', mode: 'a2a-conformance' };

const call = (key: string, agentId: string, method: string, params: unknown) =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers: { 'a2a-version': '1.0' } });
const message = (fields: Record<string, unknown>) => ({ message: { messageId: `m-${uniqueId('msg')}`, role: 'ROLE_USER', parts: [{ text: 'hello' }], ...fields } });

describe('A2A follow-up turns', () => {
  it('a follow-up turn\'s execution is not a task: GetTask, CancelTask and SubscribeToTask answer -32001, REST still shows the execution', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const asking = (await call(key, id, 'SendMessage', message({ messageId: `tck-input-required-${uniqueId()}` }))).body.result.task;
    expect(asking.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    const answered = (await call(key, id, 'SendMessage', message({ taskId: asking.id, contextId: asking.contextId }))).body.result.task;
    expect(answered).toMatchObject({ id: asking.id, status: { state: 'TASK_STATE_COMPLETED' } });

    const executions = await eventually(async () => {
      const list = (await api(`/v1/agents/${id}/executions`, { key })).body.data as { id: string; input: { turn?: number } }[];
      return list.length === 2 && list;
    });
    const secondTurn = executions.find((e) => e.input.turn === 2);
    expect(secondTurn).toBeDefined();
    const turnId = secondTurn?.id ?? '';
    expect(turnId).not.toBe(asking.id);
    for (const method of ['GetTask', 'CancelTask', 'SubscribeToTask']) {
      const res = await call(key, id, method, { id: turnId });
      expect(res.body.error).toMatchObject({ code: -32001, data: [expect.objectContaining({ reason: 'TASK_NOT_FOUND' })] });
    }
    expect((await call(key, id, 'GetTask', { id: asking.id })).body.result.status.state).toBe('TASK_STATE_COMPLETED');
    expect((await api(`/v1/agents/${id}/executions/${turnId}`, { key })).body).toMatchObject({ id: turnId, intent: 'a2a.message', status: 'succeeded' });
  });
});

describe('A2A follow-ups to a task whose turn still runs', () => {
  it('refuses the message with -32004, storing nothing (it was answered with the running turn\'s answer, its own lost); it is taken once the task asks for input', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 4, upstream: { kind: 'agent-http', url: mockUrl('/agent?answerBytes=100&a2aState=input-required&delayMs=1500') } });
    const first = (await call(key, id, 'SendMessage', message({}))).body.result.task;
    expect(first.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    const second = await call(key, id, 'SendMessage', { ...message({ taskId: first.id }), configuration: { returnImmediately: true } });
    expect(second.body.result.task.status.state).toBe('TASK_STATE_WORKING');
    const historyOf = async () => (await call(key, id, 'GetTask', { id: first.id })).body.result.history.map((m: { messageId: string }) => m.messageId);
    const before = await historyOf();

    for (const method of ['SendMessage', 'SendStreamingMessage']) {
      const third = await call(key, id, method, message({ taskId: first.id }));
      expect(third.body.error, method).toMatchObject({ code: -32004, message: expect.stringContaining(`Task ${first.id} is TASK_STATE_WORKING`) });
    }
    expect(await historyOf()).toEqual(before);

    // The running turn ends as its own answer; the next message is then a turn of its own.
    const asking = await eventually(async () => {
      const task = (await call(key, id, 'GetTask', { id: first.id })).body.result;
      return task.status.state === 'TASK_STATE_INPUT_REQUIRED' && task;
    }, 15_000);
    const next = (await call(key, id, 'SendMessage', message({ taskId: first.id }))).body.result.task;
    expect(next.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    expect(next.status.message.messageId).not.toBe(asking.status.message.messageId);
  });
});

describe('A2A follow-ups sent together to a task asking for input', () => {
  it('takes one as the next turn and refuses the other -32004: each answer is its own turn\'s, never the other\'s', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { concurrency: 4, upstream: { kind: 'agent-http', url: mockUrl('/agent?answerBytes=100&a2aState=input-required&delayMs=300') } });
    // As in production, a push URL's host is resolved before the message is taken (the test
    // binding allows private upstreams, which skips that): the request awaits the resolver there.
    const host = `${uniqueId('push')}.example.com`;
    await fetch(`${env.MOCK_UPSTREAM_URL}/dns?name=${host}`, { method: 'POST', body: JSON.stringify({ A: ['127.0.0.1'] }) });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    await runInDurableObject(stub, (instance) => {
      const hooks = (instance as unknown as { a2aServer: { tasks: { hooks: { outboundPolicy: () => unknown } } } }).a2aServer.tasks.hooks;
      hooks.outboundPolicy = () => ({ allowPrivate: false, resolverUrl: `${env.MOCK_UPSTREAM_URL}/dns-query`, allowCidrs: parseAllowCidrs('127.0.0.0/8') });
    });
    const pushUrl = `https://${host}/a2a-push`;
    const first = (await call(key, id, 'SendMessage', message({}))).body.result.task;
    expect(first.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    const followUp = (text: string) => call(key, id, 'SendMessage', {
      message: { messageId: `m-${uniqueId('msg')}`, role: 'ROLE_USER', parts: [{ text }], taskId: first.id },
      configuration: { taskPushNotificationConfig: { url: pushUrl, token: `tok-${uniqueId()}` } },
    });
    const answers = await Promise.all([followUp('one'), followUp('two')]);
    // Nothing listens at the push URL: its configs go, so its deliveries stop being retried.
    const configs = (await call(key, id, 'ListTaskPushNotificationConfigs', { taskId: first.id })).body.result.configs as { id: string }[];
    for (const config of configs) await call(key, id, 'DeleteTaskPushNotificationConfig', { taskId: first.id, id: config.id });
    const taken = answers.filter((a) => a.body.result);
    const refused = answers.filter((a) => a.body.error);
    // Both used to be taken: the second shared the first's event bus and was answered with its turn.
    expect(refused.map((a) => a.body.error)).toEqual([expect.objectContaining({ code: -32004, message: expect.stringContaining(`Task ${first.id}`) })]);
    expect(taken).toHaveLength(1);
    const task = (await call(key, id, 'GetTask', { id: first.id })).body.result;
    // The refused message is stored nowhere: the history holds the first message and the taken one.
    expect(task.history.filter((m: { role: string }) => m.role === 'ROLE_USER').map((m: { parts: { text: string }[] }) => m.parts[0]?.text)).toEqual(['hello', taken[0]?.body.result.task.history.at(-2)?.parts[0]?.text ?? 'taken']);
    const turns = await eventually(async () => {
      const list = (await api(`/v1/agents/${id}/executions`, { key })).body.data as { status: string }[];
      // D1's list is a projection: the turns land one flush apart, and one alone is all succeeded too.
      return list.length >= 2 && list.every((e) => e.status === 'succeeded') && list;
    });
    expect(turns).toHaveLength(2);
    // Once the taken turn has ended, the next message is taken.
    const next = (await call(key, id, 'SendMessage', message({ taskId: first.id }))).body;
    expect(next.error).toBeUndefined();
  });
});

describe('A2A push notifications that cannot be queued', () => {
  it('never fail the execution: it ends as its upstream answered, and the push is recorded as a failed delivery', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?delayMs=800') } });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    type Queue = (target: string, type: string, payload: string, now: number, failure?: string) => void;
    type Hooks = { queueDelivery: Queue; restore?: Queue };
    const hooksOf = (instance: unknown) => (instance as { a2aServer: { hooks: Hooks } }).a2aServer.hooks;
    const sent = await call(key, id, 'SendMessage', { ...message({}), configuration: { returnImmediately: true, taskPushNotificationConfig: { url: mockUrl('/a2a-push'), token: `tok-${uniqueId()}` } } });
    const taskId: string = sent.body.result.task.id;
    // While the turn runs, queueing its push throws (no upstream answer is known to make building
    // or storing one throw any more: this stands for one that would). A push is queued as the
    // execution's change is recorded, in its transaction, so the throw used to undo the finish:
    // the outcome was not written, the execution left running to the watchdog.
    await runInDurableObject(stub, (instance) => {
      const hooks = hooksOf(instance);
      const queue = hooks.queueDelivery;
      hooks.restore = queue;
      hooks.queueDelivery = (target, type, payload, now, failure) => {
        if (failure === undefined && target.startsWith(`a2a:${taskId}:`)) throw new Error('injected: string or blob too big');
        queue(target, type, payload, now, failure);
      };
    });
    try {
      const execution = await eventually(async () => {
        const res = await api(`/v1/agents/${id}/executions/${taskId}`, { key });
        return ['succeeded', 'failed'].includes(res.body.status) && res.body;
      }, 15_000);
      expect(execution.status).toBe('succeeded');
      expect(execution.error ?? null).toBeNull();
      expect(execution.output).toBeTruthy();
    } finally {
      await runInDurableObject(stub, (instance) => {
        const hooks = hooksOf(instance);
        if (hooks.restore) hooks.queueDelivery = hooks.restore;
      });
    }
    const deliveries = await runInDurableObject(stub, (_instance, state) =>
      state.storage.sql.exec('SELECT event_type, status, last_error FROM deliveries WHERE webhook_id LIKE ? ORDER BY created_at', `a2a:${taskId}:%`).toArray());
    expect(deliveries).toContainEqual({ event_type: 'a2a.task.TASK_STATE_COMPLETED', status: 'dead', last_error: expect.stringContaining('the push notification could not be built (Error: injected: string or blob too big)') });
    const task = (await call(key, id, 'GetTask', { id: taskId })).body.result;
    expect(task.status.state).toBe('TASK_STATE_COMPLETED');
  });
});

describe('A2A tasks are bounded in stored size', () => {
  it('refuses a follow-up that would grow the task\'s stored record past 1 MiB with -32004, storing nothing; the task stays readable and cancelable', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    // tck-multi-turn asks for more input and echoes each message: a turn stores ~200 KB.
    const text = 'x'.repeat(100_000);
    const task = (await call(key, id, 'SendMessage', message({ messageId: `tck-multi-turn-${uniqueId()}`, parts: [{ text }] }))).body.result.task;
    const followUp = (method = 'SendMessage') => call(key, id, method, message({ messageId: `tck-multi-turn-${uniqueId()}`, taskId: task.id, contextId: task.contextId, parts: [{ text }] }));
    const current = async () => (await call(key, id, 'GetTask', { id: task.id })).body.result;
    const executions = async () => ((await api(`/v1/agents/${id}/executions`, { key })).body.data as unknown[]).length;

    let refused: Record<string, any> | undefined;
    let before: Record<string, any> = await current();
    for (let turn = 2; turn <= 10 && !refused; turn++) {
      const res = await followUp();
      if (res.body.error) refused = res.body.error;
      else {
        // Every accepted turn started from a record that had room for its message.
        expect(JSON.stringify(before).length + text.length, `turn ${turn}`).toBeLessThanOrEqual(1024 * 1024);
        expect(res.body.result.task.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
        before = await current();
      }
    }
    expect(refused).toMatchObject({ code: -32004, message: expect.stringMatching(/is full: .* over the limit of 1048576; nothing was stored/), data: [expect.objectContaining({ reason: 'UNSUPPORTED_OPERATION' })] });
    expect(JSON.stringify(before).length + text.length).toBeGreaterThan(1024 * 1024);

    // Nothing half-written: no history entry, no execution; a stream is refused the same way, before any event.
    const executionsBefore = await eventually(async () => { const n = await executions(); return n === before.history.length / 2 && n; });
    const stream = await followUp('SendStreamingMessage');
    expect(stream.headers.get('content-type')).toMatch(/^application\/json/);
    expect(stream.body.error).toMatchObject({ code: -32004 });
    expect(await current()).toEqual(before);
    expect(await executions()).toBe(executionsBefore);

    expect((await call(key, id, 'CancelTask', { id: task.id })).body.result.status.state).toBe('TASK_STATE_CANCELED');
    const canceled = await current();
    expect(canceled.status.state).toBe('TASK_STATE_CANCELED');
    // The cancel adds its status message; the stored history is all still there.
    expect(canceled.history.slice(0, before.history.length)).toEqual(before.history);
  });
});

/** The `result`s of an SSE answer, read to its end, which must come within `withinMs`. */
async function streamed(key: string, agentId: string, method: string, params: unknown, version = '1.0', withinMs = 8_000): Promise<Record<string, any>[]> {
  const res = await SELF.fetch(`${BASE}/a2a/${agentId}/`, {
    method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': version },
  });
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const deadline = Date.now() + withinMs;
  let text = '';
  for (;;) {
    const timeout = new Promise<'open'>((resolve) => setTimeout(() => resolve('open'), Math.max(0, deadline - Date.now())));
    const chunk = await Promise.race([reader.read(), timeout]);
    if (chunk === 'open') {
      await reader.cancel();
      throw new Error(`the ${method} stream was still open after ${withinMs} ms: ${text}`);
    }
    if (chunk.done) break;
    text += decoder.decode(chunk.value, { stream: true });
  }
  return text.split('\n').filter((line) => line.startsWith('data:')).map((line) => JSON.parse(line.slice(5)).result);
}

/** A v0.3 `message/stream` message. */
const legacyMessage = (messageId: string) => ({ message: { kind: 'message', messageId, role: 'user', parts: [{ kind: 'text', text: 'hello' }] } });

describe('A2A on a paused agent', () => {
  it('nobody waits: a stream, like a blocking send, ends with the task submitted and a status saying why; it runs once resumed', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: true } });
    const why = { parts: [expect.objectContaining({ text: PAUSED_NOTE })] };

    const events = await streamed(key, id, 'SendStreamingMessage', message({}));
    expect(events).toEqual([
      { task: expect.objectContaining({ status: expect.objectContaining({ state: 'TASK_STATE_SUBMITTED' }) }) },
      { statusUpdate: expect.objectContaining({ status: expect.objectContaining({ state: 'TASK_STATE_SUBMITTED', message: expect.objectContaining(why) }) }) },
    ]);
    const taskId: string = events[0]?.task.id;
    const blocking = (await call(key, id, 'SendMessage', message({}))).body.result.task;
    expect(blocking.status).toMatchObject({ state: 'TASK_STATE_SUBMITTED', message: why });
    // No request follows a queued task of a paused agent: a subscription shows it and ends.
    expect(await streamed(key, id, 'SubscribeToTask', { id: taskId })).toEqual([{ task: expect.objectContaining({ id: taskId }) }]);

    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: false } });
    await eventually(async () => (await call(key, id, 'GetTask', { id: taskId })).body.result.status.state === 'TASK_STATE_COMPLETED');
  });

  it('in v0.3 the stream\'s last event, the status saying why, is marked final: true', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: true } });
    const events = await streamed(key, id, 'message/stream', legacyMessage(`m-${uniqueId('msg')}`), '0.3');
    expect(events).toEqual([
      expect.objectContaining({ kind: 'task', status: expect.objectContaining({ state: 'submitted' }) }),
      expect.objectContaining({ kind: 'status-update', final: true, status: expect.objectContaining({ state: 'submitted', message: expect.objectContaining({ parts: [{ kind: 'text', text: PAUSED_NOTE }] }) }) }),
    ]);
  });
});

describe('A2A streams end on an interrupted task', () => {
  it('input-required and auth-required end a stream, and a later subscription, in both versions; v0.3 marks that status final: true', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    for (const [prefix, v1State, v03State] of [['tck-input-required', 'TASK_STATE_INPUT_REQUIRED', 'input-required'], ['tck-auth-required', 'TASK_STATE_AUTH_REQUIRED', 'auth-required']]) {
      const current = await streamed(key, id, 'SendStreamingMessage', message({ messageId: `${prefix}-${uniqueId()}` }));
      expect(current.at(-1), prefix).toEqual({ statusUpdate: expect.objectContaining({ status: expect.objectContaining({ state: v1State }) }) });
      // Nothing follows the task until the client's next message: a subscription shows it and ends.
      const taskId: string = current[0]?.task.id;
      expect(await streamed(key, id, 'SubscribeToTask', { id: taskId }), prefix).toEqual([{ task: expect.objectContaining({ id: taskId, status: expect.objectContaining({ state: v1State }) }) }]);

      const legacy = await streamed(key, id, 'message/stream', legacyMessage(`${prefix}-${uniqueId()}`), '0.3');
      expect(legacy.at(-1), prefix).toEqual(expect.objectContaining({ kind: 'status-update', final: true, status: expect.objectContaining({ state: v03State }) }));
      // Only the last status is final: the others (working, …) are not.
      expect(legacy.slice(0, -1).filter((e) => e.final === true), prefix).toEqual([]);
    }
  });
});

describe('A2A acceptedOutputModes', () => {
  it('shapes the output artifact: the text part for text/plain, the data part for application/json, both otherwise; in both versions and every view', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const kinds = (task: { artifacts?: { parts: Record<string, unknown>[] }[] }) => (task.artifacts ?? []).flatMap((a) => a.parts.map((p) => ('text' in p ? 'text' : 'data' in p ? 'data' : p.kind)));
    const cases: [string[] | undefined, string[]][] = [
      [['text/plain'], ['text']],
      [['application/json'], ['data']],
      [['TEXT/plain; charset=utf-8', 'application/json'], ['text', 'data']],
      [['text/*'], ['text']],
      [['*/*'], ['text', 'data']],
      [['image/png'], ['text', 'data']], // nothing else to offer: the answer is never dropped
      [[], ['text', 'data']],
      [undefined, ['text', 'data']],
    ];
    for (const [acceptedOutputModes, expected] of cases) {
      const sent = await call(key, id, 'SendMessage', { ...message({}), ...(acceptedOutputModes && { configuration: { acceptedOutputModes } }) });
      const task = sent.body.result.task;
      expect(kinds(task), JSON.stringify(acceptedOutputModes)).toEqual(expected);
      expect(kinds((await call(key, id, 'GetTask', { id: task.id })).body.result), JSON.stringify(acceptedOutputModes)).toEqual(expected);
    }
    // The upstream is told too (it is the agent, which the spec asks to tailor its output).
    const text = (await call(key, id, 'SendMessage', { ...message({}), configuration: { acceptedOutputModes: ['text/plain'] } })).body.result.task;
    expect((await api(`/v1/agents/${id}/executions/${text.id}`, { key })).body.input.acceptedOutputModes).toEqual(['text/plain']);
    const events = await streamed(key, id, 'SendStreamingMessage', { ...message({}), configuration: { acceptedOutputModes: ['application/json'] } });
    const artifacts = events.filter((e) => e.artifactUpdate).map((e) => e.artifactUpdate.artifact);
    expect(kinds({ artifacts })).toEqual(['data']);
    const legacy = await api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 1, method: 'message/send', params: { ...legacyMessage(`m-${uniqueId('msg')}`), configuration: { acceptedOutputModes: ['text/plain'], blocking: true } } } });
    expect(kinds(legacy.body.result)).toEqual(['text']);
    const many = await call(key, id, 'SendMessage', { ...message({}), configuration: { acceptedOutputModes: Array.from({ length: 33 }, (_, i) => `text/x-${i}`) } });
    expect(many.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/^configuration\.acceptedOutputModes: /) });
  });
});

describe('A2A acceptedOutputModes and the artifacts an upstream names', () => {
  it('leaves out the parts, and the artifacts, of media types the send does not accept: every view, both versions, the push', async () => {
    const { key } = await newTenant();
    const answer = { output: { reply: 'see the artifacts', a2a: { artifacts: [
      { name: 'summary', parts: [{ text: 'short' }] },
      { name: 'report', parts: [{ text: '# Report', mediaType: 'text/markdown' }, { data: { rows: 2 } }] },
      { name: 'chart', parts: [{ raw: 'iVBORw0KGgo=', mediaType: 'image/png', filename: 'chart.png' }] },
      { name: 'link', parts: [{ url: 'https://example.com/report.pdf', mediaType: 'Application/PDF; name=report' }] },
    ] } } };
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?body=${encodeURIComponent(JSON.stringify(answer))}`) } });
    const client = await a2aClient(key, id);
    const request = (acceptedOutputModes: string[] | undefined, push?: Record<string, unknown>) => SendMessageRequest.fromJSON({
      message: { messageId: `msg-${uniqueId('msg')}`, role: 'ROLE_USER', parts: [{ text: 'report please' }] },
      configuration: { ...(acceptedOutputModes && { acceptedOutputModes }), ...(push && { taskPushNotificationConfig: push }) },
    });
    const shown = (task: Task) => task.artifacts.flatMap((a) => a.parts.map((p) => `${a.name}:${p.content?.$case}`));
    /** The same of a task in JSON, either version's (a v0.3 part names its `kind`). */
    const shownJson = (task: { artifacts?: { name: string; parts: Record<string, unknown>[] }[] }) =>
      (task.artifacts ?? []).flatMap((a) => a.parts.map((p) => `${a.name}:${(p.kind as string | undefined) ?? ['text', 'data', 'raw', 'url'].find((k) => k in p)}`));
    const everything = ['summary:text', 'report:text', 'report:data', 'chart:raw', 'link:url'];
    const cases: [string[] | undefined, string[]][] = [
      [['text/plain'], ['summary:text']],
      [['text/*'], ['summary:text', 'report:text']],
      [['application/json'], ['report:data']],
      [['Image/PNG; q=0.9'], ['chart:raw']],
      [['application/*'], ['report:data', 'link:url']],
      [['image/*', 'application/pdf'], ['chart:raw', 'link:url']],
      [['*/*'], everything],
      [[], everything],
      [undefined, everything],
      [['audio/ogg'], everything], // nothing to offer in it: the answer is never dropped
    ];
    for (const [modes, expected] of cases) {
      const task = await sendTask(client, request(modes));
      expect(shown(task), JSON.stringify(modes)).toEqual(expected);
      expect(shown(await getTask(client, task.id)), JSON.stringify(modes)).toEqual(expected);
    }
    // An artifact keeps its id (the upstream's index) whichever others are left out.
    const chart = await sendTask(client, request(['image/png']));
    expect(chart.artifacts.map((a) => a.artifactId)).toEqual([`${chart.id}-artifact-2`]);

    // The stream's artifact updates, ListTasks with artifacts and the push notification agree.
    const events: StreamResponse[] = [];
    for await (const event of client.sendMessageStream(request(['text/*']))) events.push(event);
    const updates = events.flatMap((e) => (e.payload?.$case === 'artifactUpdate' && e.payload.value.artifact ? [e.payload.value.artifact] : []));
    expect(shown({ artifacts: updates } as Task)).toEqual(['summary:text', 'report:text']);
    const listed = await client.listTasks(ListTasksRequest.fromJSON({ pageSize: 1, status: 'TASK_STATE_UNSPECIFIED', includeArtifacts: true }));
    expect(shown(listed.tasks[0] as Task)).toEqual(['summary:text', 'report:text']);
    const token = `tok-${uniqueId()}`;
    const pushed = await sendTask(client, request(['application/json'], { url: mockUrl('/a2a-push'), token }));
    expect(shown(pushed)).toEqual(['report:data']);
    const received = await eventually(async () => {
      const res = await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${token}`);
      const { requests } = (await res.json()) as { requests: { body: { task?: { status: { state: string }; artifacts?: { name: string; parts: Record<string, unknown>[] }[] } } }[] };
      return requests.find((r) => r.body.task?.status.state === 'TASK_STATE_COMPLETED');
    }, 15_000);
    expect(shownJson(received.body.task ?? {})).toEqual(['report:data']);

    // v0.3: message/send and tasks/get.
    const legacy = await rpc(key, id, 'message/send', {
      message: { kind: 'message', messageId: `msg-${uniqueId('msg')}`, role: 'user', parts: [{ kind: 'text', text: 'report please' }] },
      configuration: { acceptedOutputModes: ['image/*', 'text/markdown'], blocking: true },
    }, {});
    expect(shownJson(legacy.body.result)).toEqual(['report:text', 'chart:file']);
    expect(shownJson((await rpc(key, id, 'tasks/get', { id: legacy.body.result.id }, {})).body.result)).toEqual(['report:text', 'chart:file']);
  });
});

describe('the a2a-conformance upstream past an execution deadline', () => {
  it('fails the execution upstream_timeout, as every upstream does, not "cancelled"', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    // tck-long-running sleeps a second; the deadline comes first.
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'run', input: { messageId: 'tck-long-running-1', message: 'hi' }, timeoutMs: 200 } });
    expect(run.status).toBe(504);
    expect(run.body.error.code).toBe('upstream_timeout');
  });
});

describe("A2A and an upstream's output.a2a that does not fit", () => {
  it('shows the answer as the output artifact, COMPLETED, in every view: no -32603, no lost reply, the list still served', async () => {
    const { key } = await newTenant();
    const misfits: Record<string, unknown>[] = [
      { artifacts: [{ name: 'no parts' }] },
      { artifacts: 'not a list' },
      { artifacts: [null] },
      { artifacts: [{ name: 'empty part', parts: [5] }] },
      { artifacts: [{ name: 7, parts: [{ text: 'a name that is not a string' }] }] },
      { state: 'toString' },
      { state: 'completed' },
      { state: 5 },
    ];
    for (const a2a of misfits) {
      const answer = { output: { reply: 'the real answer', a2a } };
      const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?body=${encodeURIComponent(JSON.stringify(answer))}`) } });
      const label = JSON.stringify(a2a);
      const sent = await call(key, id, 'SendMessage', message({}));
      expect(sent.body.error, label).toBeUndefined();
      const task = sent.body.result.task as { id: string; status: { state: string }; artifacts?: { artifactId: string; parts: { text?: string }[] }[] };
      expect(task.status.state, label).toBe('TASK_STATE_COMPLETED');
      expect(task.artifacts?.map((a) => a.artifactId), label).toEqual([`${task.id}-output`]);
      expect(task.artifacts?.[0]?.parts[0]?.text, label).toBe('the real answer');
      const got = await call(key, id, 'GetTask', { id: task.id });
      expect(got.body.result, label).toMatchObject({ status: { state: 'TASK_STATE_COMPLETED' }, artifacts: [{ artifactId: `${task.id}-output` }] });
      const listed = await call(key, id, 'ListTasks', { includeArtifacts: true, status: 'TASK_STATE_COMPLETED' });
      expect(listed.body.error, label).toBeUndefined();
      expect(listed.body.result.tasks.map((t: { id: string }) => t.id), label).toEqual([task.id]);
    }
  });

  it('with a push config, records the execution succeeded (it was failed internal_error, its output lost) and pushes the answer', async () => {
    // The task is built for its push as the execution's finish is recorded, in that transaction.
    const { key } = await newTenant();
    const answer = { output: { reply: 'the pushed answer', a2a: { artifacts: [{ name: 'no parts' }] } } };
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?body=${encodeURIComponent(JSON.stringify(answer))}`) } });
    const token = `tok-${uniqueId()}`;
    const sent = await call(key, id, 'SendMessage', { ...message({}), configuration: { returnImmediately: true, taskPushNotificationConfig: { url: mockUrl('/a2a-push'), token } } });
    const taskId: string = sent.body.result.task.id;
    const execution = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/executions/${taskId}`, { key });
      return res.body.status === 'succeeded' && res.body;
    }, 15_000);
    expect(execution.output).toEqual(answer.output);
    const pushed = await eventually(async () => {
      const res = await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${token}`);
      const { requests } = (await res.json()) as { requests: { body: { task?: { status: { state: string }; artifacts?: { parts: { text?: string }[] }[] } } }[] };
      return requests.find((r) => r.body.task?.status.state === 'TASK_STATE_COMPLETED');
    }, 15_000);
    expect(pushed.body.task?.artifacts?.[0]?.parts[0]?.text).toBe('the pushed answer');
  });
});
