import { env, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { proxyChat } from '../worker/openai/chat-proxy';
import type { CircuitBreaker } from '../worker/pools/circuit-breaker';
import { loadPoolRuntime, type PoolRuntime } from '../worker/pools/runtime';
import { ChatCompletionRequest } from '../worker/schemas/openai';
import { outboundPolicy } from '../worker/upstream/outbound-guard';
import { api, BASE, chatTarget, eventually, newTenant } from './support/api';

interface TargetView {
  id: string;
  health: { inflight: number; circuit: string };
}

const control = (target: string, down: boolean) => fetch(`${env.MOCK_UPSTREAM_URL}/control?target=${target}&down=${down}`, { method: 'POST' });
const chat = (key: string) => api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'hi' }] } });

const health = async (key: string) => (await api<{ targets: TargetView[] }>('/v1/pools/chat', { key })).body.targets;

/** Starts a stream, reads its first chunk and goes away, as a client that closes the tab does. */
async function abandonStream(key: string): Promise<void> {
  const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'one two three four five six seven eight' }] }),
  });
  expect(res.status).toBe(200);
  const reader = res.body?.getReader();
  await reader?.read();
  await reader?.cancel();
}

describe('a stream the client abandons', () => {
  it('stops counting in flight on its target once the call deadline has passed, so the balancer does not shun the target for ever', async () => {
    const { key } = await newTenant();
    const tag = `gone${Date.now()}`;
    const put = await api('/v1/pools/chat', {
      method: 'PUT',
      key,
      body: { strategy: 'least-inflight', targets: [chatTarget(`${tag}-a`, 'chunkDelayMs=300'), chatTarget(`${tag}-b`, 'chunkDelayMs=300')], timeouts: { totalMs: 1_000 } },
    });
    expect(put.status).toBe(201);

    await abandonStream(key);
    await abandonStream(key);
    // Both abandoned streams were leased (least-inflight spreads them): two in flight at first.
    const before = await health(key);
    expect(before.reduce((sum, t) => sum + t.health.inflight, 0)).toBe(2);

    // Nothing reads them any more, so nothing ends them but the deadline of the call.
    const after = await eventually(async () => {
      const targets = await health(key);
      return targets.every((t) => t.health.inflight === 0) && targets;
    }, 15_000, 250);
    expect(after.map((t) => t.health.circuit)).toEqual(['closed', 'closed']);
  }, 30_000);

  it('gives back the half-open probe it was, so the circuit of a recovered target still closes', async () => {
    const { key } = await newTenant();
    const tag = `probe${Date.now()}`;
    const [primary, standby] = [`${tag}-primary`, `${tag}-standby`];
    const put = await api('/v1/pools/chat', {
      method: 'PUT',
      key,
      body: { targets: [chatTarget(primary, 'chunkDelayMs=300'), chatTarget(standby, 'ok', { priority: 1 })], timeouts: { totalMs: 1_000 } },
    });
    expect(put.status).toBe(201);

    // Five failures in a row open the primary's circuit; the standby answers meanwhile.
    await control(primary, true);
    for (let i = 0; i < 5; i++) expect((await chat(key)).status).toBe(200);
    expect((await health(key)).find((t) => t.id === primary)?.health.circuit).toBe('open');
    await control(primary, false);

    // After the breaker's 10 s cooldown, the next call is the one half-open probe: a stream, abandoned.
    await new Promise((resolve) => setTimeout(resolve, 10_100));
    await abandonStream(key);

    // Once that call's deadline has passed the probe slot is free again: a call probes the
    // primary, which answers, and its circuit closes.
    const answered = await eventually(async () => {
      const res = await chat(key);
      return res.headers.get('x-gateway-upstream') === `chat/${primary}` && res;
    }, 15_000, 250);
    expect(answered.status).toBe(200);
    expect((await health(key)).find((t) => t.id === primary)?.health.circuit).toBe('closed');
  }, 45_000);
});

describe("a half-open target's probe that is a stream", () => {
  /**
   * Makes the pool's primary half-open, sends it a stream (its probe), reads the first chunk,
   * then hands the rest of the stream to `rest`; the primary's breaker afterwards.
   */
  async function probeByStream(faults: string, rest: (reader: ReadableStreamDefaultReader<Uint8Array>) => Promise<void>): Promise<{ breaker: CircuitBreaker; runtime: PoolRuntime; id: string }> {
    const { key, tenantId } = await newTenant();
    const id = `hs${Date.now()}-${faults.replace(/\W/g, '')}`;
    const targets = [chatTarget(id, faults), chatTarget(`${id}-standby`, 'ok', { priority: 1 })];
    expect((await api('/v1/pools/chat', { method: 'PUT', key, body: { targets, timeouts: { totalMs: 5_000 } } })).status).toBe(201);
    const runtime = await loadPoolRuntime(env, tenantId, 'chat');
    if (!runtime) throw new Error('no runtime');
    const { breaker } = runtime.state(id);
    for (let i = 0; i < 5; i++) breaker.failure(Date.now() - 60_000);
    expect(breaker.current()).toBe('half-open');
    const body = ChatCompletionRequest.parse({ model: 'chat', stream: true, messages: [{ role: 'user', content: 'one two three four five six' }] });
    const result = await proxyChat({ runtime, body, regions: [], policy: outboundPolicy(env) });
    if (!result.ok) throw result.error;
    expect(result.target).toBe(`chat/${id}`);
    const reader = result.response.body?.getReader();
    if (!reader) throw new Error('no body');
    expect((await reader.read()).done).toBe(false);
    expect(breaker.available()).toBe(false); // the probe is out
    await rest(reader);
    return { breaker, runtime, id };
  }

  const readToEnd = async (reader: ReadableStreamDefaultReader<Uint8Array>) => {
    while (!(await reader.read()).done);
  };

  it('closes the circuit once the stream has finished', async () => {
    const { breaker } = await probeByStream('ok', readToEnd);
    expect(breaker.current()).toBe('closed');
  });

  it('reopens it when the stream breaks after its first chunk', async () => {
    const { breaker } = await probeByStream('cutAfter=1', readToEnd);
    expect(breaker.current()).toBe('open');
  });

  it('leaves it half-open, the slot given back, when the client cancels after the first chunk', async () => {
    const { breaker, runtime, id } = await probeByStream('chunkDelayMs=200', (reader) => reader.cancel());
    // The first chunk shows the target answers (its latency counts), not that it would have finished.
    expect(breaker.current()).toBe('half-open');
    expect(breaker.available()).toBe(true);
    expect(runtime.state(id).inflight).toBe(0);
    expect(runtime.state(id).latencyMs).not.toBeNull();
  });
});
