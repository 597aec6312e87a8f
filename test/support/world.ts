import { ADMIN, api, eventually, mockUrl, newTenant, uniqueId } from './api';

/** One of everything a tenant can own, made through the API, with every id a route takes. */
export interface World {
  tenantId: string;
  key: string;
  keyId: string;
  /** A second key of the tenant, safe to revoke. */
  spareKeyId: string;
  agentId: string;
  /** A second agent (transactions, and something left when the first is deleted). */
  otherAgentId: string;
  executionId: string;
  webhookId: string;
  webhookSecret: string;
  deliveryId: string;
  poolName: string;
  hookId: string;
  transactionId: string;
  /** Values of each path parameter name, as the routes name them. */
  params: Record<string, string>;
}

const ok = <T>(res: { status: number; body: T }, expected: number, what: string): T => {
  if (res.status !== expected) throw new Error(`${what}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
};

/** Builds a tenant with an agent, execution, context, webhook + delivery, pool, hook and transaction. */
export async function buildWorld(): Promise<World> {
  const { tenantId, key, keyId } = await newTenant();
  const spare = ok(await api<{ id: string }>(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'spare' } }), 201, 'spare key');
  const poolName = uniqueId('pool');
  ok(await api(`/v1/pools/${poolName}`, { method: 'PUT', key, body: { targets: [{ id: 'b', kind: 'builtin' }] } }), 201, 'pool');
  const agentId = uniqueId('world');
  ok(await api('/v1/agents', { key, body: { id: agentId, name: 'world agent', upstream: { kind: 'pool', pool: poolName }, metadata: { secret: `meta-${agentId}` } } }), 201, 'agent');
  const otherAgentId = uniqueId('world');
  ok(await api('/v1/agents', { key, body: { id: otherAgentId } }), 201, 'other agent');
  ok(await api(`/v1/agents/${agentId}/context`, { method: 'PATCH', key, body: { owner: `ctx-${agentId}`, balance: 100 }, headers: { 'content-type': 'application/merge-patch+json' } }), 200, 'context');
  ok(await api(`/v1/agents/${otherAgentId}/context`, { method: 'PATCH', key, body: { balance: 0 }, headers: { 'content-type': 'application/merge-patch+json' } }), 200, 'context');
  const webhook = ok(await api<{ id: string; secret: string }>(`/v1/agents/${agentId}/webhooks`, { key, body: { url: mockUrl('/hook') } }), 201, 'webhook');
  const execution = ok(await api<{ id: string }>(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'world.run', input: { message: `input-${agentId}` } } }), 200, 'execution');
  const deliveries = await eventually(async () => {
    const res = await api<{ data: { id: string }[] }>(`/v1/agents/${agentId}/deliveries`, { key });
    return res.body.data.length > 0 ? res.body.data : undefined;
  });
  const hookId = uniqueId('hook');
  ok(await api(`/v1/hooks/${hookId}`, { method: 'PUT', key, body: { agentId, intent: 'hook.run', scheme: 'github', secret: `hook-secret-${hookId}` } }), 201, 'hook');
  const tx = ok(
    await api<{ id: string }>('/v1/transactions', { key, body: { operations: [{ agentId, increment: { balance: -10 }, min: { balance: 0 } }, { agentId: otherAgentId, increment: { balance: 10 } }] } }),
    200,
    'transaction',
  );
  const deliveryId = deliveries[0]!.id;
  return {
    tenantId, key, keyId, spareKeyId: spare.id, agentId, otherAgentId, executionId: execution.id, webhookId: webhook.id, webhookSecret: webhook.secret,
    deliveryId, poolName, hookId, transactionId: tx.id,
    params: {
      keyId: spare.id,
      tenant: tenantId,
      agentId,
      txId: tx.id,
      eid: execution.id,
      wid: webhook.id,
      did: deliveryId,
      name: poolName,
      model: poolName,
    },
  };
}

/** The value of path parameter `name` in `path` for this world (`id` depends on the route). */
export function paramFor(world: World, path: string, name: string): string {
  if (name === 'id') {
    if (path.startsWith('/v1/hooks/') || path.endsWith('/hooks/{id}')) return world.hookId;
    if (path.startsWith('/v1/transactions/')) return world.transactionId;
    return world.agentId;
  }
  const value = world.params[name];
  if (value === undefined) throw new Error(`no value for path parameter ${name} of ${path}`);
  return value;
}

/** An operation of the OpenAPI document. */
export interface Operation {
  method: string;
  path: string;
  params: string[];
}

/** Every operation the app documents, from its own /openapi.json. */
export async function documentedOperations(): Promise<Operation[]> {
  const doc = (await api<{ paths: Record<string, Record<string, unknown>> }>('/openapi.json')).body;
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.keys(item)
      .filter((m) => ['get', 'put', 'post', 'patch', 'delete'].includes(m))
      .map((method) => ({ method: method.toUpperCase(), path, params: [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!) })),
  );
}

/** `path` with each `{param}` replaced by `value(param)`. */
export function fillPath(path: string, value: (param: string) => string): string {
  return path.replace(/\{(\w+)\}/g, (_m, name: string) => value(name));
}
