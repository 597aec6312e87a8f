import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant, type ApiResponse } from './support/api';

/**
 * Agent cards asked for without a key count per client address (Cloudflare's rate limiting
 * binding PUBLIC_CARD_LIMIT, wrangler.toml: 120 a minute); a card asked for with a key counts
 * against the key's rate windows instead (test/limits-refusals.test.ts).
 */

const LIMIT = 120;

const card = (agent: string, address: string, init: { key?: string; headers?: Record<string, string> } = {}): Promise<ApiResponse> =>
  api(`/a2a/${agent}/.well-known/agent-card.json`, { ...(init.key ? { key: init.key } : {}), headers: { 'cf-connecting-ip': address, ...init.headers } });

/**
 * Local workerd counts in fixed minutes of the clock: a burst that straddled one would start
 * over halfway. Starting it at least 20 s before the next minute keeps it, and the checks that
 * follow it, in one (on a busy machine too).
 */
async function withinOneWindow(): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < 20_000) await new Promise((resolve) => setTimeout(resolve, left + 250));
}

/**
 * Asks for the card `count` times from `address`, all in one window; the statuses. Twenty at a
 * time: one by one, a loaded machine took 55 s over 120 and the window turned under the burst.
 */
async function burst(agent: string, address: string, count: number): Promise<number[]> {
  await withinOneWindow();
  const statuses: number[] = [];
  for (let sent = 0; sent < count; sent += 20) {
    const batch = Array.from({ length: Math.min(20, count - sent) }, () => card(agent, address));
    statuses.push(...(await Promise.all(batch)).map((r) => r.status));
  }
  return statuses;
}

async function publicAgent(): Promise<{ key: string; agent: string }> {
  const { key } = await newTenant();
  return { key, agent: await newAgent(key, { a2a: { publicCard: true } }) };
}

describe('agent cards asked for without a key are limited per client address', { timeout: 60_000 }, () => {
  it(`serves ${LIMIT} a minute to one address, then answers 429 rate_limited with Retry-After: 60 in the error envelope, before looking the card up`, async () => {
    const { key, agent } = await publicAgent();
    const hidden = await newAgent(key);
    const etag = (await card(agent, '198.51.100.1', { key })).headers.get('etag') ?? '';
    expect(await burst(agent, '192.0.2.1', LIMIT)).toEqual(Array(LIMIT).fill(200));

    const over = await card(agent, '192.0.2.1');
    expect(over.status).toBe(429);
    expect(over.headers.get('retry-after')).toBe('60');
    expect(over.headers.get('content-type')).toMatch(/^application\/json/);
    expect(over.body.error).toMatchObject({ code: 'rate_limited', details: { limit: 'perAddress', retryAfter: 60 }, requestId: expect.any(String) });
    // Counted before the lookup: a matching ETag, a private card or no such agent is refused alike.
    expect((await card(agent, '192.0.2.1', { headers: { 'if-none-match': etag } })).status).toBe(429);
    expect((await card(hidden, '192.0.2.1')).status).toBe(429);
    expect((await card('no-such-agent', '192.0.2.1')).status).toBe(429);
  });

  it('neither counts nor refuses a card asked for with a key', async () => {
    const { key, agent } = await publicAgent();
    for (let i = 0; i < 5; i++) expect((await card(agent, '192.0.2.2', { key })).status).toBe(200);
    expect(await burst(agent, '192.0.2.2', LIMIT)).toEqual(Array(LIMIT).fill(200));
    expect((await card(agent, '192.0.2.2')).status).toBe(429);

    const keyed = await card(agent, '192.0.2.2', { key });
    expect(keyed.status).toBe(200);
    expect(keyed.headers.get('cache-control')).toBe('public, max-age=300');
  });

  it('keeps a bucket per address, and one per IPv6 /64', async () => {
    const { agent } = await publicAgent();
    expect(await burst(agent, '192.0.2.3', LIMIT)).toEqual(Array(LIMIT).fill(200));
    expect((await card(agent, '192.0.2.3')).status).toBe(429);
    expect((await card(agent, '192.0.2.4')).status).toBe(200);

    expect(await burst(agent, '2001:db8:1:2::1', LIMIT)).toEqual(Array(LIMIT).fill(200));
    expect((await card(agent, '2001:db8:1:2:ffff:ffff:ffff:ffff')).status).toBe(429);
    expect((await card(agent, '2001:db8:1:3::1')).status).toBe(200);
  });

  it('is documented on the card route in the OpenAPI document', async () => {
    const doc = await api('/openapi.json');
    const refused = doc.body.paths['/a2a/{id}/.well-known/agent-card.json'].get.responses['429'];
    expect(refused.description).toMatch(/without one, the limit per client address \(default 120 a minute/);
    expect(refused.headers['Retry-After']).toBeDefined();
  });
});
