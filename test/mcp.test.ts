import { createExecutionContext, env, SELF } from 'cloudflare:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { MCP_CORS_ALLOW_HEADERS } from '../worker/middleware/mcp-cors';
import { ADMIN, api, BASE, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { accepts, type Schema } from './support/json-schema';
import { connect } from './support/mcp';

interface ToolResult {
  isError?: boolean;
  structuredContent?: any;
  content: { type: string; text?: string }[];
}

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<ToolResult> {
  return (await client.callTool({ name, arguments: args })) as ToolResult;
}

/** The structured value of a successful tool call; fails the test on a tool error. */
async function value(client: Client, name: string, args: Record<string, unknown>): Promise<any> {
  const result = await call(client, name, args);
  expect(result.isError ?? false, JSON.stringify(result.content)).toBe(false);
  expect(JSON.parse(result.content[0]?.text ?? 'null')).toEqual(result.structuredContent);
  return result.structuredContent;
}

/** The gateway error of a failed tool call. */
async function toolError(client: Client, name: string, args: Record<string, unknown>): Promise<{ code: string; message: string; requestId: string; details?: any }> {
  const result = await call(client, name, args);
  expect(result.isError).toBe(true);
  expect(result.structuredContent).toBeUndefined();
  return JSON.parse(result.content[0]?.text ?? 'null').error;
}

const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};

