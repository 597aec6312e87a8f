import { SELF } from 'cloudflare:test';
import { hc } from 'hono/client';
import { describe, expect, it } from 'vitest';
import type { AppType } from '../worker/app';
import { BASE, newTenant } from './support/api';

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
});
