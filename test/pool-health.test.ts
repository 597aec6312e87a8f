import { createExecutionContext, createScheduledController, env, SELF, waitOnExecutionContext } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import worker from '../worker/index';
import type { CircuitBreaker } from '../worker/pools/circuit-breaker';
import { cachedRuntime, healthKey } from '../worker/pools/runtime';
import { api, BASE, mockUrl, newAgent, newTenant, chatTarget } from './support/api';

const agentTarget = (id: string, query = '') => ({ id, kind: 'agent-http', url: mockUrl(`/agent?target=${id}${query}`) });

async function counts(): Promise<Record<string, number>> {
  return (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json();
}

async function runCron(): Promise<void> {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ cron: '* * * * *' }), env, ctx);
  await waitOnExecutionContext(ctx);
}

describe('active health checks (cron)', () => {
  it('records each target probe where every isolate sees it, and routes around a down target', async () => {
    const { key } = await newTenant();
    const tag = `probe${Date.now()}`;
    await api('/v1/pools/probed', { method: 'PUT', key, body: { targets: [agentTarget(`${tag}-up`), agentTarget(`${tag}-down`, '&failStatus=503'), { id: 'local', kind: 'builtin', priority: 1 }] } });
    await runCron();
    const pool = await api('/v1/pools/probed', { key });
    const health = Object.fromEntries(pool.body.targets.map((t: { id: string; health: unknown }) => [t.id, t.health]));
    expect(health[`${tag}-up`]).toMatchObject({ healthy: true, probe: { ok: true } });
    expect(health[`${tag}-down`]).toMatchObject({ healthy: false, probe: { ok: false, error: 'HTTP 503' } });
    expect(health.local).toMatchObject({ healthy: true, probe: { ok: true } });

    const id = await newAgent(key, { upstream: { kind: 'pool', pool: 'probed' } });
    for (let i = 0; i < 6; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } })).status).toBe(200);
    const seen = await counts();
    expect(seen[`${tag}-up`]).toBe(6);
    expect(seen[`${tag}-down`]).toBeUndefined();
  });

  it('probes openai-chat targets with GET /models', async () => {
    const { key } = await newTenant();
    await api('/v1/pools/chat', { method: 'PUT', key, body: { targets: [chatTarget('ok1'), chatTarget('bad1', 'failStatus=500')] } });
    await runCron();
    const pool = await api('/v1/pools/chat', { key });
    expect(pool.body.targets.map((t: { health: { probe: { ok: boolean } } }) => t.health.probe.ok)).toEqual([true, false]);
  });

  it("does not hold a probe of a target's former URL against it once the pool is redefined", async () => {
    const { key } = await newTenant();
    const tag = `refix${Date.now()}`;
    const fixed = chatTarget(tag, 'ok');
    await api('/v1/pools/refixed', { method: 'PUT', key, body: { targets: [{ ...fixed, baseUrl: fixed.baseUrl.replace('/ok/', '/failStatus%3D500/') }, chatTarget(`${tag}-b`)] } });
    await runCron();
    const before = await api('/v1/pools/refixed', { key });
    expect(before.body.targets[0].health).toMatchObject({ healthy: false, probe: { ok: false } });

    // Its URL fixed, same id: no probe has seen the new URL yet, so none counts against it.
    expect((await api('/v1/pools/refixed', { method: 'PUT', key, body: { targets: [fixed, chatTarget(`${tag}-b`)] } })).status).toBe(200);
    const after = await api('/v1/pools/refixed', { key });
    expect(after.body.targets[0].health).toMatchObject({ healthy: true, probe: null });
    expect(after.body.targets[1].health).toMatchObject({ healthy: true, probe: { ok: true } });
    const answered = await api('/v1/chat/completions', { key, body: { model: 'refixed', messages: [{ role: 'user', content: 'x' }] } });
    expect(answered.headers.get('x-gateway-upstream')).toBe(`refixed/${tag}`);
  });
});