function post(headers: Record<string, string>, body: string = JSON.stringify(initialize)) {
  return SELF.fetch(`${BASE}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body });
}

describe('MCP: tools', () => {
  it('initializes and lists exactly the five tools, each with input and output schemas', async () => {
    const { key } = await newTenant();
    const client = await connect(key);
    expect(client.getServerVersion()).toMatchObject({ name: 'edge-agent-gateway' });
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['cancel_execution', 'execute_intent', 'get_context', 'get_execution', 'list_agents']);
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    for (const tool of tools) {
      expect(tool.inputSchema.type).toBe('object');
      expect(tool.description).toBeTruthy();
      expect(tool.outputSchema?.type).toBe('object');
    }
    expect(byName.execute_intent?.inputSchema.required).toEqual(expect.arrayContaining(['agentId', 'intent']));
    expect(Object.keys(byName.execute_intent?.inputSchema.properties ?? {})).toEqual(expect.arrayContaining(['agentId', 'intent', 'input', 'wait']));
    expect(byName.get_execution?.inputSchema.required).toEqual(expect.arrayContaining(['agentId', 'executionId']));
    expect(byName.get_context?.inputSchema.required).toEqual(['agentId']);
    expect(byName.list_agents?.annotations?.readOnlyHint).toBe(true);
    await client.close();
  });

  it('advertises a tool list that never changes, so a 2026-07-28 listen is acknowledged with nothing to send and ends', async () => {
    const { key } = await newTenant();
    const client = await connect(key);
    expect(client.getServerCapabilities()?.tools).toEqual({ listChanged: false });
    await client.close();
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} };
    const res = await post(
      { authorization: `Bearer ${key}`, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'subscriptions/listen' },
      JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'subscriptions/listen', params: { notifications: { toolsListChanged: true }, _meta: meta } }),
    );
    expect(res.status).toBe(200);
    // The first event only: a stream kept open for notifications would not end.
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const first = (await reader.read()).value ?? '';
    await reader.cancel();
    const ack = JSON.parse(/^data: (.*)$/m.exec(first)?.[1] ?? 'null');
    expect(ack).toMatchObject({ method: 'notifications/subscriptions/acknowledged', params: { notifications: {} } });
  });

  it("list_agents pages through the tenant's agents by id", async () => {
    const { key } = await newTenant();
    const a = await newAgent(key, { id: 'mcp-list-a' });
    const b = await newAgent(key, { id: 'mcp-list-b' });
    const client = await connect(key);
    const all = await value(client, 'list_agents', {});
    expect(all.data.map((x: { id: string }) => x.id)).toEqual([a, b]);
    expect(all.nextCursor).toBeNull();
    const first = await value(client, 'list_agents', { limit: 1 });
    expect(first.data.map((x: { id: string }) => x.id)).toEqual([a]);
    const second = await value(client, 'list_agents', { limit: 1, cursor: first.nextCursor });
    expect(second.data.map((x: { id: string }) => x.id)).toEqual([b]);
    // The same page REST answers.
    expect((await api('/v1/agents', { key })).body.data).toEqual(all.data);
  });

  it('execute_intent with wait returns the succeeded execution, readable through REST', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await connect(key);
    const execution = await value(client, 'execute_intent', { agentId: id, intent: 'support.reply', input: { message: 'How long does shipping take?' }, wait: true });
    expect(execution).toMatchObject({ agentId: id, intent: 'support.reply', status: 'succeeded', upstream: 'builtin', output: { topic: 'shipping', answered: true } });
    const rest = await api(`/v1/agents/${id}/executions/${execution.id}`, { key });
    expect(rest.status).toBe(200);
    expect(rest.body).toEqual(execution);
  });

  it('returns an execution whose output is larger than an input may be (up to 1 MiB) or deeply nested, as REST does', async () => {
    // An upstream output may take 1 MiB and any depth; the tools' output schema used to bound
    // it like an execution's input (256 KiB, 32 levels), so such a succeeded execution came back
    // as an "Output validation error" and a host could run it again.
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const client = await connect(key);
    const large = await value(client, 'execute_intent', { agentId: id, intent: 'x', input: { mock: { outputBytes: 300_000 } }, wait: true });
    expect(large).toMatchObject({ status: 'succeeded', output: 'o'.repeat(300_000) });
    expect(await value(client, 'get_execution', { agentId: id, executionId: large.id })).toEqual(large);
    let nested: unknown = 'leaf';
    for (let level = 0; level < 40; level++) nested = [nested];
    const deep = await value(client, 'execute_intent', { agentId: id, intent: 'x', input: { mock: { body: JSON.stringify({ output: nested }) } }, wait: true });
    expect(deep).toMatchObject({ status: 'succeeded', output: nested });
    expect((await api(`/v1/agents/${id}/executions/${deep.id}`, { key })).body).toEqual(deep);
  });

  it('execute_intent takes a retry that spells a default out (timeoutMs 30000) as the same call, and REST sync with the key as the same request', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await connect(key);
    const queued = await value(client, 'execute_intent', { agentId: id, intent: 'greet', idempotencyKey: 'spelled' });
    const again = await value(client, 'execute_intent', { agentId: id, intent: 'greet', input: null, timeoutMs: 30_000, idempotencyKey: 'spelled' });
    expect(again.id).toBe(queued.id);
    // wait: true runs it as REST's sync mode with REST's default deadline: one request.
    const waited = await value(client, 'execute_intent', { agentId: id, intent: 'greet', wait: true, idempotencyKey: 'waited' });
    const rest = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'greet' }, headers: { 'idempotency-key': 'waited' } });
    expect(rest.status).toBe(200);
    expect(rest.body.id).toBe(waited.id);
    expect(rest.headers.get('idempotent-replayed')).toBe('true');
  });

  it('shares idempotency keys with REST executions, each face refusing a key reused with another request in its own shape', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await connect(key);
    // REST first, then execute_intent with other arguments: a tool error naming the MCP argument, not the REST header.
    const rest = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'greet', mode: 'async' }, headers: { 'idempotency-key': 'shared-1' } });
    expect(rest.status).toBe(202);
    const reused = await toolError(client, 'execute_intent', { agentId: id, intent: 'other', idempotencyKey: 'shared-1' });
    expect(reused).toMatchObject({ code: 'idempotency_key_reused', details: { executionId: rest.body.id } });
    expect(reused.message).toMatch(/idempotencyKey/);
    expect(reused.message).toMatch(/REST/);
    // The same arguments replay the REST execution.
    expect((await value(client, 'execute_intent', { agentId: id, intent: 'greet', idempotencyKey: 'shared-1' })).id).toBe(rest.body.id);
    // execute_intent first, then REST with another body: REST's 422 in the gateway's envelope.
    const mcp = await value(client, 'execute_intent', { agentId: id, intent: 'greet', idempotencyKey: 'shared-2' });
    const refused = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'other', mode: 'async' }, headers: { 'idempotency-key': 'shared-2' } });
    expect(refused.status).toBe(422);
    expect(refused.body.error).toMatchObject({ code: 'idempotency_key_reused', message: expect.stringMatching(/Idempotency-Key/), details: { executionId: mcp.id } });
  });

  it('execute_intent without wait returns the queued execution; get_execution follows it to the end', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await connect(key);
    const queued = await value(client, 'execute_intent', { agentId: id, intent: 'greet', input: 'hello there' });
    expect(queued).toMatchObject({ agentId: id, intent: 'greet', status: 'queued' });
    const done = await eventually(async () => {
      const current = await value(client, 'get_execution', { agentId: id, executionId: queued.id });
      return current.status === 'succeeded' && current;
    });
    expect(done.output).toMatchObject({ topic: 'greeting' });
  });

  it('execute_intent with wait on a failing upstream is a tool error carrying the execution', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const client = await connect(key);
    const error = await toolError(client, 'execute_intent', { agentId: id, intent: 'x', input: { mock: { failStatus: 500 } }, wait: true });
    expect(error.code).toBe('upstream_failed');
    expect(error.details.execution).toMatchObject({ id: error.details.executionId, status: 'failed' });
    expect((await api(`/v1/agents/${id}/executions/${error.details.executionId}`, { key })).body.status).toBe('failed');
  });

  it('execute_intent with wait gives up at its deadline with upstream_timeout', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await connect(key);
    const error = await toolError(client, 'execute_intent', { agentId: id, intent: 'slow', input: { simulateLatencyMs: 20_000 }, wait: true, timeoutMs: 300 });
    expect(error.code).toBe('upstream_timeout');
    expect(error.details.execution).toMatchObject({ status: 'failed', error: { code: 'upstream_timeout' } });
  });

  it('cancel_execution cancels a queued execution, then reports already_finished', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await connect(key);
    const running = await value(client, 'execute_intent', { agentId: id, intent: 'slow', input: { simulateLatencyMs: 1500 } });
    const queued = await value(client, 'execute_intent', { agentId: id, intent: 'next' });
    const cancelled = await value(client, 'cancel_execution', { agentId: id, executionId: queued.id });
    expect(cancelled).toMatchObject({ id: queued.id, status: 'cancelled', attempts: 0 });
    expect((await api(`/v1/agents/${id}/executions/${queued.id}`, { key })).body.status).toBe('cancelled');
    const again = await toolError(client, 'cancel_execution', { agentId: id, executionId: queued.id });
    expect(again.code).toBe('already_finished');
    await eventually(async () => (await api(`/v1/agents/${id}/executions/${running.id}`, { key })).body.status === 'succeeded');
  });

  it('get_context returns what PATCH /v1/agents/:id/context wrote', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const patched = await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { customer: { tier: 'gold' }, locale: 'de' } });
    expect(patched.status).toBe(200);
    const client = await connect(key);
    expect(await value(client, 'get_context', { agentId: id })).toEqual({ version: 1, data: { customer: { tier: 'gold' }, locale: 'de' } });
  });

  it('execute_intent with wait on a paused agent is agent_paused, worded for MCP; without wait it queues', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}`, { key, method: 'PATCH', body: { paused: true } })).status).toBe(200);
    const client = await connect(key);
    const error = await toolError(client, 'execute_intent', { agentId: id, intent: 'x', wait: true });
    expect(error.code).toBe('agent_paused');
    expect(error.message).toMatch(/without wait/);
    expect(error.message).not.toMatch(/mode/);
    expect(await value(client, 'execute_intent', { agentId: id, intent: 'x' })).toMatchObject({ status: 'queued' });
  });

  it('answers not_found for unknown agents and executions', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await connect(key);
    expect((await toolError(client, 'get_context', { agentId: 'no-such-agent' })).code).toBe('not_found');
    expect((await toolError(client, 'get_execution', { agentId: id, executionId: 'ex_missing' })).code).toBe('not_found');
  });
});

