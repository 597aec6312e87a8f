import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { DEFAULT_STREAMS_PER_AGENT, DEFAULT_STREAMS_PER_KEY, STREAM_RETRY_AFTER_S, streamsPerKey } from '../durable/stream-slots';
import { ADMIN, api, BASE, eventually, newAgent, newTenant } from './support/api';
import { openSocket } from './support/sse';
import { expectStreamRefused, fill, leasesDue, leasesOf, openSse } from './support/streams';

const PER_AGENT = DEFAULT_STREAMS_PER_AGENT;
const PER_KEY = DEFAULT_STREAMS_PER_KEY;

const openWs = (key: string, id: string) => SELF.fetch(`${BASE}/v1/agents/${id}/events/ws`, { headers: { authorization: `Bearer ${key}`, upgrade: 'websocket' } });
const limiterOf = (keyId: string) => env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(`key:${keyId}`));

describe("the cap on one API key's event streams across agents", () => {
  it('refuses the 65th stream of a key across agents (SSE, WebSocket and HEAD) with streams.perKey; an agent\'s own refusal takes no slot; another key is unaffected; slots come back when streams or a socket end', async () => {
    const { key, keyId, tenantId } = await newTenant();
    const [a, b, c] = [await newAgent(key), await newAgent(key), await newAgent(key)];
    const onA = await fill(key, a, PER_AGENT);
    // The agent's own cap refuses these after the key's lease was taken: given back at once.
    await expectStreamRefused(await openSse(key, a), 'streams.perAgent', PER_AGENT);
    await expectStreamRefused(await openWs(key, a), 'streams.perAgent', PER_AGENT);
    const sockets = [await openSocket(key, b), await openSocket(key, b)];
    const onB = await fill(key, b, PER_KEY - PER_AGENT - sockets.length);
    expect(await leasesOf(keyId)).toBe(PER_KEY);
    await expectStreamRefused(await openSse(key, c), 'streams.perKey', PER_KEY);
    await expectStreamRefused(await openWs(key, c), 'streams.perKey', PER_KEY);
    const head = await openSse(key, c, 'HEAD');
    expect(head.status).toBe(429);
    expect(head.headers.get('retry-after')).toBe(String(STREAM_RETRY_AFTER_S));

    // Another key of the same tenant has its own count.
    const other = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'other' } });
    const res = await openSse(other.body.key as string, c);
    expect(res.status).toBe(200);
    await res.body?.cancel();

    // Streams their agent ends (deleted here) give the key's slots back once their leases are
    // due a check (15 s on) and the key is at its cap: agent a, asked, holds none of them.
    expect((await api(`/v1/agents/${a}`, { key, method: 'DELETE' })).status).toBe(204);
    await Promise.all(onA.map((s) => s.ended));
    await expectStreamRefused(await openSse(key, c), 'streams.perKey', PER_KEY);
    await leasesDue(keyId);
    // On a fourth agent: the other key's stream on c, its client gone unseen, holds c's slot.
    const back = await fill(key, await newAgent(key), PER_AGENT);
    await expectStreamRefused(await openSse(key, c), 'streams.perKey', PER_KEY);

    // A closed socket's slot comes back the same way; the streams still open keep theirs.
    sockets[0]?.socket.close(1000, 'done');
    const last = await eventually(async () => {
      await leasesDue(keyId);
      const again = await openSse(key, c);
      if (again.status === 200) return again;
      await again.body?.cancel();
      return null;
    }, 8_000, 100);
    // The socket still open keeps its slot: exactly one came back.
    await expectStreamRefused(await openSse(key, c), 'streams.perKey', PER_KEY);

    await last.body?.cancel();
    for (const s of [...onB, ...back]) await s.cancel();
    sockets[1]?.socket.close(1000, 'done');
  });

  it('frees the slot of a lease whose stream never opened (the edge died after taking it) once it is due a check', async () => {
    const { key, keyId, tenantId } = await newTenant();
    const id = await newAgent(key);
    const agent = env.AGENTS.idFromName(`${tenantId}/${id}`).toString();
    for (let i = 0; i < PER_KEY; i++) expect((await limiterOf(keyId).takeStreamLease({ keyId, max: PER_KEY, agent })).ok).toBe(true);
    // Younger than a check, the leases stand: their streams may be opening.
    await expectStreamRefused(await openSse(key, id), 'streams.perKey', PER_KEY);
    await runInDurableObject(limiterOf(keyId), (_i, state) => void state.storage.sql.exec('UPDATE stream_leases SET expires_at = ? WHERE rowid = (SELECT min(rowid) FROM stream_leases)', Date.now() - 1));
    const res = await openSse(key, id);
    expect(res.status).toBe(200);
    // Exactly the one due lease went: the stream just opened holds the slot it freed.
    await expectStreamRefused(await openSse(key, id), 'streams.perKey', PER_KEY);
    await res.body?.cancel();
  });

  it("gives a revoked key's slots back as its streams are cut", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const watcher = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'watcher' } });
    const streams = await fill(watcher.body.key as string, id, 3);
    expect(await leasesOf(watcher.body.id as string)).toBe(3);
    expect((await api(`/v1/admin/keys/${watcher.body.id}`, { method: 'DELETE', key: ADMIN() })).status).toBe(204);
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after' } })).status).toBe(200);
    const ends = await Promise.all(streams.map((s) => s.ended));
    expect(ends.every((e) => e.ended && e.frames.at(-1)?.event === 'unauthorized')).toBe(true);
    // Its leases go at the next check, which the key at its cap (here 3) runs.
    const keyId = watcher.body.id as string;
    await leasesDue(keyId);
    const agent = env.AGENTS.idFromName(`${tenantId}/${id}`).toString();
    expect((await limiterOf(keyId).takeStreamLease({ keyId, max: 3, agent, check: true })).ok).toBe(true);
    expect(await leasesOf(keyId)).toBe(0);
  });
});

describe('MAX_STREAMS_PER_KEY', () => {
  it('sets the cap when a whole number from 1 to 100,000 written in digits, else the default 64 holds', () => {
    expect(streamsPerKey({})).toBe(64);
    expect(streamsPerKey({ MAX_STREAMS_PER_KEY: '4' })).toBe(4);
    expect(streamsPerKey({ MAX_STREAMS_PER_KEY: '100000' })).toBe(100_000);
    for (const bad of ['0', '-1', '2.5', 'many', '', '100001', '0x10', '1e3']) expect(streamsPerKey({ MAX_STREAMS_PER_KEY: bad }), bad).toBe(64);
  });
});
