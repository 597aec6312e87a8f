import { beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, api, mockUrl, newAgent, newTenant } from './support/api';
import { buildWorld, documentedOperations, fillPath, paramFor, type Operation, type World } from './support/world';
import { connect } from './support/mcp';

/**
 * A valid request body per operation, so tenant B's request passes validation and reaches the
 * ownership check (an invalid body would be refused before it, proving nothing).
 */
function bodyFor(op: Operation, a: World): unknown {
  switch (`${op.method} ${op.path}`) {
    case 'PATCH /v1/agents/{id}': return { name: 'taken over' };
    case 'PATCH /v1/agents/{id}/context': return { owner: 'tenant b' };
    case 'POST /v1/agents/{id}/executions': return { intent: 'steal', input: { message: 'hi' } };
    case 'POST /v1/agents/{id}/webhooks': return { url: mockUrl('/tenant-b') };
    case 'PUT /v1/hooks/{id}': return { agentId: a.agentId, intent: 'steal', scheme: 'github', secret: 'b-secret-0123456789abcdef' };
    case 'PUT /v1/pools/{name}': return { targets: [{ id: 'tenant-b-target', kind: 'builtin' }] };
    case 'POST /v1/admin/tenants/{tenant}/keys': return {};
    default: return undefined;
  }
}

/**
 * What tenant B may get for tenant A's ids: 404 ("no such thing for you"), never 403, which would tell B the id exists.
 * Admin routes want the operator token (401); an incoming hook is authenticated by its
 * signature, not by a key (401). Pool names are namespaced per tenant (B's PUT creates B's own). Hook ids are global, so B's PUT on A's id is a 409 — but B's
 * hook would have to target B's agent, and A's agent is a 404 first.
 */
function allowedStatuses(op: Operation): number[] {
  if (op.path.startsWith('/v1/admin/')) return [401];
  if (op.method === 'POST' && op.path === '/v1/hooks/{id}') return [401];
  // Pool names are per tenant: B's PUT makes B's own pool of that name, A's is untouched (checked below).
  if (op.method === 'PUT' && op.path === '/v1/pools/{name}') return [201];
  return [404];
}

