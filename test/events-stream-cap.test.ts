import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { DEFAULT_STREAMS_PER_AGENT, STREAM_RETRY_AFTER_S, streamsPerAgent } from '../durable/stream-slots';
import { ADMIN, api, BASE, eventually, newAgent, newTenant } from './support/api';
import { openSocket, type Frame } from './support/sse';
import { expectStreamRefused, fill, leasesDue, openSse, readingStream } from './support/streams';

const CAP = DEFAULT_STREAMS_PER_AGENT;

const headSse = (key: string, id: string) => SELF.fetch(`${BASE}/v1/agents/${id}/events`, { method: 'HEAD', headers: { authorization: `Bearer ${key}` } });
const openWs = (key: string, id: string) => SELF.fetch(`${BASE}/v1/agents/${id}/events/ws`, { headers: { authorization: `Bearer ${key}`, upgrade: 'websocket' } });
const stubOf = (tenantId: string, agentId: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));
/** The agent refuses one more stream, over either transport, with the documented 429. */
async function expectFull(key: string, id: string, open = CAP) {
  for (const res of [await openSse(key, id), await openWs(key, id)]) await expectStreamRefused(res, 'streams.perAgent', CAP, open);
}

/** One more stream is admitted again (a slot came back), then given up. */
async function expectRoom(key: string, id: string) {
  const res = await eventually(async () => {
    const again = await openSse(key, id);
    if (again.status === 200) return again;
    await again.body?.cancel();
    return null;
  }, 8_000, 100);
  await res.body?.cancel();
}

describe("the cap on an agent's open event streams", () => {
  it('refuses the stream past 32, SSE and WebSocket counted together, with 429 too_many_streams, Retry-After and details naming the limit; other agents are not held to it', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const sockets = [await openSocket(key, id), await openSocket(key, id)];
    const streams = await fill(key, id, CAP - sockets.length);
    await expectFull(key, id);
    // Another agent of the same key has slots of its own.
    const other = await newAgent(key);
    const res = await openSse(key, other);
    expect(res.status).toBe(200);
    await res.body?.cancel();
    // A socket closed by its client gives its slot back.
    sockets[0]?.socket.close(1000, 'done');
    await expectRoom(key, id);
    for (const s of streams) await s.cancel();
    sockets[1]?.socket.close(1000, 'done');
  });

  it('answers a HEAD as its GET would: 429 with Retry-After once the agent is full, 200 while a stream fits, and a HEAD takes no slot', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const streams = await fill(key, id, CAP - 1);
    for (let i = 0; i < 3; i++) {
      const head = await headSse(key, id);
      expect(head.status).toBe(200);
      expect(head.headers.get('content-type')).toMatch(/^text\/event-stream/);
    }
    // The HEADs opened nothing: the last slot is still there for a stream.
    streams.push(await readingStream(key, id));
    const head = await headSse(key, id);
    expect(head.status).toBe(429);
    expect(head.headers.get('retry-after')).toBe(String(STREAM_RETRY_AFTER_S));
    await expectFull(key, id);
    for (const s of streams) await s.cancel();
  });

  it('gives a slot back when a client goes: the heartbeat that finds it took nothing for a minute ends its stream', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const streams = await fill(key, id, CAP);
    await expectFull(key, id);
    // The runtime does not pass a client's cancel on to the object's stream: it stays subscribed
    // until a heartbeat finds its frames untaken a minute on (durable/agent-events.ts).
    await streams[0]?.cancel();
    type Sub = { beat(now: number): void };
    for (const later of [61_000, 122_000, 183_000]) {
      await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
        for (const s of [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]) s.beat(Date.now() + later);
      });
      await new Promise((r) => setTimeout(r, 300));
    }
    // One slot came back, exactly: the 31 clients still reading keep theirs.
    const again = await readingStream(key, id);
    await expectFull(key, id);
    for (const s of [...streams.slice(1), again]) await s.cancel();
  });

  it("gives the slots back when the streams' key is revoked", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const watcher = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'watcher' } });
    const streams = await fill(watcher.body.key as string, id, CAP);
    await expectFull(key, id);
    expect((await api(`/v1/admin/keys/${watcher.body.id}`, { method: 'DELETE', key: ADMIN() })).status).toBe(204);
    // The next event has the streams' keys checked: the revoked key's streams end.
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after' } })).status).toBe(200);
    const ends = await Promise.all(streams.map((s) => s.ended));
    expect(ends.every((e) => e.ended && e.frames.at(-1)?.event === 'unauthorized')).toBe(true);
    await expectRoom(key, id);
  });

  it('gives the slots back when the agent is deleted: the agent created again under its id has all of them', async () => {
    const { key, keyId } = await newTenant();
    const id = await newAgent(key);
    const streams = await fill(key, id, CAP);
    await expectFull(key, id);
    expect((await api(`/v1/agents/${id}`, { key, method: 'DELETE' })).status).toBe(204);
    const ends = await Promise.all(streams.map((s) => s.ended));
    expect(ends.every((e: { ended: boolean; frames: Frame[] }) => e.ended && e.frames.at(-1)?.event === 'deleted')).toBe(true);
    await newAgent(key, { id });
    const again = await fill(key, id, CAP);
    // The key's leases of the ended streams go at their check (durable/key-stream-leases.ts).
    await leasesDue(keyId);
    await expectFull(key, id);
    for (const s of again) await s.cancel();
  });

  it('gives the slots back when the object is reset (a crash or a code update)', async () => {
    const { key, keyId, tenantId } = await newTenant();
    const id = await newAgent(key);
    const socket = await openSocket(key, id);
    const streams = await fill(key, id, CAP - 1);
    await expectFull(key, id);
    await runInDurableObject(stubOf(tenantId, id), (_instance, state) => state.abort('reset under test')).catch(() => undefined);
    await Promise.all(streams.map((s) => s.ended));
    await socket.closed;
    const again = await fill(key, id, CAP);
    await leasesDue(keyId);
    await expectFull(key, id);
    for (const s of again) await s.cancel();
  });
});

describe('MAX_STREAMS_PER_AGENT', () => {
  it('sets the cap when a whole number from 1 to 10,000 written in digits, else the default 32 holds', () => {
    expect(streamsPerAgent({})).toBe(32);
    expect(streamsPerAgent({ MAX_STREAMS_PER_AGENT: '4' })).toBe(4);
    expect(streamsPerAgent({ MAX_STREAMS_PER_AGENT: '10000' })).toBe(10_000);
    expect(streamsPerAgent({ MAX_STREAMS_PER_AGENT: ' 8 ' })).toBe(8);
    for (const bad of ['0', '-1', '2.5', 'many', '', '10001']) expect(streamsPerAgent({ MAX_STREAMS_PER_AGENT: bad })).toBe(32);
    // Digits only, as D1_EXECUTION_RETENTION_DAYS: Number() read these as 16, 1000 and 3.
    for (const bad of ['0x10', '1e3', '0b11', '1_0', '+5']) expect(streamsPerAgent({ MAX_STREAMS_PER_AGENT: bad }), bad).toBe(32);
  });
});
