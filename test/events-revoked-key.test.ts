import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { ADMIN, api, newAgent, newTenant } from './support/api';
import { frameReader, openSocket, type Frame } from './support/sse';

/** An open SSE stream of an agent's events, read frame by frame. */
async function openStream(key: string, agentId: string) {
  const res = await SELF.fetch(`https://gateway.test/v1/agents/${agentId}/events`, { headers: { authorization: `Bearer ${key}` } });
  expect(res.status).toBe(200);
  return frameReader(res);
}

/** A tenant with an agent, a key that runs work, and a second key, made to watch, that is then revoked. */
async function setUp() {
  const { key, tenantId } = await newTenant();
  const agentId = await newAgent(key);
  const watcher = await api(`/v1/admin/tenants/${tenantId}/keys`, { key: ADMIN(), body: { name: 'watcher' } });
  expect(watcher.status).toBe(201);
  const run = async (intent: string): Promise<string> => {
    const res = await api(`/v1/agents/${agentId}/executions`, { key, body: { intent, input: 'hi' } });
    expect(res.status).toBe(200);
    return res.body.id as string;
  };
  const revoke = async () => expect((await api(`/v1/admin/keys/${watcher.body.id}`, { method: 'DELETE', key: ADMIN() })).status).toBe(204);
  return { key, agentId, watcherKey: watcher.body.key as string, run, revoke };
}

const succeeded = (id: string) => (frames: Frame[]) => frames.some((f) => f.event === 'execution.succeeded' && f.data.data.id === id);

describe('an open event stream whose key is revoked', () => {
  it('SSE: ends with an unauthorized notice and carries none of the events after it; a valid key\'s stream goes on', async () => {
    const { key, agentId, watcherKey, run, revoke } = await setUp();
    const watched = await openStream(watcherKey, agentId);
    const other = await openStream(key, agentId);
    const first = await run('before');
    expect(succeeded(first)((await watched.until(succeeded(first))).frames)).toBe(true);

    await revoke();
    const second = await run('after');
    const { frames, ended } = await watched.until(() => false);
    expect(ended).toBe(true);
    expect(frames.at(-1)).toEqual({ event: 'unauthorized', data: { code: 'unauthorized', message: "this stream's API key was revoked" } });
    expect(frames.some((f) => f.data?.data?.id === second)).toBe(false);

    expect(succeeded(second)((await other.until(succeeded(second))).frames)).toBe(true);
    await other.cancel();
    // Its reconnect is refused.
    expect((await api(`/v1/agents/${agentId}/events`, { key: watcherKey })).status).toBe(401);
  });

  it('WebSocket: closes with 1008 and sends none of the events after it; a valid key\'s socket goes on', async () => {
    const { key, agentId, watcherKey, run, revoke } = await setUp();
    const watched = await openSocket(watcherKey, agentId);
    const other = await openSocket(key, agentId);
    const first = await run('before');
    const hasSucceeded = (messages: any[], id: string) => messages.some((m) => m.type === 'execution.succeeded' && m.data.id === id);
    for (let i = 0; i < 100 && !hasSucceeded(watched.messages, first); i++) await new Promise((r) => setTimeout(r, 50));
    expect(hasSucceeded(watched.messages, first)).toBe(true);

    await revoke();
    const second = await run('after');
    const closed = await Promise.race([watched.closed, new Promise<null>((r) => setTimeout(() => r(null), 5_000))]);
    expect(closed).toEqual({ code: 1008, reason: 'the API key was revoked' });
    expect(watched.messages.some((m) => m.data?.id === second)).toBe(false);

    for (let i = 0; i < 100 && !hasSucceeded(other.messages, second); i++) await new Promise((r) => setTimeout(r, 50));
    expect(hasSucceeded(other.messages, second)).toBe(true);
    other.socket.close(1000, 'done');
  });
});
