import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, mockUrl, newAgent, newTenant, uniqueId } from './support/api';

const call = (key: string, agentId: string, method: string, params: unknown) =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 5, method, params }, headers: { 'a2a-version': '1.0' } });
const send = async (key: string, agentId: string, prefix: string, taskId?: string): Promise<{ id: string; status: { state: string } }> =>
  (await call(key, agentId, 'SendMessage', { message: { messageId: `${prefix}-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hi' }], ...(taskId && { taskId }) } })).body.result.task;
const ids = (result: { tasks: { id: string }[] }) => result.tasks.map((t) => t.id);

const STATES = ['SUBMITTED', 'WORKING', 'COMPLETED', 'FAILED', 'CANCELED', 'INPUT_REQUIRED', 'REJECTED', 'AUTH_REQUIRED'].map((s) => `TASK_STATE_${s}`).join(', ');

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

  it("refuses another agent's page token (-32602), or one of the agent's earlier incarnation, rather than paging from its place", async () => {
    const { key } = await newTenant();
    const upstream = { kind: 'builtin', mode: 'a2a-conformance' };
    const [a, b] = [await newAgent(key, { upstream }), await newAgent(key, { upstream })];
    for (const id of [a, b]) for (let i = 0; i < 2; i++) await send(key, id, 'tck-complete-task');
    const tokenOf = async (id: string): Promise<string> => (await call(key, id, 'ListTasks', { pageSize: 1 })).body.result.nextPageToken;
    const [tokenA, tokenB] = [await tokenOf(a), await tokenOf(b)];
    expect(ids((await call(key, a, 'ListTasks', { pageSize: 1, pageToken: tokenA })).body.result)).toHaveLength(1);
    const crossed = await call(key, a, 'ListTasks', { pageToken: tokenB });
    expect(crossed.body.error, JSON.stringify(crossed.body)).toMatchObject({ code: -32602, message: expect.stringMatching(/pageToken/) });
    // Deleted and created again under its id: the old agent's token names another list.
    expect((await api(`/v1/agents/${a}`, { key, method: 'DELETE' })).status).toBe(204);
    await newAgent(key, { id: a, upstream });
    for (let i = 0; i < 2; i++) await send(key, a, 'tck-complete-task');
    expect((await call(key, a, 'ListTasks', { pageToken: tokenA })).body.error).toMatchObject({ code: -32602 });
  });

  it("refuses a filtered list's page token unfiltered or under another filter (-32602): it skipped every newer task without a word", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const done = [await send(key, id, 'tck-complete-task'), await send(key, id, 'tck-complete-task')];
    const waiting = await send(key, id, 'tck-input-required');
    const completed = (await call(key, id, 'ListTasks', { status: 'TASK_STATE_COMPLETED', pageSize: 1 })).body.result;
    expect(ids(completed)).toEqual([done[1]?.id]);
    // The same filters page on, whatever the page's size or shape.
    expect(ids((await call(key, id, 'ListTasks', { status: 'TASK_STATE_COMPLETED', pageSize: 5, includeArtifacts: true, pageToken: completed.nextPageToken })).body.result)).toEqual([done[0]?.id]);
    // Read unfiltered, it answered the older task only: the waiting one, newer, was skipped.
    for (const params of [{}, { status: 'TASK_STATE_INPUT_REQUIRED' }, { status: 'TASK_STATE_COMPLETED', contextId: waiting.id }, { status: 'TASK_STATE_COMPLETED', statusTimestampAfter: '2020-01-01T00:00:00Z' }]) {
      const res = await call(key, id, 'ListTasks', { ...params, pageToken: completed.nextPageToken });
      expect(res.body.error, JSON.stringify(params)).toMatchObject({ code: -32602, message: expect.stringMatching(/pageToken .*with these filters/) });
    }
    // The unfiltered list's token is not a filtered list's, and pages on as before.
    const all = (await call(key, id, 'ListTasks', { pageSize: 1 })).body.result;
    expect((await call(key, id, 'ListTasks', { status: 'TASK_STATE_COMPLETED', pageToken: all.nextPageToken })).body.error).toMatchObject({ code: -32602 });
    expect(ids((await call(key, id, 'ListTasks', { pageToken: all.nextPageToken })).body.result)).toHaveLength(2);
  });

  it('names the status filter the client sent when it is not a task state (it said "-1"), and filters by a name or a number', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const done = await send(key, id, 'tck-complete-task');
    for (const [status, shown] of [['BOGUS', '"BOGUS"'], ['completed', '"completed"'], [99, '99'], [-1, '-1'], [true, 'true'], ['UNRECOGNIZED', '"UNRECOGNIZED"']] as const) {
      const res = await call(key, id, 'ListTasks', { status });
      expect(res.body.error, String(status)).toMatchObject({ code: -32602, message: `status: ${shown} is not a task state (${STATES}, or the enum's number)` });
    }
    expect(ids((await call(key, id, 'ListTasks', { status: 'TASK_STATE_COMPLETED' })).body.result)).toEqual([done.id]);
    expect(ids((await call(key, id, 'ListTasks', { status: 3 })).body.result)).toEqual([done.id]);
    expect(ids((await call(key, id, 'ListTasks', { status: 'TASK_STATE_FAILED' })).body.result)).toEqual([]);
    expect(ids((await call(key, id, 'ListTasks', { status: 'TASK_STATE_UNSPECIFIED' })).body.result)).toEqual([done.id]);
  });
  it('filters by state from the state each execution kept when it finished, not by parsing every output; a row an older release finished is read from its output', async () => {
    // ListTasks parsed the output (up to 1 MiB) of every retained execution on every call, for a page of a few.
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const waiting = await send(key, id, 'tck-input-required');
    const auth = await send(key, id, 'tck-auth-required');
    const done = await send(key, id, 'tck-complete-task');
    const byState = async (status: string) => {
      const res = await call(key, id, 'ListTasks', { status });
      expect(res.body.error, JSON.stringify(res.body.error)).toBeUndefined();
      return ids(res.body.result);
    };
    const agent = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const sql = (query: string, ...args: string[]) => runInDurableObject(agent, (_i, state) => state.storage.sql.exec(query, ...args).toArray());
    expect(Object.fromEntries((await sql('SELECT id, a2a_state FROM executions')).map((r) => [r.id, r.a2a_state])))
      .toEqual({ [waiting.id]: 'input-required', [auth.id]: 'auth-required', [done.id]: '' });
    // An output that cannot be parsed at all: a filter that leaves it out never reads it.
    const output = (await sql('SELECT output FROM executions WHERE id = ?', done.id))[0]?.output;
    await sql("UPDATE executions SET output = '{not json' WHERE id = ?", done.id);
    expect(await byState('TASK_STATE_INPUT_REQUIRED')).toEqual([waiting.id]);
    expect(await byState('TASK_STATE_AUTH_REQUIRED')).toEqual([auth.id]);
    await sql('UPDATE executions SET output = ? WHERE id = ?', String(output), done.id);
    // Finished by a release without the column: its state is read from its output, as before.
    await sql('UPDATE executions SET a2a_state = NULL');
    expect(await byState('TASK_STATE_INPUT_REQUIRED')).toEqual([waiting.id]);
    expect(await byState('TASK_STATE_AUTH_REQUIRED')).toEqual([auth.id]);
    expect(await byState('TASK_STATE_COMPLETED')).toEqual([done.id]);
  });

  it('stops a page at 4 MiB of tasks (at least one) and pages on with nextPageToken, as the REST execution list does', async () => {
    // 100 tasks with large artifacts were built into one answer (and one isolate) whole.
    const { key } = await newTenant();
    // ~150 KB answers: kept in the task (under the by-reference bound), ~400 KB of task each once escaped twice.
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?answerBytes=150000') } });
    const sent: string[] = [];
    for (let i = 0; i < 14; i++) sent.unshift((await send(key, id, 'large')).id);
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const res = await call(key, id, 'ListTasks', { pageSize: 100, includeArtifacts: true, ...(pageToken && { pageToken }) });
      expect(res.body.error, JSON.stringify(res.body.error)).toBeUndefined();
      const page = res.body.result;
      expect(page.tasks.length).toBeGreaterThan(0);
      expect(new TextEncoder().encode(JSON.stringify(page.tasks)).byteLength).toBeLessThanOrEqual(4 * 1024 * 1024);
      expect(page.totalSize).toBe(14);
      seen.push(...ids(page));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken && pages < 20);
    expect(pages).toBeGreaterThan(1);
    expect(seen).toEqual(sent);
    // Without artifacts the same tasks are small: one page.
    const small = (await call(key, id, 'ListTasks', { pageSize: 100 })).body.result;
    expect(ids(small)).toEqual(sent);
    expect(small.nextPageToken).toBe('');
  });
});

