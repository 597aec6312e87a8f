import { SELF } from 'cloudflare:test';
import { hc } from 'hono/client';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type { AppType } from '../worker/app';
import { BASE, newTenant } from './support/api';
import { limitedKey } from './support/limits';

/** The typed client from docs/CLIENT.md, pointed at the running Worker. */
const clientFor = (key: string) =>
  hc<AppType>(BASE, { headers: { authorization: `Bearer ${key}` }, fetch: (input: RequestInfo | URL, init?: RequestInit) => SELF.fetch(input, init) });

describe('typed client (hono/client with AppType)', () => {
  it('creates an agent, runs an execution and reads the context with typed requests and responses', async () => {
    const { key } = await newTenant();
    const client = clientFor(key);

    const created = await client.v1.agents.$post({ json: { id: 'typed-agent', name: 'Typed', concurrency: 2 } });
    expect(created.status).toBe(201);
    if (created.status !== 201) return;
    const agent = await created.json();
    expect(agent.concurrency).toBe(2);

    const run = await client.v1.agents[':id'].executions.$post({ param: { id: agent.id }, json: { intent: 'support.reply', input: { message: 'hello' } }, header: {} });
    expect(run.status).toBe(200);
    if (run.status !== 200) return;
    const execution = await run.json();
    expect(execution.status).toBe('succeeded');

    const context = await client.v1.agents[':id'].context.$get({ param: { id: agent.id } });
    if (context.status !== 200) throw new Error(`unexpected ${context.status}`);
    const body = await context.json();
    expect(body.version).toBe(1);
    expect(body.data).toMatchObject({ lastTopic: 'greeting' });

    const missing = await client.v1.agents[':id'].$get({ param: { id: 'nobody' } });
    expect(missing.status).toBe(404);
  });

  // Optional-only query strings and headers may be left out, as with any HTTP client: before
  // AppType loosened them, none of these calls compiled without `query: {}` or `header: {}`
  // (`npm run typecheck` checks this file).
  it('leaves out a query string or headers whose members are all optional', async () => {
    const { key } = await newTenant();
    const client = clientFor(key);
    const created = await client.v1.agents.$post({ json: { id: 'plain-calls' } });
    expect(created.status).toBe(201);

    const list = await client.v1.agents.$get();
    if (list.status !== 200) throw new Error(`unexpected ${list.status}`);
    expect((await list.json()).data.map((agent) => agent.id)).toEqual(['plain-calls']);

    const run = await client.v1.agents[':id'].executions.$post({ param: { id: 'plain-calls' }, json: { intent: 'support.reply', input: 'hi' } });
    expect(run.status).toBe(200);
    const patched = await client.v1.agents[':id'].context.$patch({ param: { id: 'plain-calls' }, json: { tier: 'gold' } });
    if (patched.status !== 200) throw new Error(`unexpected ${patched.status}`);
    expect((await patched.json()).data).toMatchObject({ tier: 'gold' });
    expect((await client.v1.agents[':id'].executions.$get({ param: { id: 'plain-calls' } })).status).toBe(200);
    expect((await client.v1.agents[':id'].deliveries.$get({ param: { id: 'plain-calls' } })).status).toBe(200);

    const tx = await client.v1.transactions.$post({ json: { operations: [{ agentId: 'plain-calls', increment: { n: 1 } }] } });
    expect(tx.status).toBe(200);
    // The schema reads these maps raw before parsing them (a lone "__proto__"); the type stays the map's.
    type Operation = Parameters<typeof client.v1.transactions.$post>[0]['json']['operations'][number];
    expectTypeOf<Operation['increment']>().toEqualTypeOf<Record<string, number> | undefined>();
    expectTypeOf<Operation['min']>().toEqualTypeOf<Record<string, number> | undefined>();
    expect((await client.v1.pools[':name'].$put({ param: { name: 'plain' }, json: { targets: [{ id: 'faq', kind: 'builtin' }] } })).status).toBe(201);
    const chat = await client.v1.chat.completions.$post({ json: { model: 'plain', messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(200);
    const stats = await client.v1.stats.$get();
    if (stats.status !== 200) throw new Error(`unexpected ${stats.status}`);
    expect((await stats.json()).windowMinutes).toBe(60);
    expect((await client.v1.audit.$get()).status).toBe(200);
  });

  // Every route's answers are typed, its refusals too: before the shared error responses kept
  // their numeric status codes, `status === 429` (or 400, 503…) did not compile on any route,
  // so a client could not read a refusal's code without a cast (`npm run typecheck` checks this).
  it('types the refusals every route can give: 400 with details, 429 with its code', async () => {
    const { key, otherKey } = await limitedKey({ budget: { requests: 1, period: 'day' } });
    const created = await clientFor(otherKey).v1.agents.$post({ json: { id: 'refused-calls' } });
    expect(created.status).toBe(201);
    const client = clientFor(key);
    const first = await client.v1.agents[':id'].executions.$post({ param: { id: 'refused-calls' }, json: { intent: 'support.reply', input: 'hi' } });
    expect(first.status).toBe(200);
    const second = await client.v1.agents[':id'].executions.$post({ param: { id: 'refused-calls' }, json: { intent: 'support.reply', input: 'hi' } });
    if (second.status !== 429) throw new Error(`unexpected ${second.status}`);
    expect((await second.json()).error.code).toBe('budget_exhausted');
    expectTypeOf<typeof second.status>().toEqualTypeOf<429>();

    const bad = await client.v1.stats.$get({ query: { windowMinutes: '0' } });
    if (bad.status !== 400) throw new Error(`unexpected ${bad.status}`);
    const { error } = await bad.json();
    expect(error.code).toBe('invalid_request');
    expect(error.details).toMatchObject([{ path: ['windowMinutes'] }]);
    type UsageStatus = Awaited<ReturnType<typeof client.v1.usage.$get>>['status'];
    expectTypeOf<429>().toExtend<UsageStatus>();
    expectTypeOf<503>().toExtend<UsageStatus>();
  });
});