describe("a target's healthy flag in the pool view", () => {
  it("is the balancer's: a failed probe older than 3 minutes no longer counts, a half-open target whose probe is out does", async () => {
    const { key, tenantId } = await newTenant();
    const tag = `hv${Date.now()}`;
    const [a, b] = [`${tag}-a`, `${tag}-b`];
    await api('/v1/pools/view', { method: 'PUT', key, body: { targets: [chatTarget(a), chatTarget(b)] } });
    const healthy = async () => Object.fromEntries((await api('/v1/pools/view', { key })).body.targets.map((t: { id: string; health: { healthy: boolean } }) => [t.id, t.health.healthy]));

    // a's last probe failed 4 minutes ago: the balancer sends it traffic again.
    const old = new Date(Date.now() - 4 * 60_000).toISOString();
    await env.CACHE.put(healthKey(tenantId, 'view'), JSON.stringify({ [a]: { ok: false, checkedAt: old, latencyMs: null, error: 'HTTP 503' }, [b]: { ok: false, checkedAt: new Date().toISOString(), latencyMs: null, error: 'HTTP 503' } }));
    expect(await healthy()).toEqual({ [a]: true, [b]: false });

    // a's circuit half-open, its one probe in flight: the balancer sends it nothing meanwhile.
    expect((await api('/v1/chat/completions', { key, body: { model: 'view', messages: [{ role: 'user', content: 'x' }] } })).status).toBe(200);
    const runtime = cachedRuntime(tenantId, 'view');
    expect(runtime).toBeDefined();
    const breaker = runtime?.state(a).breaker as CircuitBreaker;
    const longAgo = Date.now() - 60_000;
    for (let i = 0; i < 5; i++) breaker.failure(longAgo);
    expect(breaker.available()).toBe(true); // half-open: the probe slot is free
    expect((await api('/v1/pools/view', { key })).body.targets[0].health).toMatchObject({ circuit: 'half-open', healthy: true });
    breaker.acquire();
    expect((await api('/v1/pools/view', { key })).body.targets[0].health).toMatchObject({ circuit: 'half-open', healthy: false });
  });
});

describe('the half-open probe slot', () => {
  it('is not given back by a retry cancelled on that target while its probe is out', async () => {
    const { key, tenantId } = await newTenant();
    const tag = `slot${Date.now()}`;
    const [a, b] = [`${tag}-a`, `${tag}-b`];
    // a streams slowly (its probe stays out for the call's 5 s); b, the standby, answers 503.
    const targets = [chatTarget(a, 'chunkDelayMs=5000'), chatTarget(b, 'failStatus=503', { priority: 1 })];
    await api('/v1/pools/slot', { method: 'PUT', key, body: { timeouts: { totalMs: 5_000 }, targets } });
    const chat = (stream = false) => SELF.fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'slot', stream, messages: [{ role: 'user', content: 'one two' }] }),
    });
    expect((await chat()).status).toBe(200);
    const runtime = cachedRuntime(tenantId, 'slot');
    if (!runtime) throw new Error('no runtime');
    const longAgo = Date.now() - 60_000;
    for (let i = 0; i < 5; i++) runtime.state(a).breaker.failure(longAgo);

    // a is half-open: this stream is its probe, and stays out while it is read no further.
    const probe = await chat(true);
    expect(probe.headers.get('x-gateway-upstream')).toBe(`slot/${a}`);
    const reader = probe.body?.getReader();
    await reader?.read();
    const view = async () => (await api('/v1/pools/slot', { key })).body.targets[0].health;
    expect(await view()).toMatchObject({ circuit: 'half-open', healthy: false, inflight: 1 });

    // Nothing is healthy now: b's circuit is open, and a asked (Retry-After) for a minute's pause.
    for (let i = 0; i < 5; i++) runtime.state(b).breaker.failure();
    runtime.state(a).retryAfterUntil = Date.now() + 60_000;
    // So b is tried first and fails; the retry lands on a, whose pause outlasts the deadline,
    // and is cancelled before it is sent.
    const refused = await chat();
    expect(refused.status).toBe(502);
    expect(refused.headers.get('x-gateway-upstream')).toBe(`slot/${b}`);
    // The probe is still out: a stays unhealthy, or the next request would be a second probe.
    expect(await view()).toMatchObject({ circuit: 'half-open', healthy: false, inflight: 1 });
    await reader?.cancel();
  });
});

