import { createExecutionContext, env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { MAX_TURN_CHARS } from '../durable/agent-store';
import { createApp } from '../worker/app';
import { ADMIN, api, mockUrl, newAgent, newTenant } from './support/api';
import { agentWith, contextOf } from './support/transactions';

const nested = (depth: number): unknown => {
  let value: unknown = 'leaf';
  for (let i = 0; i < depth; i++) value = { a: value };
  return value;
};

const patchContext = (key: string, id: string, body: unknown) =>
  api(`/v1/agents/${id}/context`, { method: 'PATCH', key, body, headers: { 'content-type': 'application/merge-patch+json' } });

describe('input limits', () => {
  it('refuses execution input nested deeper than 32 levels, or larger than 256 KiB, creating nothing', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    for (const input of [nested(33), { text: 'x'.repeat(300_000) }]) {
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'run', input } });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'run', input: nested(31) } })).status).toBe(200);
    const status = await api(`/v1/agents/${id}/status`, { key });
    expect(status.body.lastExecution).not.toBeNull();
  });

  it('bounds the context in UTF-8 bytes, so multi-byte text cannot pass a character count', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    // 300,000 three-byte characters: 900 KB, under the 1 MiB limit.
    const wide = '€'.repeat(300_000);
    expect((await patchContext(key, id, { a: wide })).status).toBe(200);
    // A second one: 1.8 MB in bytes although only 600,000 characters, near the 2 MB row limit.
    const tooBig = await patchContext(key, id, { b: wide });
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.code).toBe('payload_too_large');
    const context = await api(`/v1/agents/${id}/context`, { key });
    expect(context.body.version).toBe(1);
    expect(Object.keys(context.body.data)).toEqual(['a']);
  });

  it('refuses a context patch nested deeper than 32 levels', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await patchContext(key, id, { deep: nested(40) });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/deeper than 32/);
  });

  it('answers 431 headers_too_large for an oversized header or header block, in the error envelope', async () => {
    const { key } = await newTenant();
    const one = await api('/v1/agents', { key, headers: { 'x-filler': 'a'.repeat(9_000) } });
    expect(one.status).toBe(431);
    expect(one.body.error).toMatchObject({ code: 'headers_too_large' });
    expect(typeof one.body.error.requestId).toBe('string');
    const many: Record<string, string> = {};
    for (let i = 0; i < 5; i++) many[`x-filler-${i}`] = 'b'.repeat(4_000);
    expect((await api('/v1/agents', { key, headers: many })).status).toBe(431);
    expect((await api('/v1/agents', { key, headers: { 'x-filler': 'a'.repeat(1_000) } })).status).toBe(200);
  });

  it('answers 431 to an oversized CORS preflight of /mcp too, not 204 naming every header it asked for', async () => {
    const app = createApp();
    const origin = 'https://app.example';
    const preflight = (headers: Record<string, string>) =>
      app.request('https://gateway.test/mcp', { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', ...headers } }, { ...env, MCP_ALLOWED_ORIGINS: origin }, createExecutionContext());
    // One header over 8 KiB: a thousand Mcp-Param-* names, each of which the 204 would list back.
    const asked = Array.from({ length: 1_000 }, (_, i) => `mcp-param-p${i}`).join(',');
    const many: Record<string, string> = {};
    for (let i = 0; i < 5; i++) many[`x-filler-${i}`] = 'b'.repeat(4_000);
    for (const headers of [{ 'access-control-request-headers': asked }, many]) {
      const res = await preflight(headers);
      expect(res.status).toBe(431);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('headers_too_large');
      expect(res.headers.get('access-control-allow-headers')).toBeNull();
    }
    expect((await preflight({ 'access-control-request-headers': 'authorization, content-type, mcp-param-region' })).status).toBe(204);
  });

  it('stores a huge conversation turn truncated with a marker', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'run', input: { message: 'y'.repeat(200_000) } } });
    expect(res.status).toBe(200);
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const turns = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec<{ role: string; content: string }>('SELECT role, content FROM history ORDER BY seq').toArray());
    expect(turns).toHaveLength(2);
    for (const turn of turns) {
      expect(turn.content.length).toBeLessThanOrEqual(MAX_TURN_CHARS);
      expect(turn.content).toMatch(/… \[truncated \d+ characters\]$/);
    }
  });
});