describe('MCP: plain HTTP', () => {
  it('answers a bare tools/call (no initialize, as curl would send it) as an SSE message', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await post({ authorization: `Bearer ${key}` }, JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: id, intent: 'support.reply', input: 'Can I get a refund?', wait: true } } }));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const data = /^data: (.*)$/m.exec(await res.text())?.[1];
    const message = JSON.parse(data ?? 'null');
    expect(message).toMatchObject({ jsonrpc: '2.0', id: 7, result: { structuredContent: { agentId: id, status: 'succeeded', output: { topic: 'refunds' } } } });
  });
});

describe('MCP: tenant isolation', () => {
  it("another tenant's key neither sees nor touches the agents", async () => {
    const a = await newTenant();
    const b = await newTenant();
    const agentA = await newAgent(a.key);
    const agentB = await newAgent(b.key);
    const clientA = await connect(a.key);
    const execution = await value(clientA, 'execute_intent', { agentId: agentA, intent: 'hello', wait: true });
    await api(`/v1/agents/${agentA}/context`, { key: a.key, method: 'PATCH', body: { secret: 'only-a' } });
    const before = { status: (await api(`/v1/agents/${agentA}/status`, { key: a.key })).body, context: (await api(`/v1/agents/${agentA}/context`, { key: a.key })).body };

    const clientB = await connect(b.key);
    const list = await value(clientB, 'list_agents', {});
    expect(list.data.map((x: { id: string }) => x.id)).toEqual([agentB]);
    for (const [tool, args] of [
      ['get_context', { agentId: agentA }],
      ['get_execution', { agentId: agentA, executionId: execution.id }],
      ['cancel_execution', { agentId: agentA, executionId: execution.id }],
      ['execute_intent', { agentId: agentA, intent: 'steal', wait: true }],
    ] as const) {
      const error = await toolError(clientB, tool, args);
      expect(error.code, tool).toBe('not_found');
      expect(JSON.stringify(error)).not.toContain('only-a');
    }
    // Nothing B tried reached A's agent: the same last execution, still succeeded, context untouched.
    expect(before.status).toMatchObject({ running: 0, queued: 0, lastExecution: { id: execution.id, status: 'succeeded' } });
    expect(before.context.data).toMatchObject({ secret: 'only-a' });
    expect((await api(`/v1/agents/${agentA}/status`, { key: a.key })).body).toEqual(before.status);
    expect((await api(`/v1/agents/${agentA}/context`, { key: a.key })).body).toEqual(before.context);
  });
});

