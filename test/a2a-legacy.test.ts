import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant } from './support/api';

const legacy = (key: string, agentId: string, method: string, params: unknown) =>
  api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 4, method, params } });

describe('A2A v0.3 push notification configs', () => {
  it('tasks/pushNotificationConfig/get with the task id alone answers the task\'s first config, as v0.3 servers do', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const sent = await legacy(key, id, 'message/send', { message: { kind: 'message', messageId: 'legacy-1', role: 'user', parts: [{ kind: 'text', text: 'hello' }] } });
    const taskId: string = sent.body.result.id;

    const none = await legacy(key, id, 'tasks/pushNotificationConfig/get', { id: taskId });
    expect(none.body.error).toMatchObject({ code: -32001 });

    const first = await legacy(key, id, 'tasks/pushNotificationConfig/set', { taskId, pushNotificationConfig: { url: 'https://hooks.example/one', token: 't1' } });
    expect(first.body.result.pushNotificationConfig).toMatchObject({ url: 'https://hooks.example/one', id: expect.any(String) });
    await legacy(key, id, 'tasks/pushNotificationConfig/set', { taskId, pushNotificationConfig: { id: 'second', url: 'https://hooks.example/two' } });

    const got = await legacy(key, id, 'tasks/pushNotificationConfig/get', { id: taskId });
    expect(got.body.result).toEqual({ taskId, pushNotificationConfig: first.body.result.pushNotificationConfig });
    const named = await legacy(key, id, 'tasks/pushNotificationConfig/get', { id: taskId, pushNotificationConfigId: 'second' });
    expect(named.body.result.pushNotificationConfig).toMatchObject({ id: 'second', url: 'https://hooks.example/two' });
    const unknown = await legacy(key, id, 'tasks/pushNotificationConfig/get', { id: taskId, pushNotificationConfigId: 'third' });
    expect(unknown.body.error).toMatchObject({ code: -32001 });
  });
});
