import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, BASE, eventually, newAgent, newTenant, uniqueId } from './support/api';

// When the executor or the task store fails, the A2A SDK itself saves a FAILED status into the
// task whose message carries the error's text ("Agent execution error: …", "Event processing
// loop failed: …"), and the object's SQL helper quotes the failing query. Storage faults are
// made here with SQLite triggers in the agent's own database: real storage errors, raised by
// the statements the gateway runs, with nothing in the gateway to switch them on.

const CONFORMANCE = { kind: 'builtin', mode: 'a2a-conformance' };
const GENERIC = (requestId: string) => `Internal error (request ${requestId}): the request could not be completed; the gateway has logged the cause`;
const LEAKS = /SQL failed|INSERT INTO|a2a_t|disk I\/O/;

const call = (key: string, agentId: string, method: string, params: unknown, requestId = uniqueId('req')) =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers: { 'a2a-version': '1.0', 'x-request-id': requestId } });
const message = (fields: Record<string, unknown> = {}) => ({ message: { messageId: `m-${uniqueId('msg')}`, role: 'ROLE_USER', parts: [{ text: 'hello' }], ...fields } });
const textOf = (msg: { parts: { text?: string }[] } | undefined) => msg?.parts.map((p) => p.text ?? '').join('');

/** The `result`s of an SSE answer, read to its end. */
async function streamed(key: string, agentId: string, params: unknown, requestId: string): Promise<Record<string, any>[]> {
  const res = await SELF.fetch(`${BASE}/a2a/${agentId}/`, {
    method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'SendStreamingMessage', params }),
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0', 'x-request-id': requestId },
  });
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  return (await res.text()).split('\n').filter((line) => line.startsWith('data:')).map((line) => JSON.parse(line.slice(5)).result);
}

/** An agent whose A2A tables exist, and a way to run SQL in its object. */
async function agentWithTables(upstream?: unknown) {
  const { key, tenantId } = await newTenant();
  const id = await newAgent(key, upstream ? { upstream } : {});
  // Any A2A request creates the A2A tables.
  expect((await call(key, id, 'GetTask', { id: 'ex_unknown' })).body.error.code).toBe(-32001);
  const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
  const exec = (statement: string) => runInDurableObject(stub, (_instance, state) => { state.storage.sql.exec(statement); });
  return { key, id, exec };
}