describe('MCP: invalid input', () => {
  it('refuses invalid tool arguments with the API\'s invalid_request envelope, each issue\'s path in details, and changes nothing', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const client = await connect(key);
    const invalid: [string, Record<string, unknown>, string[][]][] = [
      ['execute_intent', { agentId: id }, [['intent']]],
      ['execute_intent', { agentId: id, intent: '' }, [['intent']]],
      ['execute_intent', { agentId: id, intent: 'x', timeoutMs: 50 }, [['timeoutMs']]],
      ['execute_intent', { agentId: id, intent: 'x', wait: true, timeoutMs: 60_000 }, [['timeoutMs']]],
      ['execute_intent', { agentId: id, intent: 'x', unexpected: true }, [[]]],
      ['execute_intent', { agentId: 'not an id!', intent: 'x' }, [['agentId']]],
      ['list_agents', { limit: 1000 }, [['limit']]],
      ['get_execution', { agentId: id, executionId: '../x' }, [['executionId']]],
      ['get_context', {}, [['agentId']]],
    ];
    for (const [tool, args, paths] of invalid) {
      const error = await toolError(client, tool, args);
      expect(error, `${tool} ${JSON.stringify(args)}`).toMatchObject({ code: 'invalid_request', requestId: expect.any(String) });
      expect(error.details.map((d: { path: string[] }) => d.path)).toEqual(paths);
    }
    // The same body through REST names the same field.
    const rest = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', timeoutMs: 50 } });
    expect(rest.body.error).toMatchObject({ code: 'invalid_request', details: [expect.objectContaining({ path: ['timeoutMs'] })] });
    const status = await api(`/v1/agents/${id}/status`, { key });
    expect(status.body).toMatchObject({ running: 0, queued: 0, lastExecution: null });
  });

  it('lists input schemas that accept exactly what each tool accepts, on each side of every bound', async () => {
    const { key } = await newTenant();
    const client = await connect(key);
    const { tools } = await client.listTools();
    const schemas = Object.fromEntries(tools.map((t) => [t.name, t.inputSchema as Schema]));
    // An agent that does not exist: arguments the tool takes answer not_found, and nothing runs.
    const agentId = 'no-such-agent';
    const cases: [string, Record<string, unknown>][] = [
      ['list_agents', { limit: 0 }], ['list_agents', { limit: 1 }], ['list_agents', { limit: 100 }], ['list_agents', { limit: 101 }],
      ['list_agents', { limit: 2.5 }], ['list_agents', { cursor: 'c'.repeat(513) }], ['list_agents', { extra: true }],
      ['execute_intent', { agentId, intent: '' }], ['execute_intent', { agentId, intent: 'i'.repeat(256) }], ['execute_intent', { agentId, intent: 'i'.repeat(257) }],
      ['execute_intent', { agentId, intent: 'x', timeoutMs: 99 }], ['execute_intent', { agentId, intent: 'x', timeoutMs: 300_000 }], ['execute_intent', { agentId, intent: 'x', timeoutMs: 300_001 }],
      ['execute_intent', { agentId, intent: 'x', wait: true, timeoutMs: 30_000 }], ['execute_intent', { agentId, intent: 'x', wait: true, timeoutMs: 30_001 }],
      ['execute_intent', { agentId, intent: 'x', wait: false, timeoutMs: 30_001 }],
      ['execute_intent', { agentId, intent: 'x', idempotencyKey: 'k'.repeat(255) }], ['execute_intent', { agentId, intent: 'x', idempotencyKey: 'k'.repeat(256) }],
      ['execute_intent', { agentId, intent: 'x', idempotencyKey: 'a b' }], ['execute_intent', { agentId, intent: 'x', idempotencyKey: 'hook:x' }],
      ['execute_intent', { agentId, intent: 'x', idempotencyKey: 'hooked' }],
      ['execute_intent', { agentId: 'a'.repeat(64), intent: 'x' }], ['execute_intent', { agentId: 'a'.repeat(65), intent: 'x' }],
      ['get_execution', { agentId, executionId: 'e'.repeat(80) }], ['get_execution', { agentId, executionId: 'e'.repeat(81) }],
      ['cancel_execution', { agentId, executionId: 'a.b' }], ['get_context', { agentId: 'a/b' }], ['get_context', { agentId }],
    ];
    for (const [tool, args] of cases) {
      const result = await call(client, tool, args);
      const refused = result.isError === true && JSON.parse(result.content[0]?.text ?? 'null').error.code === 'invalid_request';
      expect(accepts({}, schemas[tool]!, args), `${tool} ${JSON.stringify(args).slice(0, 80)}: the listed schema and the tool disagree`).toBe(!refused);
    }
    // What JSON Schema cannot bound (an encoded size, a depth) the input's description names.
    const input = (schemas.execute_intent as { properties: Record<string, { description?: string }> }).properties.input;
    expect(input?.description).toMatch(/256 KiB.*32 levels/);
  });

  it('answers an unknown tool and malformed JSON-RPC with protocol errors', async () => {
    const { key } = await newTenant();
    const client = await connect(key);
    await expect(client.callTool({ name: 'delete_everything', arguments: {} })).rejects.toThrow(/not found/i);
    const res = await post({ authorization: `Bearer ${key}` }, '{"jsonrpc":');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
  });
});

