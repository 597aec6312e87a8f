import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, eventually, newAgent, newTenant } from './support/api';

/**
 * An empty last event id means "no id": the HTML SSE processing model resets it to the empty
 * string (and then sends no header), and a proxy may forward the empty header as it is. It used
 * to be refused with 400; the stream now starts as without one.
 */

/** The `id:` lines of an SSE answer, read until `count` of them came (or the stream ended). */
async function eventIds(res: Response, count: number): Promise<number[]> {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  const ids = () => [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
  while (ids().length < count) {
    const next = await reader.read();
    if (next.done) break;
    text += decoder.decode(next.value, { stream: true });
  }
  await reader.cancel();
  return ids().slice(0, count);
}

/** An agent with one finished execution: events 1-3 are in its log. */
async function agentWithThreeEvents(): Promise<{ key: string; id: string }> {
  const { key } = await newTenant();
  const id = await newAgent(key);
  expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'before' } })).status).toBe(200);
  return { key, id };
}

describe('an empty last event id', () => {
  it('starts the SSE stream live, as no Last-Event-ID does: nothing replayed, the next events sent', async () => {
    const { key, id } = await agentWithThreeEvents();
    const res = await SELF.fetch(`https://gateway.test/v1/agents/${id}/events`, { headers: { authorization: `Bearer ${key}`, 'last-event-id': '' } });
    expect(res.status).toBe(200);
    const first = eventIds(res, 3);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after' } });
    expect(await first).toEqual([4, 5, 6]);
  });

  it('is treated as absent in the query too, and leaves the query to resume when the header is empty', async () => {
    const { key, id } = await agentWithThreeEvents();
    const live = await SELF.fetch(`https://gateway.test/v1/agents/${id}/events?lastEventId=`, { headers: { authorization: `Bearer ${key}` } });
    expect(live.status).toBe(200);
    const first = eventIds(live, 3);
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after' } });
    expect(await first).toEqual([4, 5, 6]);
    const resumed = await SELF.fetch(`https://gateway.test/v1/agents/${id}/events?lastEventId=4`, { headers: { authorization: `Bearer ${key}`, 'last-event-id': '' } });
    expect(resumed.status).toBe(200);
    expect(await eventIds(resumed, 2)).toEqual([5, 6]);
  });

  it('opens the WebSocket live for ?lastEventId= (empty)', async () => {
    const { key, id } = await agentWithThreeEvents();
    const res = await SELF.fetch(`https://gateway.test/v1/agents/${id}/events/ws?lastEventId=`, { headers: { authorization: `Bearer ${key}`, upgrade: 'websocket' } });
    expect(res.status).toBe(101);
    const socket = res.webSocket as WebSocket;
    const messages: { seq?: number }[] = [];
    socket.addEventListener('message', (m) => messages.push(JSON.parse(m.data as string) as { seq?: number }));
    socket.accept();
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after' } });
    await eventually(async () => messages.length >= 3);
    expect(messages.map((m) => m.seq)).toEqual([4, 5, 6]);
    socket.close();
  });

  it('still refuses a last event id that is not a number', async () => {
    const { key, id } = await agentWithThreeEvents();
    const header = await api(`/v1/agents/${id}/events`, { key, headers: { 'last-event-id': 'abc' } });
    expect(header.status).toBe(400);
    expect(header.body.error).toMatchObject({ code: 'invalid_request', details: [expect.objectContaining({ path: ['last-event-id'] })] });
    expect((await api(`/v1/agents/${id}/events/ws?lastEventId=x`, { key, headers: { upgrade: 'websocket' } })).status).toBe(400);
  });
});