/** An object of `count` members no schema knows, besides `known`. */
const unknownKeys = (count: number, known: Record<string, unknown> = {}): Record<string, unknown> => {
  const body: Record<string, unknown> = { ...known };
  for (let i = 0; i < count; i++) body[`k${i}`] = 1;
  return body;
};

/** Bytes of an answer as sent: what a client has to read. */
const answerBytes = (body: unknown): number => new TextEncoder().encode(JSON.stringify(body)).length;

// A 400 named every unknown key twice (in `message` and in `details[].message`): 60,000 of
// them, a 769 KB body, were answered with 1.9 MB, and every issue of a body failing many ways
// was listed, each twice.
describe('the size of a validation error', () => {
  it('names at most a few unknown keys and says how many more, on every route that checks a body', async () => {
    const { key, tenantId, keyId } = await newTenant();
    const refusals = [
      await api('/v1/agents', { key, body: unknownKeys(60_000) }),
      await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: unknownKeys(60_000, { name: 'x' }) }),
      await api(`/v1/admin/keys/${keyId}`, { method: 'PATCH', key: ADMIN(), body: { limits: unknownKeys(60_000) } }),
    ];
    for (const res of refusals) {
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(answerBytes(res.body)).toBeLessThan(8_192);
      expect(res.body.error.message).toMatch(/Unrecognized keys: "k0", "k1", .*and 59990 more/);
      expect(res.body.error.details).toHaveLength(1);
      expect(res.body.error.details[0]).toMatchObject({ code: 'unrecognized_keys', message: expect.stringContaining('and 59990 more') });
    }
    expect(refusals[2]?.body.error).toMatchObject({ param: 'limits', details: [{ path: ['limits'] }] });
  });

  it('cuts an unknown key of any length short', async () => {
    const { key } = await newTenant();
    const res = await api('/v1/agents', { key, body: { ['k'.repeat(700_000)]: 1 } });
    expect(res.status).toBe(400);
    expect(answerBytes(res.body)).toBeLessThan(8_192);
    expect(res.body.error.message).toMatch(/^Unrecognized key: "k{64}…"$/);
  });

  it('lists at most 20 issues and says how many more there were', async () => {
    const { key } = await newTenant();
    const agents = Array.from({ length: 100 }, (_, i) => ({ id: `bad-${i}`, concurrency: 0, name: '' }));
    const res = await api('/v1/agents/batch', { key, body: { agents } });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toHaveLength(20);
    expect(res.body.error.details[0]).toMatchObject({ path: ['agents', '0', expect.any(String)] });
    expect(res.body.error.message).toMatch(/; and 180 more issues$/);
    expect(answerBytes(res.body)).toBeLessThan(16_384);
  });
});

describe('upstream output limit', () => {
  it('fails an execution whose output exceeds 1 MiB instead of writing an oversized row', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?outputBytes=1200000') } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'run' } });
    expect(res.status).toBe(502);
    const execution = await api(`/v1/agents/${id}/executions/${res.body.error.details.executionId}`, { key });
    expect(execution.body).toMatchObject({ status: 'failed', error: { code: 'output_too_large' } });
    // The agent keeps working.
    expect((await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { kind: 'builtin' } } })).status).toBe(200);
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'run' } })).status).toBe(200);
  });
});

