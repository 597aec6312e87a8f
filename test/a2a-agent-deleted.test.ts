import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant, uniqueId } from './support/api';
import { openStream } from './support/sse';

const call = (key: string, agentId: string, method: string, params: unknown) =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 9, method, params }, headers: { 'a2a-version': '1.0' } });
const message = (messageId: string) => ({ message: { messageId, role: 'ROLE_USER', parts: [{ text: 'hold on' }] } });

describe('A2A when the agent is deleted under an open request', () => {
  it('ends an open stream and a blocking send with -32001 (the task is gone), not an internal error, and a subscription with the turn failed; a new agent of that id has no such task', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' }, concurrency: 3 });
    const stream = await openStream(key, id, message(`tck-cancel-${uniqueId()}`));
    const first = await stream.next();
    expect(first?.data.result.task.status.state).toBe('TASK_STATE_WORKING');
    const blocking = call(key, id, 'SendMessage', message(`tck-cancel-${uniqueId()}`));
    const background = (await call(key, id, 'SendMessage', { ...message(`tck-cancel-${uniqueId()}`), configuration: { returnImmediately: true } })).body.result.task;
    const subscribed = await openStream(key, id, { id: background.id }, 'SubscribeToTask');
    expect((await subscribed.next())?.data.result.task.id).toBe(background.id);
    // The three turns are running (the blocking send's answer waits for its end).
    for (;;) {
      const tasks = (await call(key, id, 'ListTasks', { status: 'TASK_STATE_WORKING' })).body.result.tasks;
      if (tasks.length === 3) break;
    }

    expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(204);

    const last = await stream.next();
    expect(last).toEqual({ event: 'error', data: { jsonrpc: '2.0', id: 'st', error: { code: -32001, message: expect.stringMatching(/agent was deleted/), data: [expect.objectContaining({ reason: 'TASK_NOT_FOUND' })] } } });
    expect(await stream.next()).toBeNull();
    // A subscriber sees the turn fail (the SDK's status for a turn that threw), naming why.
    const failed: Record<string, any>[] = [];
    for (let event = await subscribed.next(); event; event = await subscribed.next()) failed.push(event.data.result);
    expect(failed.at(-1)?.statusUpdate.status).toMatchObject({ state: 'TASK_STATE_FAILED', message: { parts: [expect.objectContaining({ text: expect.stringMatching(/agent was deleted/) })] } });
    const answer = (await blocking).body;
    expect(answer).toEqual({ jsonrpc: '2.0', id: 9, error: { code: -32001, message: expect.stringMatching(/agent was deleted/), data: [expect.objectContaining({ reason: 'TASK_NOT_FOUND' })] } });

    // The same id, created again, starts empty: nothing of the old tasks was written into it.
    await newAgent(key, { id });
    const listed = (await call(key, id, 'ListTasks', {})).body.result;
    expect(listed.tasks).toEqual([]);
    expect(first && (await call(key, id, 'GetTask', { id: first.data.result.task.id })).body.error.code).toBe(-32001);
  });
});