describe('Retry-After pauses in the health view', () => {
  it("shows until when each target asked not to be called (capped at 5 minutes), and null for one that did not", async () => {
    const { key } = await newTenant();
    const tag = `pause${Date.now()}`;
    const targets = [chatTarget(`${tag}-busy`, 'failStatus=429,retryAfter=120'), chatTarget(`${tag}-hour`, 'failStatus=503,retryAfter=3600'), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })];
    await api('/v1/pools/paused', { method: 'PUT', key, body: { timeouts: { totalMs: 8_000 }, targets } });
    const before = await api('/v1/pools/paused', { key });
    expect(before.body.targets.map((t: { health: { pausedUntil: unknown } }) => t.health.pausedUntil)).toEqual([null, null, null]);
    const sent = Date.now();
    const res = await api('/v1/chat/completions', { key, body: { model: 'paused', messages: [{ role: 'user', content: 'x' }] } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-attempts')).toBe('3');
    const after = await api('/v1/pools/paused', { key });
    expect(after.status).toBe(200);
    const pausedUntil = Object.fromEntries(after.body.targets.map((t: { id: string; health: { pausedUntil: string | null } }) => [t.id, t.health.pausedUntil]));
    const busy = Date.parse(pausedUntil[`${tag}-busy`]);
    const hour = Date.parse(pausedUntil[`${tag}-hour`]);
    expect(pausedUntil[`${tag}-busy`]).toBe(new Date(busy).toISOString());
    expect(busy).toBeGreaterThanOrEqual(sent + 120_000);
    expect(busy).toBeLessThanOrEqual(Date.now() + 120_000);
    expect(hour).toBeGreaterThanOrEqual(sent + 300_000);
    expect(hour).toBeLessThanOrEqual(Date.now() + 300_000);
    expect(pausedUntil[`${tag}-ok`]).toBeNull();
  });
});

describe('timeouts and failover under load', () => {
  it('fails over when a target does not answer within the first-byte timeout', async () => {
    const { key } = await newTenant();
    const tag = `ttfb${Date.now()}`;
    // The standby's own timeout is generous: on a loaded machine even a prompt answer can take
    // longer than the 200 ms the pool gives the slow target, and the test is about that one.
    const targets = [chatTarget(`${tag}-slow`, 'delayMs=3000'), chatTarget(`${tag}-fast`, 'ok', { priority: 1, timeoutMs: 10_000 })];
    await api('/v1/pools/slow', { method: 'PUT', key, body: { timeouts: { firstByteMs: 200 }, targets } });
    const res = await api('/v1/chat/completions', { key, body: { model: 'slow', messages: [{ role: 'user', content: 'quick' }] } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-attempts')).toBe('2');
    expect(res.headers.get('x-gateway-upstream')).toBe(`slow/${tag}-fast`);
  });

  it('keeps every request succeeding when one of three targets stops mid-load', async () => {
    const { key } = await newTenant();
    const tag = `load${Date.now()}`;
    const names = ['a', 'b', 'c'].map((n) => `${tag}-${n}`);
    await api('/v1/pools/three', { method: 'PUT', key, body: { targets: names.map((n) => chatTarget(n, 'delayMs=5')) } });
    const statuses: number[] = [];
    const send = async () => {
      const res = await api('/v1/chat/completions', { key, body: { model: 'three', messages: [{ role: 'user', content: 'load' }] } });
      statuses.push(res.status);
    };
    const batch = () => Promise.all(Array.from({ length: 10 }, send));
    await batch();
    await batch();
    await fetch(`${env.MOCK_UPSTREAM_URL}/control?target=${names[1]}&down=true`, { method: 'POST' });
    try {
      for (let i = 0; i < 4; i++) await batch();
    } finally {
      await fetch(`${env.MOCK_UPSTREAM_URL}/control?target=${names[1]}&down=false`, { method: 'POST' });
    }
    expect(statuses).toHaveLength(60);
    expect(statuses.every((s) => s === 200)).toBe(true);
    const pool = await api('/v1/pools/three', { key });
    const stopped = pool.body.targets.find((t: { id: string }) => t.id === names[1]);
    expect(stopped.health.circuit).toBe('open');
  });
});
