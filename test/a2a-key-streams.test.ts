import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { DEFAULT_STREAMS_PER_AGENT, DEFAULT_STREAMS_PER_KEY } from '../durable/stream-slots';
import { BASE, eventually, mockUrl, newAgent, newTenant, uniqueId } from './support/api';
import { frameReader } from './support/sse';
import { expectStreamRefused, fill, leasesDue, leasesOf } from './support/streams';

const PER_AGENT = DEFAULT_STREAMS_PER_AGENT;
const PER_KEY = DEFAULT_STREAMS_PER_KEY;
/** A turn that holds its stream open (the mock answers after a minute). */
const SLOW = { kind: 'agent-http', url: mockUrl('/agent?delayMs=60000') };

const sendStreaming = (key: string, id: string) => SELF.fetch(`${BASE}/a2a/${id}/`, {
  method: 'POST',
  headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
  body: JSON.stringify({ jsonrpc: '2.0', id: 'st', method: 'SendStreamingMessage', params: { message: { messageId: `m-${uniqueId()}`, role: 'ROLE_USER', parts: [{ text: 'hold on' }] } } }),
});

/** An open A2A stream whose client reads on in the background. */
function reading(res: Response) {
  expect(res.status).toBe(200);
  void frameReader(res).until(() => false, 120_000).catch(() => undefined);
}

describe("A2A streams count toward the key's cap across agents", () => {
  it('take a lease, give it back when their agent refuses them, keep it through a check while open, and are refused streams.perKey once the key is full', async () => {
    const { key, keyId } = await newTenant();
    const [a, b, c] = [await newAgent(key, { upstream: SLOW, concurrency: 4 }), await newAgent(key, { upstream: SLOW, concurrency: 4 }), await newAgent(key, { upstream: SLOW, concurrency: 4 })];
    await fill(key, a, PER_AGENT, 120_000);
    // The agent's own cap refuses it after the key's lease was taken: given back at once.
    await expectStreamRefused(await sendStreaming(key, a), 'streams.perAgent', PER_AGENT);
    // Given back after the answer (the request's waitUntil), so a read just after may precede it.
    expect(await eventually(async () => (await leasesOf(keyId)) === PER_AGENT && PER_AGENT)).toBe(PER_AGENT);
    await fill(key, b, PER_KEY - PER_AGENT - 1, 120_000);
    reading(await sendStreaming(key, b));
    expect(await leasesOf(keyId)).toBe(PER_KEY);
    await expectStreamRefused(await sendStreaming(key, c), 'streams.perKey', PER_KEY);
    // Checked against the agents' counts, the open A2A stream keeps its lease.
    await leasesDue(keyId);
    await expectStreamRefused(await sendStreaming(key, c), 'streams.perKey', PER_KEY);
    expect(await leasesOf(keyId)).toBe(PER_KEY);
  });
});
