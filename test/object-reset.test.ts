import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';

async function upstreamCalls(executionId: string): Promise<number> {
  const res = await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${executionId}`);
  return ((await res.json()) as { count: number }).count;
}

describe('an object reset while a call is in flight', () => {
  it('retries the call on the new instance instead of answering 500, and keeps one execution', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const pending = api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { mock: { delayMs: 1_500 } }, timeoutMs: 15_000 } });
    await eventually(async () => (await api(`/v1/agents/${id}/status`, { key })).body.running === 1);
    // The sync call waits inside the object: reset the object under it, as a crash or a code
    // update would (the caller sees an error with `durableObjectReset: true`).
    await runInDurableObject(stub, (_instance, state) => state.abort('reset under test')).catch(() => undefined);

    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'succeeded' });
    // The id the edge chose made the retried RPC replay the execution, resumed by the new instance.
    const list = await eventually(async () => {
      const page = await api(`/v1/agents/${id}/executions`, { key });
      return page.body.data.length === 1 && page.body.data;
    });
    expect(list[0].id).toBe(res.body.id);
    expect(await upstreamCalls(res.body.id)).toBeGreaterThanOrEqual(1);
  });
});
