import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { frameReader, openSocket, type Frame } from './support/sse';
import { replayPage } from '../durable/event-replay';
import { Sql } from '../durable/sql';


/** Reads frames until `enough` holds, the stream ends, or `timeoutMs` passes (then the caller's expectations fail). */
async function readFrames(res: Response, enough: (frames: Frame[]) => boolean, timeoutMs = 5_000): Promise<{ frames: Frame[]; ended: boolean }> {
  const reader = frameReader(res);
  const read = await reader.until(enough, timeoutMs);
  if (!read.ended) await reader.cancel();
  return read;
}

/** The first `count` lifecycle events (frames with an id). */
async function readEvents(res: Response, count: number): Promise<{ id: number; type: string; data: any }[]> {
  const events = (frames: Frame[]) => frames.filter((f) => f.id !== undefined);
  const { frames } = await readFrames(res, (f) => events(f).length >= count);
  return events(frames).map((f) => ({ id: f.id ?? 0, type: f.event, data: f.data }));
}

const open = (key: string, id: string, lastEventId?: number) =>
  SELF.fetch(`https://gateway.test/v1/agents/${id}/events`, { headers: { authorization: `Bearer ${key}`, ...(lastEventId !== undefined && { 'last-event-id': String(lastEventId) }) } });

const stubOf = (tenantId: string, agentId: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));

/** Two executions (six events, seq 1-6), then the first three trimmed as retention would. */
async function agentWithTrimmedLog(): Promise<{ key: string; id: string }> {
  const { key, tenantId } = await newTenant();
  const id = await newAgent(key);
  await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'one' } });
  await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'two' } });
  await runInDurableObject(stubOf(tenantId, id), (_instance, state) => {
    state.storage.sql.exec('DELETE FROM events WHERE seq <= 3');
  });
  return { key, id };
}

/** An agent whose log reached seq 6, deleted and created again under its id, then run `runs` times. */
async function recreatedAgent(runs = 1): Promise<{ key: string; id: string }> {
  const { key } = await newTenant();
  const id = await newAgent(key);
  await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'one' } });
  await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'two' } });
  expect((await api(`/v1/agents/${id}`, { key, method: 'DELETE' })).status).toBe(204);
  await newAgent(key, { id });
  for (let i = 0; i < runs; i++) await api(`/v1/agents/${id}/executions`, { key, body: { intent: `again-${i}` } });
  return { key, id };
}

/** Appends `count` events of about `bytes` each to an agent's log (seq 1…count on a new agent). */
async function fillLog(tenantId: string, agentId: string, count: number, bytes: number): Promise<void> {
  const data = JSON.stringify({ filler: 'x'.repeat(bytes) });
  await runInDurableObject(stubOf(tenantId, agentId), (_instance, state) => {
    for (let i = 0; i < count; i++) state.storage.sql.exec("INSERT INTO events (type, data, created_at) VALUES ('test.filler', ?, 0)", data);
  });
}

/** An agent with one execution's three events (seq 1-3). */
async function agentWithThreeEvents(): Promise<{ key: string; id: string }> {
  const { key } = await newTenant();
  const id = await newAgent(key);
  await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'one' } });
  return { key, id };
}

