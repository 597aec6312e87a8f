import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, BASE, mockUrl, newAgent, newTenant, uniqueId } from './support/api';

// An upstream answering ~900 KB of JSON text: within the output limit (1 MiB), and escaped
// again inside the task's text part, so the old task record (text and data parts, or status
// message and history entry) passed SQLite's limit and the save failed with -32603.
const LARGE = 900_000;
const largeUpstream = (state?: string) => ({ kind: 'agent-http', url: mockUrl(`/agent?answerBytes=${LARGE}${state ? `&a2aState=${state}` : ''}`) });

const call = (key: string, agentId: string, method: string, params: unknown, version = '1.0') =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers: { 'a2a-version': version } });
const message = (fields: Record<string, unknown> = {}) => ({ message: { messageId: `m-${uniqueId('msg')}`, role: 'ROLE_USER', parts: [{ text: 'hello' }], ...fields } });
const bytesOf = (value: unknown) => new TextEncoder().encode(JSON.stringify(value)).byteLength;

/** The v1.0 parts of an answer kept by reference to execution `executionId` of agent `agentId`. */
const referenceParts = (agentId: string, executionId: string, field = 'output') => {
  const href = `/v1/agents/${agentId}/executions/${executionId}`;
  return [
    { text: expect.stringMatching(new RegExp(`^This answer is \\d+ bytes, too large to keep in the task\\. It is kept in full as the ${field} of execution ${executionId}: GET ${href} `)), mediaType: 'text/plain' },
    { data: { executionId, href, field, bytes: expect.any(Number) }, mediaType: 'application/json' },
  ];
};

/** Follows a reference with the same API key: the execution's REST resource holds the answer, of the size the reference says. */
async function followReference(key: string, reference: { href: string; field: string; bytes: number }) {
  const res = await api(reference.href, { key });
  expect(res.status).toBe(200);
  const kept = res.body[reference.field];
  expect(bytesOf(kept)).toBe(reference.bytes);
  return kept;
}

/** The `result`s of an SSE answer, read to its end. */
async function streamed(key: string, agentId: string, params: unknown): Promise<Record<string, any>[]> {
  const res = await SELF.fetch(`${BASE}/a2a/${agentId}/`, {
    method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params }),
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
  });
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  return (await res.text()).split('\n').filter((line) => line.startsWith('data:')).map((line) => JSON.parse(line.slice(5)).result);
}

