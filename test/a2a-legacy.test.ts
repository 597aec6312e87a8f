import { env, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { SendMessageRequest, TaskState } from '@a2a-js/sdk';
import { LegacyJsonRpcTransport } from '@a2a-js/sdk/compat/v0_3/client';
import { api, BASE, eventually, mockUrl, newAgent, newTenant, uniqueId } from './support/api';

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

describe('A2A v0.3 message/send', () => {
  it('waits for the turn when configuration leaves blocking unset, as v0.3 servers do (only blocking: false answers at once)', async () => {
    // The SDK's v0.3 translation read an unset `blocking` as false, so a send whose configuration
    // named only acceptedOutputModes or historyLength was answered at once, still working.
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const send = (configuration: Record<string, unknown>) => legacy(key, id, 'message/send', {
      message: { kind: 'message', messageId: `tck-complete-task-${uniqueId()}`, role: 'user', parts: [{ kind: 'text', text: 'hello' }] },
      configuration,
    });
    for (const configuration of [{}, { acceptedOutputModes: ['text/plain'] }, { historyLength: 1 }, { blocking: null }, { blocking: true }]) {
      const sent = await send(configuration);
      expect(sent.body.result?.status?.state, JSON.stringify(configuration)).toBe('completed');
    }
    const immediate = await legacy(key, id, 'message/send', {
      message: { kind: 'message', messageId: `tck-long-running-${uniqueId()}`, role: 'user', parts: [{ kind: 'text', text: 'hello' }] },
      configuration: { blocking: false },
    });
    expect(immediate.body.result.status.state).not.toBe('completed');
  });
});

describe('A2A v0.3 agent card', () => {
  it('a card asked for without A2A-Version (a v0.3 client) also carries the v0.3 fields, so such a client finds the endpoint and its auth', async () => {
    // v0.3 clients send no A2A-Version and read the endpoint from the card's `url`, the auth
    // from `security` and `securitySchemes` (`type: "http"`); a v1.0-only card had none of them,
    // so they could not use an agent whose endpoint serves v0.3 all the same.
    const { key } = await newTenant();
    const id = await newAgent(key, { a2a: { publicCard: true } });
    const path = `/a2a/${id}/.well-known/agent-card.json`;
    const legacyCard = await api(path);
    expect(legacyCard.status).toBe(200);
    expect(legacyCard.headers.get('vary')).toMatch(/A2A-Version/i);
    expect(legacyCard.body).toMatchObject({
      url: `${BASE}/a2a/${id}/`, preferredTransport: 'JSONRPC', protocolVersion: '0.3.0', supportsAuthenticatedExtendedCard: false,
      security: [{ bearer: [] }], securitySchemes: { bearer: { type: 'http', scheme: 'Bearer' } },
    });
    // Still the v1.0 card too, for a client that reads it without the header.
    const current = await api(path, { headers: { 'a2a-version': '1.0' } });
    expect(current.body).toEqual(expect.objectContaining({ supportedInterfaces: legacyCard.body.supportedInterfaces, securityRequirements: legacyCard.body.securityRequirements }));
    expect(legacyCard.body.securitySchemes.bearer.httpAuthSecurityScheme).toEqual(current.body.securitySchemes.bearer.httpAuthSecurityScheme);
    // A v1.0 client asks with A2A-Version: 1.0 and gets the v1.0 card alone, with its own ETag.
    for (const field of ['url', 'preferredTransport', 'protocolVersion', 'security', 'supportsAuthenticatedExtendedCard']) expect(current.body).not.toHaveProperty(field);
    expect(current.body.securitySchemes.bearer).not.toHaveProperty('type');
    expect(current.headers.get('etag')).not.toBe(legacyCard.headers.get('etag'));
    expect((await api(path, { headers: { 'if-none-match': legacyCard.headers.get('etag')! } })).status).toBe(304);
    // The SDK's v0.3 client transport, pointed at the card's url, is served.
    const transport = new LegacyJsonRpcTransport({ endpoint: legacyCard.body.url, fetchImpl: (input, init) => {
      const request = new Request(input, init);
      request.headers.set('authorization', `Bearer ${key}`);
      return SELF.fetch(request);
    } });
    const sent = await transport.sendMessage(SendMessageRequest.fromJSON({ message: { messageId: 'legacy-card-1', role: 'ROLE_USER', parts: [{ text: 'hello' }] } }));
    expect(sent).toMatchObject({ id: expect.stringMatching(/^ex_/), status: { state: TaskState.TASK_STATE_COMPLETED } });
  });
});

describe('A2A v0.3 push notifications', () => {
  it('a config made with the v0.3 names is sent the task in v0.3 form; one made in 1.0 the StreamResponse', async () => {
    // A v0.3 client's receiver reads a v0.3 Task ({kind: "task", status: {state: "completed"}});
    // deliveries used to be v1.0's {"task": {...}} for every config, which it cannot read.
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'builtin', mode: 'a2a-conformance' } });
    const legacyToken = `tok-${uniqueId()}`;
    const currentToken = `tok-${uniqueId()}`;
    const sent = await legacy(key, id, 'message/send', {
      message: { kind: 'message', messageId: `tck-long-running-${uniqueId()}`, role: 'user', parts: [{ kind: 'text', text: 'hello' }] },
      configuration: { blocking: false, pushNotificationConfig: { url: mockUrl('/a2a-push'), token: legacyToken } },
    });
    const taskId: string = sent.body.result.id;
    const made = await api(`/a2a/${id}/`, { key, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 5, method: 'CreateTaskPushNotificationConfig', params: { taskId, url: mockUrl('/a2a-push'), token: currentToken } } });
    expect(made.body.result).toMatchObject({ taskId });

    type Received = { body: Record<string, any>; headers: Record<string, string> };
    const deliveries = (token: string) => eventually(async () => {
      const { requests } = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${token}`)).json()) as { requests: Received[] };
      return requests.some((r) => JSON.stringify(r.body).includes('ompleted') || JSON.stringify(r.body).includes('COMPLETED')) && requests;
    }, 15_000);
    const [legacyDelivery] = await deliveries(legacyToken);
    expect(legacyDelivery!.headers['content-type']).toMatch(/^application\/json/);
    expect(legacyDelivery!.body).toMatchObject({ kind: 'task', id: taskId, contextId: expect.any(String), status: { state: expect.stringMatching(/^(submitted|working|completed)$/) } });
    expect(legacyDelivery!.body).not.toHaveProperty('task');
    const [currentDelivery] = await deliveries(currentToken);
    expect(currentDelivery!.headers['content-type']).toBe('application/a2a+json');
    expect(currentDelivery!.body).toMatchObject({ task: { id: taskId, status: { state: expect.stringMatching(/^TASK_STATE_/) } } });
  });
});