describe('MCP: HTTP guard', () => {
  it('answers 401 with the envelope and WWW-Authenticate without a valid key', async () => {
    for (const headers of [{}, { authorization: 'Bearer eag_not-a-real-key' }, { authorization: 'Basic abc' }] as Record<string, string>[]) {
      const res = await post(headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(await res.json()).toMatchObject({ error: { code: 'unauthorized' } });
    }
    await expect(connect('eag_not-a-real-key')).rejects.toThrow();
  });

  it("answers 403 forbidden to a browser Origin that is not the endpoint's own", async () => {
    const { key } = await newTenant();
    const res = await post({ authorization: `Bearer ${key}`, origin: 'https://evil.example' });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: 'forbidden' } });
    // Refused before the key is even looked at.
    expect((await post({ origin: 'https://evil.example' })).status).toBe(403);
    const same = await post({ authorization: `Bearer ${key}`, origin: BASE });
    expect(same.status).toBe(200);
  });

  it('answers GET and DELETE with 405 and Allow: POST (no sessions)', async () => {
    for (const method of ['GET', 'DELETE']) {
      const res = await SELF.fetch(`${BASE}/mcp`, { method, headers: { accept: 'text/event-stream' } });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('POST');
      expect(await res.json()).toMatchObject({ error: { code: 'method_not_allowed' } });
    }
  });

  it('refuses a body that is not declared JSON with 415 in the envelope', async () => {
    const { key } = await newTenant();
    for (const type of [null, 'text/plain', 'application/x-www-form-urlencoded']) {
      const headers = new Headers({ authorization: `Bearer ${key}`, accept: 'application/json, text/event-stream' });
      if (type) headers.set('content-type', type);
      const res = await SELF.fetch(`${BASE}/mcp`, { method: 'POST', headers, body: JSON.stringify(initialize) });
      expect(res.status, String(type)).toBe(415);
      expect(await res.json()).toMatchObject({ error: { code: 'unsupported_media_type', requestId: expect.any(String) } });
    }
  });

  it('refuses a body over the limit with 413', async () => {
    const { key } = await newTenant();
    const big = JSON.stringify({ ...initialize, params: { ...initialize.params, padding: 'x'.repeat(1024 * 1024) } });
    const res = await post({ authorization: `Bearer ${key}` }, big);
    expect(res.status).toBe(413);
  });

  it('is described in /openapi.json, with the SDK\'s own JSON-RPC refusals (400, 406) beside the envelope\'s', async () => {
    const doc = await api('/openapi.json');
    const operation = doc.body.paths['/mcp'].post;
    expect(operation.summary).toMatch(/Model Context Protocol/);
    expect(Object.keys(operation.responses)).toEqual(expect.arrayContaining(['200', '400', '401', '403', '405', '406', '413', '415', '429', '431', '503']));
    expect(operation.responses['406'].content['application/json'].schema.required).toEqual(['jsonrpc', 'error', 'id']);

    const { key } = await newTenant();
    const noAccept = await SELF.fetch(`${BASE}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` }, body: JSON.stringify(initialize) });
    expect(noAccept.status).toBe(406);
    expect(await noAccept.json()).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32000 } });
    const oldVersion = await post({ authorization: `Bearer ${key}`, 'mcp-protocol-version': '1999-01-01' }, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }));
    expect(oldVersion.status).toBe(400);
    expect(await oldVersion.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32000, message: expect.stringMatching(/protocol version/) } });
  });
});