describe('A2A answers too large to keep in a task', () => {
  it('SendMessage completes; the artifact refers to the execution, GetTask shows the same task, and the reference leads to the full answer', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: largeUpstream() });
    const sent = await call(key, id, 'SendMessage', message());
    expect(sent.body.error).toBeUndefined();
    const task = sent.body.result.task;
    expect(task.status.state).toBe('TASK_STATE_COMPLETED');
    expect(task.artifacts).toEqual([{ artifactId: `${task.id}-output`, name: 'output', description: expect.any(String), parts: referenceParts(id, task.id) }]);
    expect(bytesOf(task)).toBeLessThan(64 * 1024);

    expect((await call(key, id, 'GetTask', { id: task.id })).body.result).toEqual(task);
    const answer = await followReference(key, task.artifacts[0].parts[1].data);
    expect(answer.answer.length).toBeGreaterThan(LARGE * 0.7);

    // The reference obeys the send's acceptedOutputModes as the artifact it stands for would.
    const json = (await call(key, id, 'SendMessage', { ...message(), configuration: { acceptedOutputModes: ['application/json'] } })).body.result.task;
    expect(json.artifacts).toEqual([{ artifactId: `${json.id}-output`, name: 'output', description: expect.any(String), parts: [referenceParts(id, json.id)[1]] }]);
    expect((await call(key, id, 'GetTask', { id: json.id })).body.result).toEqual(json);
  });

  it('a stream shows the same artifact and status as GetTask afterwards', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: largeUpstream() });
    const events = await streamed(key, id, message());
    const taskId: string = events[0]?.task.id;
    const artifact = events.find((e) => e.artifactUpdate)?.artifactUpdate.artifact;
    const last = events.at(-1)?.statusUpdate;
    expect(last.status.state).toBe('TASK_STATE_COMPLETED');
    const stored = (await call(key, id, 'GetTask', { id: taskId })).body.result;
    expect(stored.artifacts).toEqual([artifact]);
    expect(artifact.parts).toEqual(referenceParts(id, taskId));
    expect(stored.status).toEqual(last.status);
  });

  it('v0.3 message/send completes the same way, and tasks/get shows the same task', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: largeUpstream() });
    const params = { message: { kind: 'message', messageId: `m-${uniqueId('msg')}`, role: 'user', parts: [{ kind: 'text', text: 'hello' }] } };
    const sent = await call(key, id, 'message/send', params, '0.3');
    expect(sent.body.error).toBeUndefined();
    const task = sent.body.result;
    expect(task).toMatchObject({ kind: 'task', status: { state: 'completed' } });
    const href = `/v1/agents/${id}/executions/${task.id}`;
    expect(task.artifacts).toEqual([expect.objectContaining({
      artifactId: `${task.id}-output`,
      parts: [
        expect.objectContaining({ kind: 'text', text: expect.stringContaining(`GET ${href}`) }),
        expect.objectContaining({ kind: 'data', data: { executionId: task.id, href, field: 'output', bytes: expect.any(Number) } }),
      ],
    })]);
    expect((await call(key, id, 'tasks/get', { id: task.id }, '0.3')).body.result).toEqual(task);
    await followReference(key, task.artifacts[0].parts[1].data);
  });

  it('an input-required answer refers to the execution in its status message and history; a follow-up turn still works', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: largeUpstream('input-required') });
    const sent = await call(key, id, 'SendMessage', message());
    expect(sent.body.error).toBeUndefined();
    const asking = sent.body.result.task;
    expect(asking.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    expect(asking.status.message).toMatchObject({ messageId: `${asking.id}-status`, role: 'ROLE_AGENT', parts: referenceParts(id, asking.id) });
    expect(asking.history.at(-1)).toEqual(asking.status.message);
    expect((await call(key, id, 'GetTask', { id: asking.id })).body.result).toEqual(asking);
    const output = await followReference(key, asking.status.message.parts[1].data);
    expect(output.a2a).toEqual({ state: 'input-required' });

    // The next turn's upstream completes with a small answer: the task goes on.
    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { kind: 'agent-http', url: mockUrl() } } });
    const answered = await call(key, id, 'SendMessage', message({ taskId: asking.id, contextId: asking.contextId, parts: [{ text: 'more' }] }));
    expect(answered.body.error).toBeUndefined();
    expect(answered.body.result.task).toMatchObject({ id: asking.id, status: { state: 'TASK_STATE_COMPLETED' } });
    const done = (await call(key, id, 'GetTask', { id: asking.id })).body.result;
    expect(done).toEqual(answered.body.result.task);
    expect(done.history.map((m: { role: string }) => m.role)).toEqual(['ROLE_USER', 'ROLE_AGENT', 'ROLE_USER']);
    expect(done.artifacts[0].parts[0].text).toContain('more');
  });
});

describe('A2A internal errors', () => {
  it('a storage failure answers -32603 with a generic message naming the request id, never the SQL', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const task = (await call(key, id, 'SendMessage', message())).body.result.task;
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    await runInDurableObject(stub, (_instance, state) => { state.storage.sql.exec('ALTER TABLE a2a_tasks RENAME TO a2a_tasks_gone'); });
    try {
      const res = await api(`/a2a/${id}/`, { key, body: { jsonrpc: '2.0', id: 7, method: 'GetTask', params: { id: task.id } }, headers: { 'a2a-version': '1.0', 'x-request-id': 'req-storage-1' } });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ jsonrpc: '2.0', id: 7, error: { code: -32603, message: 'Internal error (request req-storage-1): the request could not be completed; the gateway has logged the cause' } });
    } finally {
      await runInDurableObject(stub, (_instance, state) => { state.storage.sql.exec('ALTER TABLE a2a_tasks_gone RENAME TO a2a_tasks'); });
    }
  });
});