describe('event stream', () => {
  it('shows queued, running and succeeded live, in order', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await open(key, id);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const pending = readEvents(res, 3);
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello', mode: 'async' } });
    const events = await pending;
    expect(events.map((e) => e.type)).toEqual(['execution.queued', 'execution.running', 'execution.succeeded']);
    expect(events.every((e) => e.data.data.id === exec.body.id)).toBe(true);
    expect(events.map((e) => e.id)).toEqual([...events.map((e) => e.id)].sort((a, b) => a - b));
  });

  it('resumes after Last-Event-ID without gaps or repeats', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'one' } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'two' } });
    const all = await readEvents(await open(key, id, 0), 6);
    expect(all.map((e) => e.type)).toEqual(['execution.queued', 'execution.running', 'execution.succeeded', 'execution.queued', 'execution.running', 'execution.succeeded']);
    const resumed = await readEvents(await open(key, id, all[2]?.id), 3);
    expect(resumed.map((e) => e.id)).toEqual(all.slice(3).map((e) => e.id));
  });

  it('replays every kept event on resume, also the up to hundred kept beyond the 1,000 retained', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    // Trimming runs as the seq crosses a hundred, so between 1,000 and 1,100 events are kept.
    await runInDurableObject(stubOf(tenantId, id), (_instance, state) => {
      for (let i = 0; i < 1_050; i++) state.storage.sql.exec("INSERT INTO events (type, data, created_at) VALUES ('test.filler', '{}', 0)");
    });
    const res = await open(key, id, 0);
    const reading = readFrames(res, (f) => f.length >= 1_053, 10_000);
    await new Promise((r) => setTimeout(r, 200));
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'live' } });
    const { frames } = await reading;
    expect(frames.map((f) => f.id)).toEqual(Array.from({ length: 1_053 }, (_, i) => i + 1));
  });

  it('tells a client resuming past trimmed events which it missed (gap), then sends the rest', async () => {
    const { key, id } = await agentWithTrimmedLog();
    const { frames } = await readFrames(await open(key, id, 1), (f) => f.length >= 4);
    expect(frames.map((f) => [f.event, f.id])).toEqual([['gap', undefined], ['execution.queued', 4], ['execution.running', 5], ['execution.succeeded', 6]]);
    expect(frames[0]?.data).toEqual({ missedFrom: 2, missedTo: 3 });
  });

  it('resets a client whose Last-Event-ID is beyond the log, replays the log and stays live', async () => {
    const { key, id } = await agentWithThreeEvents();
    const res = await open(key, id, 1_000);
    const reading = readFrames(res, (f) => f.filter((x) => x.id !== undefined).length >= 6);
    await new Promise((r) => setTimeout(r, 200));
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'live' } });
    const { frames } = await reading;
    expect(frames[0]).toEqual({ event: 'reset', data: { lastEventId: 1_000, newestSeq: 3 } });
    expect(frames.slice(1).map((f) => f.id)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(frames.at(-1)?.data.data.intent).toBe('live');
  });

  it('continues the sequence of an agent deleted and created again: a client of the old agent misses none of the new one', async () => {
    // Three executions take the new log (7-15) past the old client's id (6).
    const { key, id } = await recreatedAgent(3);
    const { frames } = await readFrames(await open(key, id, 6), (f) => f.length >= 9);
    expect(frames.map((f) => f.id)).toEqual([7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(frames[0]?.data.data.intent).toBe('again-0');
    // A client that stopped inside the old log is told what it can no longer get.
    const behind = await readFrames(await open(key, id, 3), (f) => f.length >= 10);
    expect(behind.frames[0]).toEqual({ event: 'gap', data: { missedFrom: 4, missedTo: 6 } });
    expect(behind.frames.slice(1).map((f) => f.id)).toEqual([7, 8, 9, 10, 11, 12, 13, 14, 15]);
  });

  it('takes the ids of the deleted agent as its own while the agent created again has recorded nothing yet: a gap for what a client missed, no reset; a reset beyond them names the newest seq given', async () => {
    const { key, id } = await recreatedAgent(0);
    // Its log is empty, its numbering goes on from 6: an id up to 6 was this log's, not beyond it.
    const [current, stale] = await Promise.all([open(key, id, 6), open(key, id, 3)]);
    const beyond = await openSocket(key, id, 20);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'first-of-new' } });
    const { frames } = await readFrames(current, (f) => f.filter((x) => x.id !== undefined).length >= 3);
    expect(frames.map((f) => f.event)).toEqual(['execution.queued', 'execution.running', 'execution.succeeded']);
    expect(frames.map((f) => f.id)).toEqual([7, 8, 9]);
    const behind = await readFrames(stale, (f) => f.filter((x) => x.id !== undefined).length >= 3);
    expect(behind.frames[0]).toEqual({ event: 'gap', data: { missedFrom: 4, missedTo: 6 } });
    expect(behind.frames.slice(1).map((f) => f.id)).toEqual([7, 8, 9]);
    // An id beyond the numbering is told where it stands: the newest seq this log gave is 6, not 0.
    await eventually(async () => beyond.messages.length >= 5);
    expect(beyond.messages.map((m) => m.seq ?? m)).toEqual([{ type: 'reset', data: { lastEventId: 20, newestSeq: 6 } }, { type: 'gap', data: { missedFrom: 1, missedTo: 6 } }, 7, 8, 9]);
    beyond.socket.close();
  });

  it('continues the sequence through an incarnation that recorded no event: deleted again before it ran anything', async () => {
    const { key, id } = await recreatedAgent(0);
    expect((await api(`/v1/agents/${id}`, { key, method: 'DELETE' })).status).toBe(204);
    await newAgent(key, { id });
    for (const intent of ['third-0', 'third-1', 'third-2']) await api(`/v1/agents/${id}/executions`, { key, body: { intent } });
    // The first agent's client (id 6) gets every event of the third one: its log did not restart at 1.
    const { frames } = await readFrames(await open(key, id, 6), (f) => f.filter((x) => x.id !== undefined).length >= 9);
    expect(frames.map((f) => f.id)).toEqual([7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(frames[0]?.data.data.intent).toBe('third-0');
  });

  it('ends the stream of a client that stopped reading once 4 MiB wait for it, and the client resumes from the log', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent') } });
    const res = await open(key, id);
    // Executions whose succeeded events carry 1 MB each (an output's most): more than the stream may hold unread.
    for (const outputBytes of [1_000_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000, 10]) {
      expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'big', input: { mock: { outputBytes } } } })).status).toBe(200);
    }
    const { frames, ended } = await readFrames(res, () => false);
    expect(ended).toBe(true);
    const events = frames.filter((f) => f.id !== undefined);
    const last = frames.at(-1);
    expect(last).toMatchObject({ event: 'behind', data: { lastEventId: events.at(-1)?.id } });
    expect(last?.data.backlogBytes).toBeGreaterThan(4 * 1024 * 1024);
    expect(events.map((f) => f.id)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1));
    expect(events.length).toBeLessThan(18);
    // Nothing is lost: a resume from the last id it got carries on to the last execution's end.
    const rest = await readEvents(await open(key, id, events.at(-1)?.id), 18 - events.length);
    expect(rest.map((e) => e.id)).toEqual(Array.from({ length: 18 - events.length }, (_, i) => events.length + i + 1));
  });

  it('replays a resumed log only as fast as its client reads: one that stopped reading holds little of it in the object', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    await fillLog(tenantId, id, 40, 256 * 1024); // 10 MiB of events
    const res = await open(key, id, 0);
    expect(res.status).toBe(200);
    // The client reads nothing. The whole log used to be queued in the object at once, 10 MiB
    // here and up to 1,100 events of a megabyte and more each in production (beyond an isolate's 128 MB).
    await new Promise((r) => setTimeout(r, 300));
    const waiting = await runInDurableObject(stubOf(tenantId, id), (instance) =>
      [...(instance as unknown as { events: { subscribers: Set<{ backlog(): number }> } }).events.subscribers].map((s) => s.backlog()));
    expect(waiting).toHaveLength(1);
    expect(waiting[0]).toBeLessThan(2 * 1024 * 1024);
    // Read on, it gets the whole log in order, then live events.
    const reading = readFrames(res, (f) => f.length >= 43, 10_000);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'live' } });
    const { frames } = await reading;
    expect(frames.map((f) => f.id)).toEqual(Array.from({ length: 43 }, (_, i) => i + 1));
  });

  it('reads a replay in pages of at most 256 KiB of UTF-8, not of characters', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    // 96 Ki characters of '€' (288 KiB of UTF-8) each: a page holds one of them, not two (576 KiB).
    const data = JSON.stringify({ filler: '€'.repeat(96 * 1024) });
    const pages = await runInDurableObject(stubOf(tenantId, id), (_instance, state) => {
      for (let i = 0; i < 3; i++) state.storage.sql.exec("INSERT INTO events (type, data, created_at) VALUES ('test.filler', ?, 0)", data);
      const sql = new Sql(state.storage.sql);
      return [replayPage(sql, 0), replayPage(sql, 2)].map((page) => ({ seqs: page.events.map((e) => e.seq), done: page.done }));
    });
    expect(pages).toEqual([{ seqs: [1], done: false }, { seqs: [3], done: true }]);
  });

  it('tells a client whose replay fell behind the trimming what it missed (gap), then goes on', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    await fillLog(tenantId, id, 40, 256 * 1024);
    const reader = frameReader(await open(key, id, 0));
    expect((await reader.until((f) => f.length >= 1)).frames[0]?.id).toBe(1);
    // Trimmed while the client was still reading its replay: it is told, not silently skipped.
    await runInDurableObject(stubOf(tenantId, id), (_instance, state) => {
      state.storage.sql.exec('DELETE FROM events WHERE seq <= 30');
    });
    const { frames } = await reader.until((f) => f.some((x) => x.id === 40), 10_000);
    await reader.cancel();
    const gap = frames.findIndex((f) => f.event === 'gap');
    expect(gap).toBeGreaterThan(0);
    const before = frames.slice(0, gap).map((f) => f.id ?? 0);
    expect(before).toEqual(Array.from({ length: before.length }, (_, i) => i + 1));
    expect(frames[gap]?.data).toEqual({ missedFrom: before.length + 1, missedTo: 30 });
    expect(frames.slice(gap + 1).map((f) => f.id)).toEqual(Array.from({ length: 10 }, (_, i) => i + 31));
  });

  it('answers HEAD with the stream\'s headers without subscribing anything in the object', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    for (let i = 0; i < 3; i++) {
      const res = await SELF.fetch(`https://gateway.test/v1/agents/${id}/events`, { method: 'HEAD', headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    }
    // Each HEAD used to open a stream in the object that nobody would read, fed every event
    // until the heartbeat found it stalled a minute or more later.
    const subscribers = await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => (instance as { events: { subscribers: Set<unknown> } }).events.subscribers.size);
    expect(subscribers).toBe(0);
    const missing = await SELF.fetch('https://gateway.test/v1/agents/no-such-agent/events', { method: 'HEAD', headers: { authorization: `Bearer ${key}` } });
    expect(missing.status).toBe(404);
  });

  it('ends an open stream when its agent is deleted, with a last deleted notice', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await open(key, id);
    const reading = readFrames(res, () => false, 5_000);
    await new Promise((r) => setTimeout(r, 200));
    expect((await api(`/v1/agents/${id}`, { key, method: 'DELETE' })).status).toBe(204);
    const started = Date.now();
    const { frames, ended } = await reading;
    expect(ended).toBe(true);
    expect(Date.now() - started).toBeLessThan(4_000);
    // Said so in a last frame without an id, as a revoked key's stream is: ended silently, it
    // looked like any break, and an EventSource's reconnect learns nothing from its 404.
    expect(frames.at(-1)).toEqual({ event: 'deleted', data: { code: 'not_found', message: 'the agent was deleted' } });
  });
});