describe('tenant isolation', () => {
  let a: World;
  let bKey: string;
  let bAgent: string;
  let operations: Operation[];
  /** Strings only tenant A's data contains: none may appear in anything B receives. */
  let secretsOfA: string[];

  beforeAll(async () => {
    a = await buildWorld();
    ({ key: bKey } = await newTenant());
    bAgent = await newAgent(bKey);
    operations = await documentedOperations();
    secretsOfA = [a.tenantId, a.keyId, a.webhookSecret, `ctx-${a.agentId}`, `meta-${a.agentId}`, `input-${a.agentId}`, `hook-secret-${a.hookId}`, a.executionId, a.deliveryId, a.transactionId, a.webhookId];
  }, 60_000);

  const expectNoLeak = (text: string, sentPath: string, label: string) => {
    for (const secret of secretsOfA) {
      if (sentPath.includes(secret)) continue; // B named it in the URL; an echo of the path is not a leak
      expect(text, `${label} leaked ${secret}`).not.toContain(secret);
    }
  };

  it('has a case for every documented operation with path parameters', () => {
    const withParams = operations.filter((op) => op.params.length > 0);
    expect(withParams.length).toBeGreaterThan(20);
    // paramFor throws for a parameter it has no value for: a new route must be added here.
    for (const op of withParams) for (const p of op.params) expect(paramFor(a, op.path, p), `${op.method} ${op.path} {${p}}`).toBeTruthy();
  });

  it("refuses A's agents, pools and hooks named inside B's request bodies", async () => {
    const tx = await api('/v1/transactions', { key: bKey, body: { operations: [{ agentId: a.agentId, increment: { balance: -100 } }, { agentId: bAgent, increment: { balance: 100 } }] } });
    expect(tx.status).toBe(404);
    for (const model of [`agent:${a.agentId}`, a.poolName]) {
      const chat = await api('/v1/chat/completions', { key: bKey, body: { model, messages: [{ role: 'user', content: 'hi' }] } });
      expect(chat.status, model).toBe(404);
      expectNoLeak(JSON.stringify(chat.body), '', model);
    }
    const pointed = await api(`/v1/agents/${bAgent}`, { method: 'PATCH', key: bKey, body: { upstream: { kind: 'pool', pool: a.poolName } } });
    expect(pointed.status).toBe(400);
    const hook = await api(`/v1/hooks/b-hook-${bAgent}`, { method: 'PUT', key: bKey, body: { agentId: a.agentId, intent: 'x', scheme: 'github', secret: 'b-secret-0123456789abcdef' } });
    expect(hook.status).toBe(404);
    // A's task (an execution id) asked for through B's own agent's A2A endpoint: no such task there.
    for (const method of ['GetTask', 'CancelTask', 'SubscribeToTask']) {
      const rpc = await api(`/a2a/${bAgent}/`, { key: bKey, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 1, method, params: { id: a.executionId } } });
      expect(rpc.status, method).toBe(200);
      expect(rpc.body.error, method).toMatchObject({ code: -32001 });
      expectNoLeak(JSON.stringify(rpc.body), a.executionId, method);
    }
    expect((await api(`/v1/agents/${a.agentId}/context`, { key: a.key })).body.data.balance).toBe(90);
  });

  it("refuses B's key on every route that takes A's ids, and never shows A's data", async () => {
    const checked: string[] = [];
    // B's PUT of a pool name creates B's own pool; it goes last so the reads see only A's.
    const ordered = operations.filter((o) => o.params.length > 0).sort((x, y) => Number(x.method === 'PUT' && x.path === '/v1/pools/{name}') - Number(y.method === 'PUT' && y.path === '/v1/pools/{name}'));
    for (const op of ordered) {
      const path = fillPath(op.path, (p) => paramFor(a, op.path, p));
      const body = bodyFor(op, a);
      const headers: Record<string, string> = op.path.endsWith('/context') && op.method === 'PATCH' ? { 'content-type': 'application/merge-patch+json' } : {};
      if (op.method === 'POST' && op.path === '/v1/hooks/{id}') headers['x-github-event'] = 'push';
      if (op.path.endsWith('/events/ws')) headers.upgrade = 'websocket';
      const res = await api(path, { method: op.method, key: bKey, headers, ...(body !== undefined ? { body } : op.method === 'POST' ? { body: {} } : {}) });
      const label = `${op.method} ${op.path}`;
      expect(allowedStatuses(op), `${label} answered ${res.status} ${JSON.stringify(res.body)}`).toContain(res.status);
      if (res.status >= 400) expect(res.body?.error?.code, label).toBeTypeOf('string');
      expectNoLeak(JSON.stringify(res.body), path, label);
      checked.push(label);
    }
    expect(checked.length).toBeGreaterThan(20);
  });

  it("leaves A's data exactly as it was after all of B's attempts", async () => {
    const agent = await api(`/v1/agents/${a.agentId}`, { key: a.key });
    expect(agent.status).toBe(200);
    expect(agent.body.name).toBe('world agent');
    const context = await api(`/v1/agents/${a.agentId}/context`, { key: a.key });
    expect(context.body.data.owner).toBe(`ctx-${a.agentId}`);
    const webhooks = await api(`/v1/agents/${a.agentId}/webhooks`, { key: a.key });
    expect(webhooks.body.data.map((w: { id: string }) => w.id)).toEqual([a.webhookId]);
    const hook = await api(`/v1/hooks/${a.hookId}`, { key: a.key });
    expect(hook.body).toMatchObject({ agentId: a.agentId, intent: 'hook.run' });
    const pool = await api(`/v1/pools/${a.poolName}`, { key: a.key });
    expect(pool.body.targets.map((t: { id: string }) => t.id)).toEqual(['b']);
    const keys = await api(`/v1/admin/tenants/${a.tenantId}/keys`, { key: ADMIN() });
    expect(keys.body.data.every((k: { revokedAt?: string | null }) => !k.revokedAt)).toBe(true);
  });

  it("lists only B's own things: agents, executions, webhooks, deliveries, pools, models, stats, hooks, audit, usage", async () => {
    const bodies = await Promise.all(
      ['/v1/agents?limit=100', `/v1/agents/${bAgent}/executions`, `/v1/agents/${bAgent}/webhooks`, `/v1/agents/${bAgent}/deliveries`, '/v1/pools', '/v1/models', '/v1/stats', '/v1/hooks', `/v1/hooks?agentId=${a.agentId}`, '/v1/audit?limit=200', `/v1/audit?tenant=${a.tenantId}`, '/v1/usage'].map(async (path) => {
        const res = await api(path, { key: bKey });
        expect(res.status, path).toBe(200);
        return [path, JSON.stringify(res.body)] as const;
      }),
    );
    for (const [path, text] of bodies) {
      expectNoLeak(text, '', path);
      expect(text, path).not.toContain(a.agentId);
    }
    const agents = await api('/v1/agents?limit=100', { key: bKey });
    expect(agents.body.data.map((x: { id: string }) => x.id)).toEqual([bAgent]);
  });

  it("refuses A's agents, executions and context to B's MCP tools, and lists only B's agents", async () => {
    const client = await connect(bKey);
    try {
      const calls = [
        { name: 'execute_intent', arguments: { agentId: a.agentId, intent: 'steal' } },
        { name: 'get_execution', arguments: { agentId: a.agentId, executionId: a.executionId } },
        { name: 'get_execution', arguments: { agentId: bAgent, executionId: a.executionId } },
        { name: 'cancel_execution', arguments: { agentId: a.agentId, executionId: a.executionId } },
        { name: 'get_context', arguments: { agentId: a.agentId } },
      ];
      for (const call of calls) {
        const result = (await client.callTool(call)) as { isError?: boolean; content: { text: string }[] };
        const label = `${call.name} ${JSON.stringify(call.arguments)}`;
        expect(result.isError, label).toBe(true);
        expect(JSON.parse(result.content[0]!.text).error.code, label).toBe('not_found');
        expectNoLeak(JSON.stringify(result), JSON.stringify(call.arguments), label);
      }
      const listed = (await client.callTool({ name: 'list_agents', arguments: { limit: 100 } })) as unknown as { structuredContent: { data: { id: string }[] } };
      expect(listed.structuredContent.data.map((x) => x.id)).toEqual([bAgent]);
    } finally {
      await client.close();
    }
  });

  it("refuses B's event stream (SSE and WebSocket) for A's agent", async () => {
    for (const path of [`/v1/agents/${a.agentId}/events`, `/v1/agents/${a.agentId}/events/ws`]) {
      const res = await api(path, { key: bKey, headers: path.endsWith('/ws') ? { upgrade: 'websocket' } : { accept: 'text/event-stream' } });
      expect(res.status, path).toBe(404);
      expectNoLeak(JSON.stringify(res.body), path, path);
    }
  });
});