describe('ListTaskPushNotificationConfigs', () => {
  it('honours pageSize, paging with nextPageToken in the order the configs were made', async () => {
    // It answered every config with an empty nextPageToken whatever pageSize asked for.
    const { key } = await newTenant();
    const id = await newAgent(key);
    const task = await send(key, id, 'push-list');
    for (const n of [1, 2, 3]) {
      expect((await call(key, id, 'CreateTaskPushNotificationConfig', { taskId: task.id, id: `cfg-${n}`, url: `https://hooks.example/${n}` })).body.result).toMatchObject({ id: `cfg-${n}` });
    }
    const configIds = (result: { configs?: { id: string }[] }) => (result.configs ?? []).map((c) => c.id);
    const seen: string[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = (await call(key, id, 'ListTaskPushNotificationConfigs', { taskId: task.id, pageSize: 2, ...(pageToken && { pageToken }) })).body.result;
      expect(configIds(page).length).toBeLessThanOrEqual(2);
      seen.push(...configIds(page));
      pageToken = page.nextPageToken ?? '';
      pages++;
    } while (pageToken && pages < 5);
    expect(pages).toBe(2);
    expect(seen).toEqual(['cfg-1', 'cfg-2', 'cfg-3']);
    // Without pageSize (and in v0.3, which has none), every config at once.
    expect(configIds((await call(key, id, 'ListTaskPushNotificationConfigs', { taskId: task.id })).body.result)).toEqual(['cfg-1', 'cfg-2', 'cfg-3']);
    const bad = await call(key, id, 'ListTaskPushNotificationConfigs', { taskId: task.id, pageToken: 'nope' });
    expect(bad.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/pageToken/) });
    const negative = await call(key, id, 'ListTaskPushNotificationConfigs', { taskId: task.id, pageSize: -1 });
    expect(negative.body.error).toMatchObject({ code: -32602, message: expect.stringMatching(/pageSize/) });
  });

  it('deletes a config idempotently, as the spec requires: again, or an id the task never had, succeeds; an unknown task is -32001', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const task = await send(key, id, 'push-delete');
    await call(key, id, 'CreateTaskPushNotificationConfig', { taskId: task.id, id: 'cfg', url: 'https://hooks.example/1' });
    for (const configId of ['cfg', 'cfg', 'never']) {
      expect((await call(key, id, 'DeleteTaskPushNotificationConfig', { taskId: task.id, id: configId })).body).toMatchObject({ result: null });
    }
    expect((await call(key, id, 'ListTaskPushNotificationConfigs', { taskId: task.id })).body.result.configs ?? []).toEqual([]);
    const unknownTask = await call(key, id, 'DeleteTaskPushNotificationConfig', { taskId: 'ex_no_such_task', id: 'cfg' });
    expect(unknownTask.body.error).toMatchObject({ code: -32001 });
  });
});
