import { SELF } from 'cloudflare:test';
import { SendMessageRequest } from '@a2a-js/sdk';
import { describe, expect, it } from 'vitest';
import { A2A_STREAMS } from '../durable/a2a-stream';
import { DEFAULT_STREAMS_PER_AGENT } from '../durable/stream-slots';
import { api, BASE, eventually, mockUrl, newAgent, newTenant, uniqueId } from './support/api';
import { a2aClient } from './support/a2a';
import { limitedKey } from './support/limits';
import { expectStreamRefused, fill, leasesDue } from './support/streams';

const CAP = DEFAULT_STREAMS_PER_AGENT;
/** A turn that holds its stream open until it is cancelled (the mock answers after a minute). */
const SLOW = { kind: 'agent-http', url: mockUrl('/agent?delayMs=60000') };
const CONFORMANCE = { kind: 'builtin', mode: 'a2a-conformance' };

const message = (messageId = `m-${uniqueId()}`) => ({ message: { messageId, role: 'ROLE_USER', parts: [{ text: 'hold on' }] } });
const post = (key: string, id: string, method: string, params: unknown) => SELF.fetch(`${BASE}/a2a/${id}/`, {
  method: 'POST',
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 'st', method, params }),
});
const rpc = (key: string, id: string, method: string, params: unknown) => api(`/a2a/${id}/`, { key, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 1, method, params } });

/** An open A2A stream whose client reads it to its end in the background; `first` is its first event's data. */
async function a2aStream(key: string, id: string, method: string, params: unknown) {
  const res = await post(key, id, method, params);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!text.includes('\n\n')) {
    const chunk = await reader.read();
    if (chunk.done) break;
    text += decoder.decode(chunk.value, { stream: true });
  }
  const first = JSON.parse(text.split('\n').find((l) => l.startsWith('data:'))?.slice(5) ?? 'null') as { result: { task: { id: string } } };
  const ended = (async () => {
    while (!(await reader.read()).done) { /* reading on */ }
    return true;
  })().catch(() => true);
  return { first, ended, cancel: () => reader.cancel().catch(() => undefined) };
}

/** The refusal of one more stream, with `open` streams counted: 429 too_many_streams in the error envelope, as the events route answers it. */
const expectRefused = (res: Response, open = CAP) => expectStreamRefused(res, 'streams.perAgent', CAP, open);

/** One more stream fits again (a slot came back): a HEAD of the events, which answers as its GET would and takes no slot. */
async function expectRoom(key: string, id: string, timeoutMs = 8_000) {
  await eventually(async () => (await SELF.fetch(`${BASE}/v1/agents/${id}/events`, { method: 'HEAD', headers: { authorization: `Bearer ${key}` } })).status === 200, timeoutMs, 100);
}

