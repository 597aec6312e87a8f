import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant, uniqueId } from './support/api';

const call = (key: string, agentId: string, method: string, params: unknown) =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 5, method, params }, headers: { 'a2a-version': '1.0' } });
const send = async (key: string, agentId: string, prefix: string, taskId?: string): Promise<{ id: string; status: { state: string } }> =>
  (await call(key, agentId, 'SendMessage', { message: { messageId: `${prefix}-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }], ...(taskId && { taskId }) } })).body.result.task;
const ids = (result: { tasks: { id: string }[] }) => result.tasks.map((t) => t.id);

describe('ListTasks', () => {
  it('lists the most recently updated task first (A2A\'s order), and pages through them in that order', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const waiting = await send(key, id, 'tck-input-required');
    expect(waiting.status.state).toBe('TASK_STATE_INPUT_REQUIRED');
    const done = await send(key, id, 'tck-complete-task');
    const later = await send(key, id, 'tck-complete-task');
    // The oldest task gets its answer last: it is now the most recently updated. (Apart by a
    // few ms, so that no two finish in the same millisecond, where creation order decides.)
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await send(key, id, 'tck-complete-task', waiting.id)).status.state).toBe('TASK_STATE_COMPLETED');

    const all = (await call(key, id, 'ListTasks', {})).body.result;
    expect(ids(all)).toEqual([waiting.id, later.id, done.id]);
    const stamps = all.tasks.map((t: { status: { timestamp: string } }) => Date.parse(t.status.timestamp));
    expect([...stamps].sort((a, b) => b - a)).toEqual(stamps);

    const seen: string[] = [];
    let pageToken = '';
    do {
      const page = (await call(key, id, 'ListTasks', { pageSize: 1, ...(pageToken && { pageToken }) })).body.result;
      expect(page.totalSize).toBe(3);
      seen.push(...ids(page));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([waiting.id, later.id, done.id]);

    const bad = await call(key, id, 'ListTasks', { pageToken: '12' });
    expect(bad.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/pageToken/) });
  });
});