describe('upstream output depth', () => {
  it('fails an execution whose output nests deeper than 512 levels, which used to be stored and then unreadable (500)', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const run = (depth: number) => api(`/v1/agents/${id}/executions`, { key, body: { intent: 'run', input: { mock: { body: `{"output":${'['.repeat(depth)}${']'.repeat(depth)}}` } } } });
    const kept = await run(512);
    expect(kept.status).toBe(200);
    expect((await api(`/v1/agents/${id}/executions/${kept.body.id}`, { key })).body).toEqual(kept.body);
    // 5,000 levels: the sync answer was a 500 internal_error, as was every read of the execution.
    for (const depth of [513, 5_000]) {
      const refused = await run(depth);
      expect(refused.status, `${depth}`).toBe(502);
      const read = await api(`/v1/agents/${id}/executions/${refused.body.error.details.executionId}`, { key });
      expect(read.status).toBe(200);
      expect(read.body).toMatchObject({ status: 'failed', error: { code: 'upstream_failed', message: 'upstream "output" is nested deeper than 512 levels' } });
    }
  });
});

describe('upstream context patch bounds', () => {
  /** Runs an execution whose upstream answers `reply` (raw JSON text) and returns the execution. */
  const runWith = async (key: string, id: string, reply: string) => {
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'run', input: { mock: { body: reply } } } });
    return (await api(`/v1/agents/${id}/executions/${res.status === 200 ? res.body.id : res.body.error.details.executionId}`, { key })).body;
  };

  it("fails an execution whose contextPatch is deeper than a client's may be, holds 1e400 or a member name over 256 characters, leaving the context as it was", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    // 32 levels, the patch object included, as PATCH …/context allows.
    expect(await runWith(key, id, JSON.stringify({ output: 1, contextPatch: { k: nested(31) } }))).toMatchObject({ status: 'succeeded' });
    const before = (await contextOf(key, id)) as { version: number };
    // 20,000 levels used to be merged: GET …/context then answered 500 and every later call failed.
    const deep = `{"output":1,"contextPatch":{"k":${'['.repeat(20_000)}${']'.repeat(20_000)}}}`;
    // A member name over 256 characters: no client's patch could ever remove it.
    const longName = JSON.stringify({ output: 1, contextPatch: { ['k'.repeat(257)]: 1 } });
    for (const reply of [JSON.stringify({ output: 1, contextPatch: { k: nested(32) } }), deep, '{"output":1,"contextPatch":{"n":1e400}}', longName]) {
      const execution = await runWith(key, id, reply);
      expect(execution, reply.slice(0, 60)).toMatchObject({ status: 'failed', error: { code: 'upstream_failed' } });
      expect(execution.error.message).toMatch(/^upstream "contextPatch": (nested deeper than 32 levels|a number is beyond the range of a double|member name "k+"… is over 256 characters)/);
    }
    const after = await api(`/v1/agents/${id}/context`, { key });
    expect(after.status).toBe(200);
    expect(after.body).toEqual(before);
    // Why such a name is refused: a client's patch cannot name the member to remove it.
    expect((await patchContext(key, id, { ['k'.repeat(257)]: null })).status).toBe(400);
  });
});

describe('transactions: "__proto__" in an increment or a min', () => {
  it('says so when it was the only key (validation drops it), and still drops it beside others', async () => {
    const { key } = await newTenant();
    const a = await agentWith(key, { balance: 10 });
    const only = JSON.parse('{"__proto__":1}') as Record<string, number>;
    for (const [field, op] of [['increment', { agentId: a, increment: only }], ['min', { agentId: a, patch: { x: 1 }, min: only }]] as const) {
      const res = await api('/v1/transactions', { key, body: { operations: [op] } });
      expect(res.status, field).toBe(400);
      expect(res.body.error.message, field).toContain('"__proto__"');
      expect(res.body.error.details, field).toEqual([expect.objectContaining({ path: ['operations', '0', field, '__proto__'] })]);
    }
    // Beside other keys it is dropped as before; "constructor" is an ordinary key.
    const res = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, increment: { ...JSON.parse('{"__proto__":5}'), balance: 1, constructor: 2 } }] } });
    expect(res.status).toBe(200);
    expect((await contextOf(key, a)).data).toEqual({ balance: 11, constructor: 2 });
  });
});