describe("A2A streams take slots of the agent's stream cap", () => {
  it('refuses the 33rd stream across event streams, SendStreamingMessage and SubscribeToTask, whichever face asks', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: SLOW, concurrency: 4 });
    const events = await fill(key, id, CAP / 2, 120_000);
    const send = await a2aStream(key, id, 'SendStreamingMessage', message());
    const taskId = send.first.result.task.id;
    const subscribers = [];
    for (let i = 0; i < CAP / 2 - 1; i++) subscribers.push(await a2aStream(key, id, 'SubscribeToTask', { id: taskId }));
    // Full: one more is refused over every face, the A2A methods with the events route's answer.
    await expectRefused(await post(key, id, 'SendStreamingMessage', message()));
    await expectRefused(await post(key, id, 'SubscribeToTask', { id: taskId }));
    await expectRefused(await SELF.fetch(`${BASE}/v1/agents/${id}/events`, { headers: { authorization: `Bearer ${key}` } }));
    // Answers that are no stream take no slot and are not refused.
    expect((await rpc(key, id, 'GetTask', { id: taskId })).body.result.id).toBe(taskId);
    // The turn's end ends its streams, which give their slots back.
    expect((await rpc(key, id, 'CancelTask', { id: taskId })).body.result.status.state).toBe('TASK_STATE_CANCELED');
    for (const s of [send, ...subscribers]) expect(await s.ended).toBe(true);
    const again = await a2aStream(key, id, 'SendStreamingMessage', message());
    await rpc(key, id, 'CancelTask', { id: again.first.result.task.id });
    for (const s of events) await s.cancel();
  });

  it('gives the slot back when an A2A stream ends with its turn, and when its client closes it', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: CONFORMANCE });
    const events = await fill(key, id, CAP - 1, 120_000);
    // About a second's turn: its stream holds the last slot meanwhile.
    const send = await a2aStream(key, id, 'SendStreamingMessage', message(`tck-long-running-${uniqueId()}`));
    await expectRefused(await SELF.fetch(`${BASE}/v1/agents/${id}/events`, { headers: { authorization: `Bearer ${key}` } }));
    expect(await send.ended).toBe(true);
    await expectRoom(key, id);
    // A client that leaves a running turn's stream gives its slot back too, though the runtime
    // does not tell the object it went: the heartbeat finds its frames untaken. The turn goes on.
    const saved = { ...A2A_STREAMS };
    Object.assign(A2A_STREAMS, { heartbeatMs: 100, stallMs: 3_000 });
    try {
      await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: SLOW } });
      const left = await a2aStream(key, id, 'SendStreamingMessage', message());
      await expectRefused(await post(key, id, 'SendStreamingMessage', message()));
      // A client still reading is not taken for gone, however long its turn is quiet.
      await new Promise((r) => setTimeout(r, 4_000));
      await expectRefused(await post(key, id, 'SendStreamingMessage', message()));
      await left.cancel();
      await expectRoom(key, id, 30_000);
      expect((await rpc(key, id, 'GetTask', { id: left.first.result.task.id })).body.result.status.state).toBe('TASK_STATE_WORKING');
      await rpc(key, id, 'CancelTask', { id: left.first.result.task.id });
    } finally {
      Object.assign(A2A_STREAMS, saved);
    }
    for (const s of events) await s.cancel();
  }, 60_000);

  it('gives the slots back when the agent is deleted: one created again under its id has every slot', async () => {
    const { key, keyId } = await newTenant();
    const id = await newAgent(key, { upstream: SLOW });
    const events = await fill(key, id, CAP - 2, 120_000);
    const send = await a2aStream(key, id, 'SendStreamingMessage', message());
    const follower = await a2aStream(key, id, 'SubscribeToTask', { id: send.first.result.task.id });
    await expectRefused(await post(key, id, 'SubscribeToTask', { id: send.first.result.task.id }));
    expect((await api(`/v1/agents/${id}`, { method: 'DELETE', key })).status).toBe(204);
    for (const s of [send, follower]) expect(await s.ended).toBe(true);
    for (const s of events) expect((await s.ended).ended).toBe(true);
    await newAgent(key, { id, upstream: SLOW });
    // The key's leases on the deleted agent's streams go at their check, up to 15 s on: had now.
    await leasesDue(keyId);
    const again = await fill(key, id, CAP, 120_000);
    await expectRefused(await post(key, id, 'SendStreamingMessage', message()));
    for (const s of again) await s.cancel();
  });

  it('a refused SendStreamingMessage starts no task: no execution, nothing counted against the key', async () => {
    const { key, otherKey } = await limitedKey({ budget: { requests: 10, period: 'day' } });
    const id = await newAgent(otherKey);
    const events = await fill(otherKey, id, CAP, 120_000);
    for (const method of ['SendStreamingMessage', 'message/stream']) {
      const params = method === 'message/stream' ? { message: { kind: 'message', messageId: uniqueId(), role: 'user', parts: [{ kind: 'text', text: 'hi' }] } } : message();
      const res = await SELF.fetch(`${BASE}/a2a/${id}/`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(method === 'SendStreamingMessage' && { 'a2a-version': '1.0' }) },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
      });
      await expectRefused(res);
    }
    // The SDK's client throws it as a transport error carrying the envelope.
    const client = await a2aClient(key, id);
    const thrown = await (async () => {
      for await (const _ of client.sendMessageStream(SendMessageRequest.fromJSON(message()))) return null;
      return null;
    })().catch((error: unknown) => error);
    expect(thrown).toMatchObject({ name: 'JsonRpcTransportError', envelopeCode: 'too_many_streams', errorResponse: { error: { details: { limit: 'streams.perAgent' } } } });
    expect((await rpc(otherKey, id, 'ListTasks', { status: 'TASK_STATE_UNSPECIFIED' })).body.result.tasks).toEqual([]);
    expect((await api(`/v1/agents/${id}/executions`, { key: otherKey })).body.data).toEqual([]);
    // Given back: the key's budget counts no request.
    expect((await api('/v1/usage', { key })).body.budget.requests).toBe(0);
    for (const s of events) await s.cancel();
  });
});
