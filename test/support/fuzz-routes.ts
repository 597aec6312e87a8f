import { SELF } from 'cloudflare:test';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { ERROR_STATUS } from '../../worker/errors';
import { ADMIN, BASE, api, mockUrl } from './api';
import { buildWorld, documentedOperations, fillPath, paramFor, type Operation, type World } from './world';

/**
 * Every documented route, hit with random and mutated bodies, path parameters, query strings
 * and headers, with no auth, bad auth, a tenant's key and the operator token. Whatever
 * arrives: never a 5xx, every error in the one envelope with a code from ERROR_STATUS, and a
 * refused request changes nothing the tenant can see.
 *
 * Runs are seeded, so a failure reproduces (fast-check prints the seed and the shrunk
 * counterexample); change SEED to explore other inputs.
 *
 * The operations are dealt over several test files (`test/fuzz-*.test.ts`, one shard each):
 * under vitest-pool-workers every SELF.fetch of a file gets slower as the file's requests add
 * up (cloudflare/workers-sdk#15446), so one file fuzzing every route took 150–240 s and grew
 * with each new route, while a shard's file starts fresh and the shards run side by side.
 */
const RUNS = 4;
const SEED = 20_261_126;

/** Routes that exist but are not in the OpenAPI document. */
const UNDOCUMENTED: Operation[] = [{ method: 'GET', path: '/openapi.json', params: [] }];

/** A valid body per operation: the seed that mutations start from. */
function validBody(op: Operation, w: World): unknown {
  switch (`${op.method} ${op.path}`) {
    case 'POST /v1/admin/tenants': return { name: 'fuzzed tenant' };
    case 'POST /v1/admin/tenants/{tenant}/keys': return { name: 'fuzzed key' };
    case 'POST /v1/agents': return { name: 'fuzzed', upstream: { kind: 'builtin' }, metadata: { a: 'b' } };
    case 'POST /v1/agents/batch': return { agents: [{ name: 'fuzzed batch' }, { name: 'fuzzed batch', concurrency: 2 }] };
    case 'PATCH /v1/agents/{id}': return { name: 'renamed', concurrency: 2 };
    case 'PATCH /v1/agents/{id}/context': return { note: 'fuzz', nested: { n: 1 } };
    case 'POST /v1/agents/{id}/executions': return { intent: 'fuzz.run', input: { message: 'hi' }, mode: 'sync' };
    case 'POST /v1/agents/{id}/webhooks': return { url: mockUrl('/fuzz-hook'), events: ['execution.succeeded'] };
    case 'PUT /v1/pools/{name}': return { strategy: 'least-inflight', targets: [{ id: 't1', kind: 'builtin', weight: 2 }] };
    case 'PUT /v1/hooks/{id}': return { agentId: w.agentId, intent: 'hook.run', scheme: 'github', secret: 'fuzz-secret-0123456789' };
    case 'POST /v1/hooks/{id}': return { action: 'opened' };
    case 'POST /v1/chat/completions': return { model: w.poolName, messages: [{ role: 'user', content: 'hello' }] };
    case 'POST /v1/transactions': return { operations: [{ agentId: w.agentId, increment: { balance: 1 } }] };
    case 'POST /v1/admin/tenants/{tenant}/agents/{agentId}/transactions/{txId}/resolve': return { outcome: 'abort', reason: 'fuzz' };
    default: return {};
  }
}

const hostileStrings = fc.constantFrom(
  '', ' ', '..', '../..', '%2e%2e', '%00', '\u0000', '%ZZ', '%', '😀', 'ä', '\u202e', '__proto__', 'constructor', 'prototype', 'null', 'NaN', '-1', '1e309',
  '0x10', "' OR 1=1 --", '<script>', '${x}', 'a'.repeat(300), 'a'.repeat(5_000),
);
const anyString = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }), hostileStrings);
const jsonValue = fc.jsonValue({ maxDepth: 4 });

const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