describe('a client gone without its stream being cancelled', () => {
  it('ends the stream of a client that has taken nothing for a minute, and keeps one that reads', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent') } });
    type Sub = { backlog(): number; beat(now: number): void };
    const subscribers = () => runInDurableObject(stubOf(tenantId, id), (instance: unknown) => [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]);
    // Gone without a word: it reads no more and never cancels. (A cancelled reader's frames were
    // pumped off by the runtime at moments of its own, so whether any still waited in the object
    // when the heartbeat came was a race, which a loaded machine lost.)
    const gone = (await open(key, id)).body!.getReader();
    await gone.read();
    const live = frameReader(await open(key, id));
    // An output of 1 MB: more than the runtime's own buffers take in, so frames wait in the object.
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'one', input: { mock: { outputBytes: 1_000_000 } } } });
    expect((await live.until((f) => f.filter((e) => e.id !== undefined).length >= 3, 5_000)).frames).toHaveLength(3);
    // Nothing told the object: the stream stayed subscribed, its frames piling up.
    await eventually(async () => (await subscribers()).some((s) => s.backlog() > 256 * 1024), 5_000, 20);
    expect((await subscribers()).map((s) => s.backlog() > 256 * 1024).sort()).toEqual([false, true]);
    // The heartbeats of a minute later: the one whose client took nothing ends.
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      for (const s of [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]) s.beat(Date.now() + 61_000);
    });
    expect(await subscribers()).toHaveLength(1);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'two' } });
    const after = await live.until((f) => f.filter((e) => e.id !== undefined).length >= 6, 5_000);
    expect(after.frames.filter((e) => e.id !== undefined).map((e) => e.id)).toEqual([1, 2, 3, 4, 5, 6]);
    await live.cancel();
    await gone.cancel().catch(() => undefined); // ended by the object already
  });

  it('keeps the stream of a client that reads, though slower than its events come: it took something within the minute', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent') } });
    type Sub = { backlog(): number; beat(now: number): void };
    const subscribers = () => runInDurableObject(stubOf(tenantId, id), (instance: unknown) => [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]);
    const reader = (await open(key, id)).body!.getReader();
    await reader.read();
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'one', input: { mock: { outputBytes: 1_000_000 } } } });
    await eventually(async () => (await subscribers()).some((s) => s.backlog() > 256 * 1024), 5_000, 20);
    const before = (await subscribers())[0]?.backlog() ?? 0;
    // The first heartbeat, 15 s on.
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      for (const s of [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]) s.beat(Date.now() + 15_000);
    });
    // It reads on, a chunk at a time, until some of what waited was taken; never all of it.
    await eventually(async () => {
      await reader.read();
      const now = (await subscribers())[0]?.backlog() ?? 0;
      return now < before && now > 0;
    }, 5_000, 0);
    // A minute after the frames first waited: the client never caught up, but it took frames.
    // It used to be taken for gone (it had not emptied its queue for a minute) and broken off.
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      for (const s of [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]) s.beat(Date.now() + 61_000);
    });
    expect(await subscribers()).toHaveLength(1);
    // Taking nothing for the minute after that, it is let go.
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      for (const s of [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]) s.beat(Date.now() + 122_000);
    });
    expect(await subscribers()).toHaveLength(0);
    await reader.cancel().catch(() => undefined);
  });

  it('lets go of the frames of a stream ended behind once its client has taken nothing of them for a minute', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent') } });
    type Sub = { backlog(): number; beat(now: number): void };
    const subscribers = () => runInDurableObject(stubOf(tenantId, id), (instance: unknown) => [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]);
    const res = await open(key, id);
    // The client reads nothing (nor goes): its stream ends behind, past 4 MiB waiting for it.
    for (let i = 0; i < 6; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'big', input: { mock: { outputBytes: 1_000_000 } } } })).status).toBe(200);
    // Those 4 MiB stayed in the object, held for a client that never took them, with nothing
    // left to let them go (the heartbeat that ends a stalled open stream had stopped with it).
    const held = await subscribers();
    expect(held.map((s) => s.backlog() > 4 * 1024 * 1024)).toEqual([true]);
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      for (const s of [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers]) s.beat(Date.now() + 61_000);
    });
    expect(await subscribers()).toHaveLength(0);
    // The frames were let go, not sent: the client's stream breaks off without the behind
    // notice, and it reconnects with the last id it got (nothing is lost: the log has the rest).
    const { frames, ended } = await readFrames(res, () => false).catch(() => ({ frames: [] as Frame[], ended: true }));
    expect(ended).toBe(true);
    expect(frames.some((f) => f.event === 'behind')).toBe(false);
  });

  it("holds at most 16 MiB unread for all of an agent's streams together, letting go of the ones furthest behind first", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent') } });
    type Sub = { backlog(): number };
    const backlogs = () => runInDurableObject(stubOf(tenantId, id), (instance: unknown) => [...(instance as { events: { subscribers: Set<Sub> } }).events.subscribers].map((s) => s.backlog()));
    // Six clients that read nothing: each stays under its own 4 MiB, but together they held
    // 24 MB in the object, whose memory every agent of the isolate (any tenant's) shares.
    const streams = [];
    for (let i = 0; i < 6; i++) streams.push(await open(key, id));
    for (let i = 0; i < 4; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'big', input: { mock: { outputBytes: 1_000_000 } } } })).status).toBe(200);
    const held = await backlogs();
    expect(held.reduce((sum, b) => sum + b, 0)).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect(held.length).toBeGreaterThanOrEqual(3);
    expect(held.length).toBeLessThan(6);
    // A client let go finds its stream broken off and resumes from the log, missing nothing.
    const cut = await Promise.all(streams.map((res) => readFrames(res, () => false, 2_000).catch(() => ({ frames: [] as Frame[], ended: true }))));
    expect(cut.filter((r) => r.ended)).toHaveLength(6 - held.length);
    const resumed = await readEvents(await open(key, id, 0), 12);
    expect(resumed.map((e) => e.id)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
  }, 45_000); // 4 MB of frames to six streams: about 10 s alone, up to 21 s under CI's load

  it("holds one copy of an event's frame for all of an agent's streams, not one per stream", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    type Events = { stream(lastEventId: number | null): ReadableStream<Uint8Array> };
    // Two streams no client reads: what each holds waits in the object's memory. Encoded once
    // per stream, a 1 MB output held by a hundred stalled streams took 100 MB at once (before
    // the 16 MiB bound could let any go), past the isolate's 128 MB that other agents share.
    const readers = await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      const events = (instance as { events: Events }).events;
      return [events.stream(null).getReader(), events.stream(null).getReader()].map((reader) => {
        void reader.read(); // `: connected`
        return reader;
      });
    });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'one' } });
    const same = await runInDurableObject(stubOf(tenantId, id), async () => {
      const [a, b] = await Promise.all(readers.map((reader) => reader.read()));
      readers.forEach((reader) => void reader.cancel());
      return a?.value !== undefined && a.value === b?.value;
    });
    expect(same).toBe(true);
  });

  it('keeps a stream ended behind for a client that reads it: it gets every frame and the behind notice', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent') } });
    const res = await open(key, id);
    for (let i = 0; i < 6; i++) expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'big', input: { mock: { outputBytes: 1_000_000 } } } })).status).toBe(200);
    // A heartbeat within the minute leaves it alone.
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      for (const s of [...(instance as { events: { subscribers: Set<{ beat(now: number): void }> } }).events.subscribers]) s.beat(Date.now() + 15_000);
    });
    const { frames, ended } = await readFrames(res, () => false);
    expect(ended).toBe(true);
    expect(frames.at(-1)?.event).toBe('behind');
    await eventually(async () => (await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => (instance as { events: { subscribers: Set<unknown> } }).events.subscribers.size)) === 0);
  });
});