describe('MCP: CORS for origins in MCP_ALLOWED_ORIGINS', () => {
  const APP = 'https://app.example';
  const app = createApp();
  const corsEnv = { ...env, MCP_ALLOWED_ORIGINS: `${APP}, https://other.example` };
  const send = (init: { method?: string; headers?: Record<string, string>; body?: string }) =>
    app.request(`${BASE}/mcp`, { method: init.method ?? 'POST', headers: init.headers, body: init.body }, corsEnv, createExecutionContext());
  const rpc = (headers: Record<string, string>, body = JSON.stringify(initialize)) =>
    send({ headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers }, body });
  const preflight = (origin: string) =>
    send({ method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type, mcp-protocol-version' } });
  const exposed = (res: Response) => (res.headers.get('access-control-expose-headers') ?? '').toLowerCase().split(',');

  it('answers a preflight from an allowed origin 204 with the methods, headers and max age a browser MCP client needs', async () => {
    const res = await preflight(APP);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(APP);
    expect(res.headers.get('vary')).toMatch(/\borigin\b/i);
    expect(res.headers.get('access-control-allow-methods')).toBe('POST');
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').split(',');
    expect(allowed).toEqual(expect.arrayContaining(['authorization', 'content-type', 'mcp-protocol-version', 'mcp-session-id', 'last-event-id']));
    expect(Number(res.headers.get('access-control-max-age'))).toBeGreaterThan(0);
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
  });

  it('allows the Mcp-Param-* headers a 2026-07-28 client asks for in its preflight, with the fixed ones, for allowed origins only', async () => {
    const asking = (origin: string, requested: string) =>
      send({ method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': requested } });
    const res = await asking(APP, 'content-type,mcp-method,mcp-name,mcp-param-region,Mcp-Param-Tenant_Id,mcp-protocol-version');
    expect(res.status).toBe(204);
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').split(',');
    expect(allowed).toEqual(expect.arrayContaining(['mcp-param-region', 'mcp-param-tenant_id', 'content-type', 'mcp-method', 'mcp-name', 'authorization']));
    // Only parameter headers are added: other names the page asks for stay outside the list.
    const other = await asking(APP, 'x-custom, mcp-param-, mcp-param-a b, mcp-params');
    expect(other.status).toBe(204);
    expect((other.headers.get('access-control-allow-headers') ?? '').split(',').sort()).toEqual([...MCP_CORS_ALLOW_HEADERS].sort());
    const refused = await asking('https://evil.example', 'mcp-param-region');
    expect(refused.status).toBe(403);
    expect(refused.headers.get('access-control-allow-headers')).toBeNull();
  });

  it('documents OPTIONS /mcp: the 204 of an allowed preflight declares every header it carries', async () => {
    const doc = (await api('/openapi.json')).body;
    const operation = doc.paths['/mcp'].options;
    expect(Object.keys(operation.responses).sort()).toEqual(['204', '403', '405', '431']);
    const declared = Object.keys(operation.responses['204'].headers).map((name) => name.toLowerCase());
    const res = await preflight(APP);
    expect(res.status).toBe(204);
    const sent = [...res.headers.keys()].filter((name) => name !== 'vary');
    expect(sent.length).toBeGreaterThan(4);
    for (const name of sent) expect(declared, name).toContain(name);
    // No D1 session runs before a preflight is answered; the request id is named first of all.
    expect(operation.parameters ?? []).toEqual([{ $ref: '#/components/parameters/x-request-id' }]);
  });

  it('refuses a preflight from an origin not listed with 403 forbidden and no CORS headers; other OPTIONS keep their 405', async () => {
    const refused = await preflight('https://evil.example');
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ error: { code: 'forbidden' } });
    expect(refused.headers.get('access-control-allow-origin')).toBeNull();
    for (const headers of [{}, { origin: APP }, { 'access-control-request-method': 'POST' }] as Record<string, string>[]) {
      const res = await send({ method: 'OPTIONS', headers });
      expect(res.status, JSON.stringify(headers)).toBe(405);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
    }
  });

  it('lets an allowed origin read answers and refusals (401 too) with the headers it needs; no CORS headers for others', async () => {
    const { key } = await newTenant();
    const ok = await rpc({ authorization: `Bearer ${key}`, origin: APP });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBe(APP);
    expect(ok.headers.get('vary')).toMatch(/\borigin\b/i);
    expect(ok.headers.get('mcp-session-id')).toBeTruthy();
    expect(ok.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(exposed(ok)).toEqual(expect.arrayContaining(['mcp-session-id', 'www-authenticate', 'retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset']));
    await ok.body?.cancel();

    const unauthorized = await rpc({ origin: 'https://other.example' });
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers.get('access-control-allow-origin')).toBe('https://other.example');
    expect(unauthorized.headers.get('www-authenticate')).toBe('Bearer');
    expect(exposed(unauthorized)).toContain('www-authenticate');

    const badType = await rpc({ authorization: `Bearer ${key}`, origin: APP, 'content-type': 'text/plain' });
    expect(badType.status).toBe(415);
    expect(badType.headers.get('access-control-allow-origin')).toBe(APP);

    for (const [origin, status] of [['https://evil.example', 403], [undefined, 200], [BASE, 200]] as const) {
      const res = await rpc({ authorization: `Bearer ${key}`, ...(origin && { origin }) });
      expect(res.status, origin).toBe(status);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      await res.body?.cancel();
    }
  });

  it("lets an allowed origin read a key's 429 and its Retry-After and RateLimit headers", async () => {
    const { tenantId } = await newTenant();
    const created = await api<{ key: string }>(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'limited', limits: { perMinute: 1 } } });
    expect(created.status).toBe(201);
    const first = await rpc({ authorization: `Bearer ${created.body.key}`, origin: APP });
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-remaining')).toBe('0');
    await first.body?.cancel();
    const limited = await rpc({ authorization: `Bearer ${created.body.key}`, origin: APP });
    expect(limited.status).toBe(429);
    expect(limited.headers.get('access-control-allow-origin')).toBe(APP);
    expect(limited.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(exposed(limited)).toEqual(expect.arrayContaining(['retry-after', 'ratelimit-remaining']));
  });
});