/** A mutation of a valid body: drop, retype or add keys, or wrap, nest and pollute it. */
function mutatedBody(valid: unknown): fc.Arbitrary<{ raw: string }> {
  const base = valid !== null && typeof valid === 'object' && !Array.isArray(valid) ? (valid as Record<string, unknown>) : {};
  const keys = Object.keys(base);
  const key = keys.length ? fc.oneof(fc.constantFrom(...keys), anyString) : anyString;
  const json = (v: unknown) => ({ raw: JSON.stringify(v) });
  return fc.oneof(
    fc.constant(json(valid)),
    fc.tuple(key, jsonValue).map(([k, v]) => json({ ...base, [k]: v })),
    fc.tuple(key, anyString).map(([k, v]) => json({ ...base, [k]: v })),
    key.map((k) => json(Object.fromEntries(Object.entries(base).filter(([name]) => name !== k)))),
    jsonValue.map(json),
    fc.constantFrom(
      { raw: '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}' },
      { raw: `{"intent":"x","input":{"__proto__":{"admin":true}}}` },
      { raw: '{' },
      { raw: 'not json' },
      { raw: '' },
      { raw: 'null' },
      { raw: '[]' },
      { raw: '"string"' },
      { raw: '{"a":1,"a":2}' },
      { raw: deep(5_000) },
      { raw: JSON.stringify({ ...base, input: JSON.parse(`${'{"a":'.repeat(200)}1${'}'.repeat(200)}`) }) },
      { raw: JSON.stringify({ ...base, huge: 'x'.repeat(1_100_000) }) },
      { raw: JSON.stringify({ ...base, name: 'x'.repeat(70_000) }) },
      { raw: '\uFEFF{}' },
    ),
  );
}

interface FuzzCase {
  auth: 'none' | 'garbage' | 'unknown-key' | 'tenant' | 'admin' | 'basic';
  params: Record<string, { valid: boolean; value: string }>;
  query: [string, string][];
  headers: [string, string][];
  body: { raw: string } | null;
  contentType: string | null;
}

const headerValue = fc.oneof(fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 60 }), fc.constantFrom('a'.repeat(300), '"0"', 'W/"1"', '*', '-1', '99999999999999999999'));
const headerName = fc.constantFrom('idempotency-key', 'if-match', 'last-event-id', 'x-agent-id', 'x-gateway-cache-ttl', 'x-request-id', 'x-d1-bookmark', 'accept', 'x-github-event', 'x-hub-signature-256', 'webhook-id', 'webhook-signature', 'webhook-timestamp', 'stripe-signature', 'x-forwarded-for', 'origin');
const queryName = fc.oneof(fc.constantFrom('limit', 'cursor', 'status', 'lastEventId', 'windowMinutes', '__proto__'), fc.string({ maxLength: 10 }));
const queryValue = fc.oneof(anyString, fc.integer().map(String), fc.constantFrom('0', '101', '-5', '1.5', 'queued', 'eyJpZCI6IngifQ', 'a'.repeat(600)));