/** The structured log lines of internal errors written to console.error. */
function internalErrorLogs(spy: { mock: { calls: unknown[][] } }): { msg?: string; requestId?: string; error?: string }[] {
  return spy.mock.calls.flatMap(([line]) => {
    if (typeof line !== 'string' || !line.startsWith('{')) return [];
    const entry = JSON.parse(line) as { msg?: string; requestId?: string; error?: string };
    return entry.msg === 'a2a internal error' ? [entry] : [];
  });
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('A2A: a FAILED status made from an internal error', () => {
  it('a task save that fails with a storage error after the answer (returnImmediately): the SDK\'s FAILED status names the request id, never the SQL; the cause is logged', async () => {
    const { key, id, exec } = await agentWithTables(CONFORMANCE);
    const later = { configuration: { returnImmediately: true } };
    // The agent's one slot is taken, so the next task waits, SUBMITTED, and its move to WORKING is a later save.
    const holding = (await call(key, id, 'SendMessage', { ...message({ messageId: `tck-cancel-${uniqueId()}` }), ...later })).body.result.task;
    const sent = await call(key, id, 'SendMessage', { ...message({ messageId: `tck-long-running-${uniqueId()}` }), ...later }, 'req-failsave-1');
    expect(sent.body.error).toBeUndefined();
    const taskId = sent.body.result.task.id as string;
    expect(sent.body.result.task.status.state).toBe('TASK_STATE_SUBMITTED');
    // That save fails; the SDK's own FAILED save after it goes through.
    await exec(`CREATE TRIGGER fail_task_save BEFORE UPDATE OF task ON a2a_tasks
      WHEN NEW.id = '${taskId}' AND json_extract(NEW.task, '$.status.state') = 'TASK_STATE_WORKING'
      BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`);
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    expect((await call(key, id, 'CancelTask', { id: holding.id })).body.result.status.state).toBe('TASK_STATE_CANCELED');

    const failed = (m: { parts: { text?: string }[] }) => textOf(m)?.startsWith('Event processing loop failed');
    const task = await eventually(async () => {
      const current = (await call(key, id, 'GetTask', { id: taskId })).body.result;
      return current?.history.some(failed) && current;
    });
    expect(textOf(task.history.find(failed))).toBe(`Event processing loop failed: ${GENERIC('req-failsave-1')}`);
    expect(JSON.stringify(task)).not.toMatch(LEAKS);
    const logged = internalErrorLogs(errors).find((e) => e.requestId === 'req-failsave-1');
    expect(logged?.error).toMatch(/disk I\/O error.*INSERT INTO a2a_tasks/);
    await exec('DROP TRIGGER fail_task_save');
  });

  it('a turn that cannot start (its records fail to save): the blocking answer, GetTask and a stream show FAILED with the generic message; the cause is logged', async () => {
    const { key, id, exec } = await agentWithTables();
    await exec(`CREATE TRIGGER fail_turn BEFORE INSERT ON a2a_turns BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END`);
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);

    const sent = await call(key, id, 'SendMessage', message(), 'req-turn-1');
    expect(sent.body.error).toBeUndefined();
    const task = sent.body.result.task;
    expect(task.status.state).toBe('TASK_STATE_FAILED');
    expect(textOf(task.status.message)).toBe(`Agent execution error: ${GENERIC('req-turn-1')}`);
    expect(JSON.stringify(task)).not.toMatch(LEAKS);
    const stored = (await call(key, id, 'GetTask', { id: task.id })).body.result;
    expect(stored.status).toEqual(task.status);
    expect(JSON.stringify(stored)).not.toMatch(LEAKS);

    const events = await streamed(key, id, message(), 'req-turn-2');
    expect(events.at(-1)?.statusUpdate.status).toMatchObject({ state: 'TASK_STATE_FAILED' });
    expect(textOf(events.at(-1)?.statusUpdate.status.message)).toBe(`Agent execution error: ${GENERIC('req-turn-2')}`);
    expect(JSON.stringify(events)).not.toMatch(LEAKS);

    const logs = internalErrorLogs(errors);
    for (const requestId of ['req-turn-1', 'req-turn-2']) {
      const mine = logs.filter((e) => e.requestId === requestId);
      expect(mine).toHaveLength(1);
      expect(mine[0]?.error).toMatch(/disk I\/O error.*INSERT INTO a2a_turns/);
    }
    await exec('DROP TRIGGER fail_turn');
  });

  it('an upstream failure is not internal: its task keeps the upstream\'s message, in the answer, GetTask and a stream', async () => {
    const { key, id } = await agentWithTables(CONFORMANCE);
    const failing = () => message({ messageId: `tck-task-failure-${uniqueId()}` });
    const task = (await call(key, id, 'SendMessage', failing())).body.result.task;
    expect(task.status.state).toBe('TASK_STATE_FAILED');
    expect(textOf(task.status.message)).toMatch(/^upstream_\w+: tck-task-failure: the scripted failure$/);
    expect((await call(key, id, 'GetTask', { id: task.id })).body.result.status).toEqual(task.status);
    const events = await streamed(key, id, failing(), uniqueId('req'));
    expect(events.at(-1)?.statusUpdate.status.state).toBe('TASK_STATE_FAILED');
    expect(textOf(events.at(-1)?.statusUpdate.status.message)).toMatch(/^upstream_\w+: tck-task-failure: the scripted failure$/);
  });
});
