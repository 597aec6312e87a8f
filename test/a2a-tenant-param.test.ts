import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant, uniqueId } from './support/api';
import { openStream } from './support/sse';

const call = (key: string, agentId: string, method: string, params: unknown) =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 6, method, params }, headers: { 'a2a-version': '1.0' } });

describe('A2A\'s tenant param', () => {
  it('does not split a task\'s followers: a send naming a tenant is followed by a subscription and cancelled by a cancel naming none', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const message = { messageId: `tck-cancel-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hold on' }] };
    const task = (await call(key, id, 'SendMessage', { tenant: 'acme', message, configuration: { returnImmediately: true } })).body.result.task;

    const subscription = await openStream(key, id, { id: task.id }, 'SubscribeToTask');
    expect((await subscription.next())?.data.result.task.id).toBe(task.id);
    const cancelled = (await call(key, id, 'CancelTask', { id: task.id })).body.result;
    expect(cancelled.status.state).toBe('TASK_STATE_CANCELED');
    const rest: Record<string, any>[] = [];
    for (let event = await subscription.next(); event; event = await subscription.next()) rest.push(event.data.result);
    expect(rest.map((r) => r.statusUpdate?.status.state)).toEqual(['TASK_STATE_CANCELED']);

    // One cancel, one status message: the gateway's, as for a send without a tenant.
    const history = (await call(key, id, 'GetTask', { id: task.id })).body.result.history;
    expect(history.filter((m: { role: string }) => m.role === 'ROLE_AGENT').map((m: { parts: { text: string }[] }) => m.parts[0]?.text)).toEqual(['cancelled: cancelled by request']);
  });
});
