import { createExecutionContext, createScheduledController, env, SELF, waitOnExecutionContext } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import worker from '../worker/index';
import type { CircuitBreaker } from '../worker/pools/circuit-breaker';
import type { Env } from '../worker/env';
import { DUE_POOLS_QUERY, takeDuePools, TENANT_POOL_COUNTS_QUERY } from '../worker/pools/probe-schedule';
import { PROBES_AT_ONCE } from '../worker/pools/probe';
import { putPool } from '../worker/pools/store';
import { PutPoolBody } from '../worker/schemas/pool';
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

  it("takes an openai-chat server without GET /models (404 or 405) for up when its chat route is there (a GET of it 405 or 2xx), and down when that is 404 too, or either 5xx", async () => {
    const { key } = await newTenant();
    const tag = `nolist${Date.now()}`;
    const targets = [
      chatTarget(`${tag}-a`, 'modelsStatus=404,getChatStatus=405'),
      chatTarget(`${tag}-b`, 'modelsStatus=405,getChatStatus=200'),
      chatTarget(`${tag}-c`, 'modelsStatus=404'),
      chatTarget(`${tag}-d`, 'modelsStatus=503,getChatStatus=405'),
      chatTarget(`${tag}-e`, 'modelsStatus=404,getChatStatus=502'),
      chatTarget(`${tag}-f`, 'modelsStatus=401,getChatStatus=405'),
    ];
    await api('/v1/pools/nolist', { method: 'PUT', key, body: { targets } });
    await runCron();
    const pool = await api('/v1/pools/nolist', { key });
    const probes = pool.body.targets.map((t: { health: { probe: { ok: boolean; error?: string } } }) => t.health.probe);
    expect(probes.map((p: { ok: boolean }) => p.ok)).toEqual([true, true, false, false, false, false]);
    expect(probes[2].error).toBe('HTTP 404 (GET /models), HTTP 404 (GET /chat/completions)');
    expect(probes[3].error).toBe('HTTP 503');
    // Up, it takes chats as any target does.
    const chat = await api('/v1/chat/completions', { method: 'POST', key, body: { model: 'nolist', messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(200);
    expect([`nolist/${tag}-a`, `nolist/${tag}-b`]).toContain(chat.headers.get('x-gateway-upstream'));
  });

  it('probes the targets of a run several at a time across pools, never more at once than a run may open', async () => {
    await parkOtherPools();
    const { key, tenantId } = await newTenant();
    const tag = `par${Date.now()}`;
    // Eight pools of one slow target each: one after another, each waits for the last.
    const names = Array.from({ length: 8 }, (_, i) => `slow${i}`);
    for (const [i, name] of names.entries()) {
      expect((await api(`/v1/pools/${name}`, { method: 'PUT', key, body: { targets: [chatTarget(`${tag}-${i}`, `delayMs=600,gauge=${tag}`)] } })).status).toBe(201);
    }
    await runCron();
    for (const name of names) expect((await api(`/v1/pools/${name}`, { key })).body.targets[0].health.probe).toMatchObject({ ok: true });
    // A run fills up with pools not yet due: the next tests' runs need not wait for these.
    await env.DB.prepare('DELETE FROM pools WHERE tenant_id = ?').bind(tenantId).run();
    const gauge = await (await fetch(`${env.MOCK_UPSTREAM_URL}/gauge?name=${tag}`)).json<{ peak: number }>();
    expect(gauge.peak).toBe(PROBES_AT_ONCE);
  });

  it("does not hold a probe of a target's former URL against it once the pool is redefined", async () => {
    const { key } = await newTenant();
    const tag = `refix${Date.now()}`;
    const fixed = chatTarget(tag, 'ok');
    // The other target is a standby: the chat below goes to the fixed one whatever the round robin's start.
    const standby = chatTarget(`${tag}-b`, 'ok', { priority: 1 });
    await api('/v1/pools/refixed', { method: 'PUT', key, body: { targets: [{ ...fixed, baseUrl: fixed.baseUrl.replace('/ok/', '/failStatus%3D500/') }, standby] } });
    await runCron();
    const before = await api('/v1/pools/refixed', { key });
    expect(before.body.targets[0].health).toMatchObject({ healthy: false, probe: { ok: false } });

    // Its URL fixed, same id: no probe has seen the new URL yet, so none counts against it.
    expect((await api('/v1/pools/refixed', { method: 'PUT', key, body: { targets: [fixed, standby] } })).status).toBe(200);
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

describe('targets named like members of every object', () => {
  it('show no probe until one is made (null), whatever their id: "__proto__" and "constructor" showed an empty one', async () => {
    const { key } = await newTenant();
    const ids = ['__proto__', 'constructor', 'toString'];
    const pool = `proto${Date.now()}`;
    expect((await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: ids.map((id) => ({ id, kind: 'builtin' })) } })).status).toBe(201);
    const read = await api(`/v1/pools/${pool}`, { key });
    expect(read.body.targets.map((t: { id: string; health: { probe: unknown } }) => [t.id, t.health.probe])).toEqual(ids.map((id) => [id, null]));
    await runCron();
    const probed = await api(`/v1/pools/${pool}`, { key });
    for (const t of probed.body.targets) expect(t.health.probe).toMatchObject({ ok: true });
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

describe('replacing a pool', () => {
  it("keeps the circuit and Retry-After pause of a target it leaves as it was, and starts afresh for one whose URL changed", async () => {
    const { key, tenantId } = await newTenant();
    const tag = `kept${Date.now()}`;
    const [a, b, s] = [`${tag}-a`, `${tag}-b`, `${tag}-s`];
    const put = (targets: unknown[]) => api('/v1/pools/kept', { method: 'PUT', key, body: { targets } });
    const chat = async () => (await api('/v1/chat/completions', { key, body: { model: 'kept', messages: [{ role: 'user', content: 'x' }] } })).headers.get('x-gateway-upstream');
    await put([chatTarget(a), chatTarget(b), chatTarget(s, 'ok', { priority: 1 })]);
    expect(await chat()).not.toBeNull();
    const runtime = cachedRuntime(tenantId, 'kept');
    if (!runtime) throw new Error('no runtime');
    for (let i = 0; i < 5; i++) runtime.state(a).breaker.failure();
    runtime.state(b).retryAfterUntil = Date.now() + 60_000;
    expect(await chat()).toBe(`kept/${s}`);

    // Only the standby's weight changes: a is still the target whose circuit opened, b the one that asked for a pause.
    const calledA = (await counts())[a];
    await put([chatTarget(a), chatTarget(b), chatTarget(s, 'ok', { priority: 1, weight: 2 })]);
    const [viewA, viewB] = (await api('/v1/pools/kept', { key })).body.targets;
    expect(viewA.health).toMatchObject({ circuit: 'open', healthy: false });
    expect(viewB.health.pausedUntil).not.toBeNull();
    expect(await chat()).toBe(`kept/${s}`);
    expect((await counts())[a]).toBe(calledA);

    // a at another URL is another target: nothing of the old one's failures holds it back.
    await put([chatTarget(a, 'delayMs=1'), chatTarget(b), chatTarget(s, 'ok', { priority: 1, weight: 2 })]);
    expect(await chat()).toBe(`kept/${a}`);
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

/** Stores `count` pools of builtin targets for a tenant straight in D1 (names `<prefix>1`, …). */
async function seedPools(tenantId: string, prefix: string, count: number, opts: { due?: number; targets?: number; apiKey?: string } = {}): Promise<void> {
  const at = new Date().toISOString();
  const targets = Array.from({ length: opts.targets ?? 1 }, (_, i) => ({ id: `t${i}`, kind: 'builtin', ...(opts.apiKey && { apiKey: opts.apiKey }) }));
  const config = JSON.stringify({ strategy: 'weighted-round-robin', targets, name: '', createdAt: at, updatedAt: at });
  await env.DB.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
     INSERT INTO pools (tenant_id, name, config, created_at, updated_at, probe_due) SELECT ?2, ?3 || i, json_set(?4, '$.name', ?3 || i), ?5, ?5, ?6 FROM n`,
  ).bind(count, tenantId, prefix, config, Date.now(), opts.due ?? 0).run();
}

/** Puts every pool stored so far (other tests') out of the way of the runs a test counts. */
const parkOtherPools = () => env.DB.prepare('UPDATE pools SET probe_due = 9e15').run();

describe('answers that are no chat completion', () => {
  it('count against the target that sent them: its circuit opens after 5, and the standby serves meanwhile', async () => {
    const { key } = await newTenant();
    const tag = `nochat${Date.now()}`;
    await api('/v1/pools/odd', { method: 'PUT', key, body: { retry: { attempts: 2 }, targets: [chatTarget(`${tag}-odd`, 'body={}'), chatTarget(`${tag}-ok`, 'ok', { priority: 1 })] } });
    for (let i = 0; i < 6; i++) {
      const res = await api('/v1/chat/completions', { key, body: { model: 'odd', messages: [{ role: 'user', content: 'x' }] } });
      expect(res.headers.get('x-gateway-upstream')).toBe(`odd/${tag}-ok`);
    }
    const pool = await api('/v1/pools/odd', { key });
    const odd = pool.body.targets.find((t: { id: string }) => t.id === `${tag}-odd`);
    expect(odd.health).toMatchObject({ circuit: 'open', healthy: false });
    expect((await counts())[`${tag}-odd`]).toBe(5);
  });
});

describe('which pools a cron run probes', () => {
  it("reaches a tenant's pool while another tenant keeps a full run's worth of pools freshly updated", async () => {
    await parkOtherPools();
    const small = await newTenant();
    const tag = `fair${Date.now()}`;
    expect((await api('/v1/pools/small', { method: 'PUT', key: small.key, body: { targets: [agentTarget(tag)] } })).status).toBe(201);
    const big = await newTenant();
    // Their credentials do not open (sealed under a retired key, say), so a run spends no probe
    // or KV write on them: what counts here is which pools a run takes.
    await seedPools(big.tenantId, 'busy-', 1_000, { apiKey: 'sealed-under-a-retired-key' });
    const probed = async () => (await api('/v1/pools/small', { key: small.key })).body.targets[0].health.probe;
    // Two runs: the big tenant's pools, never probed, were in line before this one.
    for (let run = 0; run < 2 && !(await probed()); run++) {
      // The big tenant updates every pool between runs (the order the cron used to probe in).
      await env.DB.prepare('UPDATE pools SET updated_at = ? WHERE tenant_id = ?').bind(Date.now() + 1_000, big.tenantId).run();
      await runCron();
    }
    expect(await probed()).toMatchObject({ ok: true });
  });

  it("gives a tenant with many pools its share of a run, and probes every pool within a bounded number of runs", async () => {
    await parkOtherPools();
    const big = await newTenant();
    const small = await newTenant();
    await seedPools(big.tenantId, 'b', 12);
    await seedPools(small.tenantId, 's', 2);
    const limits = { pools: 4, probes: 100, tenantShare: 2, periodMs: 60_000 };
    const t0 = Date.now();
    const runs: string[][] = [];
    for (let run = 0; run < 12; run++) runs.push((await takeDuePools(env, t0 + run * 60_000, limits)).map((p) => p.pool.name));
    // Everything was due at once: 14 pools, 4 a run, in due order: each within 4 runs.
    expect(new Set(runs.slice(0, 4).flat()).size).toBe(14);
    // Then each run holds the small tenant's two pools (each due every run) and two of the
    // big tenant's 12 (its share), so each of those is probed every 6 runs.
    for (const names of runs.slice(4)) {
      expect(names.filter((n) => n.startsWith('s')).sort()).toEqual(['s1', 's2']);
      expect(names.filter((n) => n.startsWith('b'))).toHaveLength(2);
    }
    expect(new Set(runs.slice(6).flat().filter((n) => n.startsWith('b'))).size).toBe(12);
  });

  it('stops a run at its bound of target probes, leaving the rest first in line', async () => {
    await parkOtherPools();
    const { tenantId } = await newTenant();
    await seedPools(tenantId, 'wide', 3, { targets: 3 });
    const limits = { pools: 10, probes: 7, tenantShare: 100, periodMs: 60_000 };
    const t0 = Date.now();
    expect((await takeDuePools(env, t0, limits)).map((p) => p.pool.name)).toEqual(['wide1', 'wide2']);
    expect((await takeDuePools(env, t0 + 60_000, limits)).map((p) => p.pool.name)).toEqual(['wide3', 'wide1']);
  });

  it('takes them off an index, without sorting the table', async () => {
    const due = await env.DB.prepare(`EXPLAIN QUERY PLAN ${DUE_POOLS_QUERY}`).bind(10).all<{ detail: string }>();
    const duePlan = due.results.map((r) => r.detail).join('\n');
    expect(duePlan).toMatch(/SCAN pools USING INDEX pools_by_probe_due/);
    expect(duePlan).not.toContain('TEMP B-TREE');
    const counted = await env.DB.prepare(`EXPLAIN QUERY PLAN ${TENANT_POOL_COUNTS_QUERY}`).bind('["a","b"]').all<{ detail: string }>();
    expect(counted.results.map((r) => r.detail).join('\n')).toMatch(/SEARCH pools USING COVERING INDEX sqlite_autoindex_pools_1 \(tenant_id=\?\)/);
  });
});

describe('the pools a tenant may hold', () => {
  it('refuses a new pool past 1,000 with 409 pool_limit_reached, and still replaces one', async () => {
    const { key, tenantId } = await newTenant();
    await seedPools(tenantId, 'held-', 999);
    const body = { targets: [{ id: 'local', kind: 'builtin' }] };
    const last = await api('/v1/pools/last', { method: 'PUT', key, body });
    expect(last.status).toBe(201);
    const refused = await api('/v1/pools/one-more', { method: 'PUT', key, body });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'pool_limit_reached', details: { limit: 1_000, pools: 1_000 } });
    expect((await api('/v1/pools/one-more', { key })).status).toBe(404);
    expect((await api('/v1/pools/held-7', { method: 'PUT', key, body })).status).toBe(200);
    expect((await api('/v1/pools/held-7', { method: 'DELETE', key })).status).toBe(204);
    expect((await api('/v1/pools/one-more', { method: 'PUT', key, body })).status).toBe(201);
    // A tenant's 1,000th pool is first due 9 runs on: its first 100 come due at once, then 100 a run.
    const row = await env.DB.prepare('SELECT probe_due - created_at AS wait FROM pools WHERE tenant_id = ? AND name = ?').bind(tenantId, 'last').first<{ wait: number }>();
    expect(row?.wait).toBe(9 * 60_000);
  });

  it('takes its limit from MAX_POOLS_PER_TENANT when the operator sets one', async () => {
    const { tenantId } = await newTenant();
    await seedPools(tenantId, 'few-', 2);
    const tight = { ...env, MAX_POOLS_PER_TENANT: '2' } as unknown as Env;
    const body = PutPoolBody.parse({ targets: [{ id: 'local', kind: 'builtin' }] });
    await expect(putPool(tight, tenantId, 'third', body)).rejects.toMatchObject({ code: 'pool_limit_reached', details: { limit: 2, pools: 2 } });
    expect((await putPool(tight, tenantId, 'few-1', body)).created).toBe(false);
  });

  it('holds the limit against PUTs of different new pools racing each other: exactly the limit is created', async () => {
    const { tenantId } = await newTenant();
    await seedPools(tenantId, 'had-', 1);
    const tight = { ...env, MAX_POOLS_PER_TENANT: '4' } as unknown as Env;
    const body = PutPoolBody.parse({ targets: [{ id: 'local', kind: 'builtin' }] });
    const audit = (name: string) => ({ actor: 'test', tenantId, action: 'pool.put' as const, target: name, requestId: `rq-${name}` });
    const settled = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => putPool(tight, tenantId, `race-${i}`, body, audit(`race-${i}`))));
    expect(settled.filter((s) => s.status === 'fulfilled' && s.value.created)).toHaveLength(3);
    const refused = settled.filter((s) => s.status === 'rejected').map((s) => (s as PromiseRejectedResult).reason);
    expect(refused).toHaveLength(9);
    for (const error of refused) expect(error).toMatchObject({ code: 'pool_limit_reached', details: { limit: 4, pools: 4 } });
    const held = await env.DB.prepare('SELECT COUNT(*) AS n FROM pools WHERE tenant_id = ?').bind(tenantId).first<{ n: number }>();
    expect(held?.n).toBe(4);
    // Only the PUTs that created a pool leave an audit entry: a refused one changed nothing.
    const audited = await env.DB.prepare("SELECT COUNT(*) AS n FROM audit_log WHERE tenant_id = ? AND action = 'pool.put'").bind(tenantId).first<{ n: number }>();
    expect(audited?.n).toBe(3);
  });
});