function fuzzCase(op: Operation, w: World): fc.Arbitrary<FuzzCase> {
  const param = (name: string) => fc.oneof({ weight: 3, arbitrary: fc.constant({ valid: true, value: paramFor(w, op.path, name) }) }, { weight: 2, arbitrary: anyString.map((value) => ({ valid: false, value })) });
  const params = fc.record(Object.fromEntries(op.params.map((name) => [name, param(name)])) as Record<string, fc.Arbitrary<{ valid: boolean; value: string }>>);
  const hasBody = ['POST', 'PUT', 'PATCH'].includes(op.method);
  return fc.record({
    auth: fc.constantFrom('none', 'garbage', 'unknown-key', 'tenant', 'tenant', 'tenant', 'admin', 'basic'),
    params,
    query: fc.array(fc.tuple(queryName, queryValue), { maxLength: 3 }),
    headers: fc.array(fc.tuple(headerName, headerValue), { maxLength: 3 }),
    body: hasBody ? fc.oneof({ weight: 6, arbitrary: mutatedBody(validBody(op, w)) }, { weight: 1, arbitrary: fc.constant(null) }) : fc.option(mutatedBody({}), { freq: 4 }),
    contentType: fc.oneof({ weight: 6, arbitrary: fc.constant(op.path.endsWith('/context') ? 'application/merge-patch+json' : 'application/json') }, { weight: 1, arbitrary: fc.constantFrom(null, 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/json') }),
  }) as fc.Arbitrary<FuzzCase>;
}

/**
 * Everything the fuzzed tenant can see, from the strongly consistent sources only (the agents'
 * objects, D1's registry and config tables), so that a refused request's "after" can be
 * compared with its "before" without waiting for eventually consistent projections.
 */
async function snapshot(w: World): Promise<string> {
  const get = async (path: string, key = w.key) => {
    const res = await api(path, { key });
    // An error's requestId differs on every call; its code is the state.
    return (res.status >= 400 ? { status: res.status, code: res.body?.error?.code } : res.body) as Record<string, unknown>;
  };
  const list = (body: Record<string, unknown>, field = 'id') => ((body.data as Record<string, unknown>[] | undefined) ?? []).map((x) => String(x[field])).sort();
  const [agents, pools, keys, hook, tx, ...perAgent] = await Promise.all([
    get('/v1/agents?limit=100'),
    get('/v1/pools'),
    get(`/v1/admin/tenants/${w.tenantId}/keys`, ADMIN()),
    get(`/v1/hooks/${w.hookId}`),
    get(`/v1/transactions/${w.transactionId}`),
    // The agent every route's {id} points at; the other one is covered by the list.
    ...[w.agentId].flatMap((id) => [
      get(`/v1/agents/${id}`), get(`/v1/agents/${id}/context`), get(`/v1/agents/${id}/status`), get(`/v1/agents/${id}/webhooks`), get(`/v1/agents/${id}/deliveries?limit=100`),
    ]),
  ]);
  return JSON.stringify({
    agents: list(agents!),
    pools: ((pools!.data as { name: string; updatedAt: string }[] | undefined) ?? []).map((p) => `${p.name}:${p.updatedAt}`).sort(),
    keys: ((keys!.data as { id: string; revokedAt?: string | null }[] | undefined) ?? []).map((k) => `${k.id}:${k.revokedAt ?? ''}`).sort(),
    hook,
    tx,
    perAgent: perAgent.map((body, i) => (i % 5 >= 3 ? list(body) : body)),
  });
}

/** Settling gives up only when both have passed: this long, and this many snapshots taken. */
const SETTLE_MS = 15_000;
const SETTLE_SNAPSHOTS = 30;

/**
 * After a change: waits until nothing is queued or running and two snapshots agree. The budget
 * counts snapshots as well as time because under vitest-pool-workers every SELF.fetch gets
 * slower as a file's requests add up (about 10 ms per request at first, hundreds of ms late in
 * a deep run: cloudflare/workers-sdk#15446), so late in a run 15 s held only one or two
 * snapshots and a state that had settled failed as one that never does.
 */
async function settled(w: World, after = 'set-up'): Promise<string> {
  const started = Date.now();
  let previous = '';
  let last = '';
  for (let taken = 1; ; taken++) {
    const next = await snapshot(w);
    if (next === last && !/"(running|queued)":[1-9]/.test(next)) return next;
    [previous, last] = [last, next];
    if (Date.now() - started > SETTLE_MS && taken >= SETTLE_SNAPSHOTS) {
      const why = previous === last ? 'work still queued or running' : 'the last two snapshots differ';
      throw new Error(`state did not settle after ${after} (${taken} snapshots in ${Date.now() - started} ms; ${why});\nlast snapshot: ${last.slice(0, 2000)}\nthe one before: ${previous.slice(0, 2000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function send(op: Operation, w: World, c: FuzzCase): Promise<{ status: number; text: string; contentType: string }> {
  const path = fillPath(op.path, (name) => {
    const p = c.params[name]!;
    // Invalid values go in raw when they are already URL-safe (`..`, `%00`), else encoded.
    return p.valid || /^[\w.%~-]*$/.test(p.value) ? p.value : encodeURIComponent(p.value);
  });
  const query = c.query.length ? `?${c.query.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}` : '';
  const headers = new Headers();
  for (const [name, value] of c.headers) headers.set(name, value);
  const auth = { none: null, garbage: 'Bearer garbage', 'unknown-key': 'Bearer eag_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', tenant: `Bearer ${w.key}`, admin: `Bearer ${ADMIN()}`, basic: 'Basic dXNlcjpwYXNz' }[c.auth];
  if (auth) headers.set('authorization', auth);
  if (c.contentType) headers.set('content-type', c.contentType);
  const hasBody = c.body !== null && op.method !== 'GET';
  const response = await withTimeout(SELF.fetch(`${BASE}${path}${query}`, { method: op.method, headers, ...(hasBody && { body: c.body!.raw }) }), `${op.method} ${path}${query}`);
  const contentType = response.headers.get('content-type') ?? '';
  // A live event stream never ends: its headers are the answer.
  if (contentType.startsWith('text/event-stream')) {
    await response.body?.cancel();
    return { status: response.status, text: '', contentType };
  }
  return { status: response.status, text: await withTimeout(response.text(), `body of ${op.method} ${path}`), contentType };
}

/** A request that hangs is a failure too (and must not stall the run). */
function withTimeout<T>(promise: Promise<T>, label: string, ms = 15_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${label} did not answer within ${ms} ms`)), ms); });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function expectEnvelope(op: Operation, status: number, text: string): void {
  const label = `${op.method} ${op.path} → ${status} ${text.slice(0, 300)}`;
  expect(status, label).toBeLessThan(500);
  if (status < 400) return;
  const body = JSON.parse(text) as { jsonrpc?: unknown; error?: { code?: string | number; message?: unknown; requestId?: unknown } };
  // MCP answers its protocol failures (a body that is not a JSON-RPC message) as JSON-RPC
  // errors, as its route documents; what the gateway refuses before (auth, size, type) is the envelope.
  if (op.path === '/mcp' && body.jsonrpc === '2.0' && typeof body.error?.code === 'number') {
    expect(body.error.message, label).toBeTypeOf('string');
    return;
  }
  const code = body.error?.code as keyof typeof ERROR_STATUS;
  expect(ERROR_STATUS[code], label).toBe(status);
  expect(body.error?.message, label).toBeTypeOf('string');
  expect(body.error?.requestId, label).toBeTypeOf('string');
}

/** Fuzzes shard `shard` (0-based) of `shards`: every operation whose place in the whole list is `shard` modulo `shards`. */
export function fuzzRoutes(shard: number, shards: number): void {
  describe(`fuzzing every route (shard ${shard + 1} of ${shards})`, () => {
    let world: World;
    let operations: Operation[];

    beforeAll(async () => {
      world = await buildWorld();
      const documented = await documentedOperations();
      // Deletions last, so the other operations meet existing resources first.
      operations = [...documented, ...UNDOCUMENTED].sort((a, b) => Number(a.method === 'DELETE') - Number(b.method === 'DELETE'));
    }, 300_000);

    it('derives the operations from /openapi.json', () => {
      expect(operations.length).toBeGreaterThan(30);
      expect(operations.map((o) => `${o.method} ${o.path}`)).toContain('POST /v1/agents/{id}/executions');
    });

    it('never answers 5xx, always the error envelope, and a refused request changes no state', async () => {
      let before = await settled(world);
      // The index in the whole list seeds each operation, so a shard's runs are the same whichever file runs them.
      for (const [index, op] of operations.entries()) {
        if (index % shards !== shard) continue;
        await fc.assert(
          fc.asyncProperty(fuzzCase(op, world), async (c) => {
            const { status, text } = await send(op, world, c);
            expectEnvelope(op, status, text);
            // Refused writes with credentials are compared one by one; the rest (reads, and
            // requests the auth layer refused) by the comparison at the end of the operation.
            if (status >= 400 && op.method !== 'GET' && (c.auth === 'tenant' || c.auth === 'admin')) {
              const after = await snapshot(world);
              expect(after, `${op.method} ${op.path} answered ${status} but changed state`).toBe(before);
            } else if (status < 400 && op.method !== 'GET') {
              before = await settled(world, `${op.method} ${op.path} → ${status}`);
            }
          }),
          { numRuns: RUNS, seed: SEED + index, endOnFailure: true },
        );
        // Reads change nothing, so only writes need the comparison at the end.
        if (op.method !== 'GET') expect(await snapshot(world), `state changed during ${op.method} ${op.path} without a successful write`).toBe(before);
      }
    }, 300_000);
  });
}
