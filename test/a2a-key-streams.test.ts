import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { DEFAULT_STREAMS_PER_AGENT, DEFAULT_STREAMS_PER_KEY, STREAM_RETRY_AFTER_S } from '../durable/stream-slots';
import { BASE, mockUrl, newAgent, newTenant, uniqueId } from './support/api';
import { frameReader, type Frame } from './support/sse';

const PER_AGENT = DEFAULT_STREAMS_PER_AGENT;
const PER_KEY = DEFAULT_STREAMS_PER_KEY;
/** A turn that holds its stream open (the mock answers after a minute). */
const SLOW = { kind: 'agent-http', url: mockUrl('/agent?delayMs=60000') };

const limiterOf = (keyId: string) => env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(`key:${keyId}`));
const leasesOf = (keyId: string) =>
  runInDurableObject(limiterOf(keyId), (_i, state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM stream_leases').one().n);
/** Has every lease of the key due its check, as 15 s later. */
const leasesDue = (keyId: string) => runInDurableObject(limiterOf(keyId), (_i, state) => void state.storage.sql.exec('UPDATE stream_leases SET expires_at = 0'));

const sendStreaming = (key: string, id: string) => SELF.fetch(`${BASE}/a2a/${id}/`, {
  method: 'POST',
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 'st', method: 'SendStreamingMessage', params: { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hold on' }] } } }),
});

/** An open stream (events or A2A) whose client reads on in the background. */
function reading(res: Response) {
  expect(res.status).toBe(200);
  const reader = frameReader(res);
  void reader.until(() => false, 120_000).catch(() => ({ frames: [] as Frame[] }));
  return reader;
}

async function eventStreams(key: string, id: string, count: number) {
  for (let i = 0; i < count; i++) reading(await SELF.fetch(`${BASE}/v1/agents/${id}/events`, { headers: { authorization: `Bearer ${key}` } }));
}

async function expectRefused(res: Response, limit: string, max: number) {
  expect(res.status).toBe(429);
  expect(res.headers.get('retry-after')).toBe(String(STREAM_RETRY_AFTER_S));
  const body = (await res.json()) as { error: { code: string; details: unknown } };
  expect(body.error.code).toBe('too_many_streams');
  expect(body.error.details).toEqual({ limit, max, open: max, retryAfter: STREAM_RETRY_AFTER_S });
}

describe("A2A streams count toward the key's cap across agents", () => {
  it('take a lease, give it back when their agent refuses them, keep it through a check while open, and are refused streams.perKey once the key is full', async () => {
    const { key, keyId } = await newTenant();
    const [a, b, c] = [await newAgent(key, { upstream: SLOW, concurrency: 4 }), await newAgent(key, { upstream: SLOW, concurrency: 4 }), await newAgent(key, { upstream: SLOW, concurrency: 4 })];
    await eventStreams(key, a, PER_AGENT);
    // The agent's own cap refuses it after the key's lease was taken: given back at once.
    await expectRefused(await sendStreaming(key, a), 'streams.perAgent', PER_AGENT);
    expect(await leasesOf(keyId)).toBe(PER_AGENT);
    await eventStreams(key, b, PER_KEY - PER_AGENT - 1);
    reading(await sendStreaming(key, b));
    expect(await leasesOf(keyId)).toBe(PER_KEY);
    await expectRefused(await sendStreaming(key, c), 'streams.perKey', PER_KEY);
    // Checked against the agents' counts, the open A2A stream keeps its lease.
    await leasesDue(keyId);
    await expectRefused(await sendStreaming(key, c), 'streams.perKey', PER_KEY);
    expect(await leasesOf(keyId)).toBe(PER_KEY);
  });
});