describe('events of a change that did not happen', () => {
  it('streams no event of a change whose transaction rolled back, and then the event that took its seq', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const res = await open(key, id);
    const { messages, socket } = await openSocket(key, id);
    const running = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 1500 }, mode: 'async' } });
    // The cancel's transaction fails after its event was recorded (the runtime refusing a
    // statement would), so it rolls back: the execution runs on and succeeds.
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      const hooks = (instance as { webhooks: { fanOut(type: string, ...rest: unknown[]): number } }).webhooks;
      const fanOut = hooks.fanOut.bind(hooks);
      let failed = false;
      hooks.fanOut = (type, ...rest) => {
        if (type === 'execution.cancelled' && !failed) {
          failed = true;
          throw new Error('injected failure after the event was recorded');
        }
        return fanOut(type, ...rest);
      };
    });
    expect((await api(`/v1/agents/${id}/executions/${running.body.id}/cancel`, { key, method: 'POST' })).status).toBe(500);
    const events = await readEvents(res, 3);
    // The stream used to carry "cancelled" (seq 3), then dropped the real seq 3, "succeeded",
    // as a repeat; the socket got seq 3 twice.
    expect(events.map((e) => [e.id, e.type])).toEqual([[1, 'execution.queued'], [2, 'execution.running'], [3, 'execution.succeeded']]);
    await eventually(async () => messages.length >= 3);
    await new Promise((r) => setTimeout(r, 200));
    expect(messages.map((m) => [m.seq, m.type])).toEqual([[1, 'execution.queued'], [2, 'execution.running'], [3, 'execution.succeeded']]);
    socket.close();
  });
});

