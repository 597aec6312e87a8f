import { describe, expect, it } from 'vitest';
import { api, eventually, newAgent, newTenant, uniqueId } from './support/api';

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
