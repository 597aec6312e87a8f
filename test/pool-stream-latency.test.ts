import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, BASE, chatTarget, newTenant } from './support/api';

/** A chat whose faults ride in its last message (the mock reads a `mock:{…}` suffix). */
const message = (text: string, mock: Record<string, unknown>) => [{ role: 'user', content: `${text}\nmock:${JSON.stringify(mock)}` }];

describe('the latency strategy', () => {
  it("measures a stream by its first chunk, not by how long the answer took to stream", async () => {
    const { key } = await newTenant();
    const tag = `lat${Date.now()}`;
    const put = await api('/v1/pools/chat', { method: 'PUT', key, body: { strategy: 'latency', targets: [chatTarget(`${tag}-a`), chatTarget(`${tag}-b`)] } });
    expect(put.status).toBe(201);

    // A long answer, streamed: its first chunk comes after 30 ms, the whole of it after some 3 s.
    const stream = await SELF.fetch(`${BASE}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', stream: true, messages: message('one two three four five six seven eight nine ten eleven', { delayMs: 30, chunkDelayMs: 250 }) }),
    });
    const streamed = stream.headers.get('x-gateway-upstream');
    expect(await stream.text()).toContain('[DONE]');

    // The other target, never measured, is tried next; it takes 300 ms to answer.
    const slow = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: message('slow', { delayMs: 300 }) } });
    expect(slow.status).toBe(200);
    expect(slow.headers.get('x-gateway-upstream')).not.toBe(streamed);

    // The target that streamed answers its first byte ten times sooner: it is the faster one.
    const next = await api('/v1/chat/completions', { key, body: { model: 'chat', messages: [{ role: 'user', content: 'which one?' }] } });
    expect(next.headers.get('x-gateway-upstream')).toBe(streamed);
  });
});
