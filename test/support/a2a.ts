import { SELF } from 'cloudflare:test';
import { GetTaskRequest, type SendMessageRequest, type Task } from '@a2a-js/sdk';
import type { Client } from '@a2a-js/sdk/client';
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory } from '@a2a-js/sdk/client';
import { api, BASE } from './api';

/** A fetch for the SDK client that reaches the gateway under test, with the tenant's key. */
function gatewayFetch(key?: string, extra: Record<string, string> = {}): typeof fetch {
  return (input, init) => {
    const request = new Request(input, init);
    if (key) request.headers.set('authorization', `Bearer ${key}`);
    for (const [name, value] of Object.entries(extra)) request.headers.set(name, value);
    return SELF.fetch(request);
  };
}

/** The SDK's own client, discovering the agent from its card. */
export async function a2aClient(key: string, agentId: string, extra: Record<string, string> = {}): Promise<Client> {
  const fetchImpl = gatewayFetch(key, extra);
  const factory = new ClientFactory(ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
    transports: [new JsonRpcTransportFactory({ fetchImpl })],
    cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
  }));
  return factory.createFromUrl(`${BASE}/a2a/${agentId}/`);
}

/** A send answered with a task (not a message). */
export async function sendTask(client: Client, request: SendMessageRequest): Promise<Task> {
  const result = await client.sendMessage(request);
  if (!('id' in result)) throw new Error('expected a task, got a message');
  return result;
}

export const getTask = (client: Client, id: string, historyLength?: number) => client.getTask(GetTaskRequest.fromJSON({ id, ...(historyLength !== undefined && { historyLength }) }));

/** A raw JSON-RPC call to an agent's A2A endpoint (A2A-Version 1.0 unless `headers` say otherwise). */
export async function rpc(key: string, agentId: string, method: string, params: unknown, headers: Record<string, string> = { 'a2a-version': '1.0' }) {
  return api(`/a2a/${agentId}/`, { key, body: { jsonrpc: '2.0', id: 1, method, params }, headers });
}