describe('event stream over a WebSocket', () => {
  it('offers the same events over a hibernating WebSocket', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'before' } });
    const { socket, messages } = await openSocket(key, id, 0);
    await eventually(async () => messages.length >= 3);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after' } });
    await eventually(async () => messages.length >= 6);
    expect(messages.map((m) => m.type)).toEqual(['execution.queued', 'execution.running', 'execution.succeeded', 'execution.queued', 'execution.running', 'execution.succeeded']);
    socket.close();
  });

  it('sends a replay 4 MiB at a time: then a behind notice and a close, and the reconnect from its lastEventId gets the rest', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    await fillLog(tenantId, id, 40, 256 * 1024); // 10 MiB of events
    // The whole log used to be sent at once, however large (the runtime buffers it all for a
    // client that does not read), the object doing nothing else meanwhile.
    const seqs: number[] = [];
    let from = 0;
    let connections = 0;
    for (;;) {
      const socket = await openSocket(key, id, from);
      connections++;
      const behind = await Promise.race([socket.closed.then(() => socket.messages.at(-1)), eventually(async () => seqs.length + socket.messages.length >= 40)]);
      const events = socket.messages.filter((m) => m.seq !== undefined);
      expect(events.length).toBeLessThanOrEqual(17); // 4 MiB of these events, and the one that crossed it
      seqs.push(...events.map((m) => m.seq as number));
      if (behind?.type !== 'behind') {
        socket.socket.close();
        break;
      }
      expect((await socket.closed).code).toBe(1000);
      expect(behind.data.lastEventId).toBe(seqs.at(-1));
      from = behind.data.lastEventId;
    }
    expect(connections).toBe(3);
    expect(seqs).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
  });

  it('bounds a replay in UTF-8 bytes, not characters: events of text beyond ASCII send no more than 4 MiB before behind', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    // 40 events of 96 Ki characters of '€', three bytes each: 288 KiB of UTF-8 apiece, 11 MiB in all.
    const data = JSON.stringify({ filler: '€'.repeat(96 * 1024) });
    await runInDurableObject(stubOf(tenantId, id), (_instance, state) => {
      for (let i = 0; i < 40; i++) state.storage.sql.exec("INSERT INTO events (type, data, created_at) VALUES ('test.filler', ?, 0)", data);
    });
    const socket = await openSocket(key, id, 0);
    // Counted as characters, the whole log (11 MiB) went out at once, with no behind notice.
    await Promise.race([socket.closed, eventually(async () => socket.messages.length >= 40)]);
    const behind = socket.messages.at(-1);
    expect(behind?.type).toBe('behind');
    expect((await socket.closed).code).toBe(1000);
    const bytes = socket.messages.slice(0, -1).reduce((sum, m) => sum + new TextEncoder().encode(JSON.stringify(m)).byteLength, 0);
    expect(behind.data.backlogBytes).toBe(bytes);
    expect(bytes).toBeLessThanOrEqual(4 * 1024 * 1024 + 300 * 1024); // the bound, and the page that crossed it
  });

  it('answers a request that is not an upgrade with 426 upgrade_required, as documented', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await api(`/v1/agents/${id}/events/ws`, { key });
    expect(res.status).toBe(426);
    expect(res.body.error).toMatchObject({ code: 'upgrade_required', requestId: expect.any(String) });
    const doc = (await api('/openapi.json')).body;
    expect(doc.paths['/v1/agents/{id}/events/ws'].get.responses['426'].content['application/json'].schema.$ref).toBe('#/components/schemas/Error');
    expect(doc.paths['/v1/agents/{id}/events/ws'].get.responses['400']).toBeDefined(); // a malformed lastEventId
  });

  it('sends the same gap notice as the SSE stream, as a message, before the events it still has', async () => {
    const { key, id } = await agentWithTrimmedLog();
    const { socket, messages } = await openSocket(key, id, 1);
    await eventually(async () => messages.length >= 4);
    expect(messages[0]).toEqual({ type: 'gap', data: { missedFrom: 2, missedTo: 3 } });
    expect(messages.slice(1).map((m) => [m.type, m.seq])).toEqual([['execution.queued', 4], ['execution.running', 5], ['execution.succeeded', 6]]);
    socket.close();
  });

  it('sends the same reset notice as the SSE stream when lastEventId is beyond the log, then the log', async () => {
    const { key, id } = await agentWithThreeEvents();
    const { socket, messages } = await openSocket(key, id, 1_000);
    await eventually(async () => messages.length >= 4);
    expect(messages[0]).toEqual({ type: 'reset', data: { lastEventId: 1_000, newestSeq: 3 } });
    expect(messages.slice(1).map((m) => m.seq)).toEqual([1, 2, 3]);
    socket.close();
  });

  it('gives a socket of the old agent every event of the agent created again under its id', async () => {
    const { key, id } = await recreatedAgent();
    const { socket, messages } = await openSocket(key, id, 6);
    await eventually(async () => messages.length >= 3);
    expect(messages.map((m) => m.seq)).toEqual([7, 8, 9]);
    socket.close();
  });

  it('answers a ping message with pong from the runtime, without waking the object', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const res = await SELF.fetch(`https://gateway.test/v1/agents/${id}/events/ws`, { headers: { authorization: `Bearer ${key}`, upgrade: 'websocket' } });
    expect(res.status).toBe(101);
    const socket = res.webSocket as WebSocket;
    const reply = new Promise<unknown>((resolve) => socket.addEventListener('message', (m) => resolve(m.data), { once: true }));
    socket.accept();
    socket.send('ping');
    expect(await reply).toBe('pong');
    // The runtime keeps when it last answered a socket by itself; the object's handler never does.
    const answered = await runInDurableObject(stubOf(tenantId, id), (_instance, state) => state.getWebSockets('events').map((ws) => state.getWebSocketAutoResponseTimestamp(ws)));
    expect(answered).toEqual([expect.any(Date)]);
    socket.close();
  });

  it("answers an upgrade reaching an agent whose object is gone (its route still known here) with the JSON 404 not_found, as the SSE stream does", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    // The object deleted while this isolate (and D1) still route to it: another isolate's DELETE
    // as this one sees it, or the moment between a DELETE's wipe and its registry row's removal.
    await stubOf(tenantId, id).destroy();
    const sse = await open(key, id);
    expect(sse.status).toBe(404);
    expect(((await sse.json()) as any).error).toMatchObject({ code: 'not_found', requestId: expect.any(String) });
    const res = await SELF.fetch(`https://gateway.test/v1/agents/${id}/events/ws`, { headers: { authorization: `Bearer ${key}`, upgrade: 'websocket' } });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await res.json()) as any).error).toMatchObject({ code: 'not_found', requestId: expect.any(String) });
  });

  it('closes open sockets when their agent is deleted', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const { closed } = await openSocket(key, id);
    expect((await api(`/v1/agents/${id}`, { key, method: 'DELETE' })).status).toBe(204);
    const result = await Promise.race([closed, new Promise<null>((r) => setTimeout(() => r(null), 4_000))]);
    expect(result).toEqual({ code: 1000, reason: 'the agent was deleted' });
  });
});
