import { describe, expect, it } from 'vitest';
import { api, mockUrl, newAgent, newTenant } from './support/api';

/** An agent-http upstream on the mock that always answers `status`, asking for `retryAfter` seconds. */
const busy = (target: string, status: number, retryAfter?: number) => ({
  kind: 'agent-http',
  url: mockUrl(`/agent?target=${target}&failStatus=${status}${retryAfter === undefined ? '' : `&retryAfter=${retryAfter}`}`),
});

describe("an execution whose upstream asked to wait says when to come back", () => {
  it('answers a sync execution 502 with Retry-After, and keeps the time in the record', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: busy(`era${Date.now()}`, 429, 120) });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_failed');
    expect(res.headers.get('retry-after')).toBe('120');
    const { execution } = res.body.error.details;
    expect(execution.error).toMatchObject({ code: 'upstream_failed', status: 429 });
    const retryAt = Date.parse(execution.error.retryAt);
    expect(retryAt - Date.parse(execution.finishedAt)).toBeGreaterThan(118_000);
    expect(retryAt - Date.parse(execution.finishedAt)).toBeLessThanOrEqual(120_000);

    // Polled later, the record still says when.
    const polled = await api(`/v1/agents/${id}/executions/${execution.id}`, { key });
    expect(polled.body.error.retryAt).toBe(execution.error.retryAt);
  });

  it("counts a target's pause from its latest refusal when its retries waited out the earlier ones", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: busy(`erw${Date.now()}`, 503, 1) });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(502);
    const { execution } = res.body.error.details;
    expect(execution.attempts).toBe(3);
    expect(Date.parse(execution.error.retryAt)).toBeGreaterThan(Date.parse(execution.finishedAt));
    expect(res.headers.get('retry-after')).toBe('1');
  });

  it('names the soonest pause over a pool, and none when an attempt failed without one', async () => {
    const { key } = await newTenant();
    const tag = `erp${Date.now()}`;
    const target = (name: string, status: number, retryAfter?: number, priority = 0) => ({ id: name, priority, ...busy(`${tag}-${name}`, status, retryAfter) });
    await api('/v1/pools/paused', { method: 'PUT', key, body: { retry: { attempts: 2 }, targets: [target('a', 429, 120), target('b', 503, 30, 1)] } });
    await api('/v1/pools/mixed', { method: 'PUT', key, body: { retry: { attempts: 2 }, targets: [target('c', 429, 120), target('d', 500, undefined, 1)] } });

    const paused = await newAgent(key, { upstream: { kind: 'pool', pool: 'paused' } });
    const one = await api(`/v1/agents/${paused}/executions`, { key, body: { intent: 'x' } });
    expect(one.status).toBe(502);
    expect(one.body.error.details.execution.attempts).toBe(2);
    expect(one.headers.get('retry-after')).toBe('30');

    const mixed = await newAgent(key, { upstream: { kind: 'pool', pool: 'mixed' } });
    const two = await api(`/v1/agents/${mixed}/executions`, { key, body: { intent: 'x' } });
    expect(two.status).toBe(502);
    expect(two.body.error.details.execution.attempts).toBe(2);
    expect(two.headers.get('retry-after')).toBeNull();
    expect(two.body.error.details.execution.error.retryAt).toBeUndefined();
  });

  it('answers a chat through the agent 502 with Retry-After', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: busy(`erc${Date.now()}`, 503, 45) });
    const res = await api('/v1/chat/completions', { key, body: { model: `agent:${id}`, messages: [{ role: 'user', content: 'hello' }] } });
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_failed');
    expect(res.headers.get('retry-after')).toBe('45');
  });

  it('says nothing when the upstream failed without asking to wait', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: busy(`ern${Date.now()}`, 400) });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(502);
    expect(res.headers.get('retry-after')).toBeNull();
    expect(res.body.error.details.execution.error.retryAt).toBeUndefined();
  });
});
