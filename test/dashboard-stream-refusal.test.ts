import { SELF } from 'cloudflare:test';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_STREAMS_PER_AGENT } from '../durable/stream-slots';
import { BASE, newAgent, newTenant } from './support/api';
import { frameReader } from './support/sse';

// The dashboard's stream module (public/dashboard/stream.js) against the real gateway: the
// browser globals it reads on load are given it here, and its fetch reaches the Worker.
type Pause = { status: number; seconds: number; code?: string };
type Dashboard = {
  follow(path: string, signal: AbortSignal, handlers: Record<string, (...args: never[]) => unknown>): Promise<void>;
  downText(offline: boolean, pause: Pause | null): string;
};

const g = globalThis as Record<string, unknown>;
const given = { window: g.window, sessionStorage: g.sessionStorage, fetch: g.fetch };
let dashboard: Dashboard;

beforeAll(async () => {
  g.window ??= globalThis;
  const stored = new Map<string, string>();
  g.sessionStorage ??= { getItem: (k: string) => stored.get(k) ?? null, setItem: (k: string, v: string) => stored.set(k, v), removeItem: (k: string) => stored.delete(k) };
  g.fetch = (input: string, init: RequestInit) => SELF.fetch(new URL(input, BASE), { headers: init.headers, signal: init.signal });
  dashboard = (await import('../public/dashboard/stream.js' as string)) as Dashboard;
});
afterAll(() => {
  for (const [name, value] of Object.entries(given)) {
    if (value === undefined) delete g[name];
    else g[name] = value;
  }
});

describe("the dashboard's event stream, refused past the agent's cap", () => {
  it('pauses for the Retry-After and says the agent holds too many streams, not that the key is rate limited', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const open = [];
    for (let i = 0; i < DEFAULT_STREAMS_PER_AGENT; i++) {
      const res = await SELF.fetch(`${BASE}/v1/agents/${id}/events`, { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      open.push(frameReader(res));
    }
    const { rememberKey } = (await import('../public/dashboard/state.js' as string)) as { rememberKey(key: string): void };
    rememberKey(key);
    const stop = new AbortController();
    const downs: { offline: boolean; pause: Pause | null }[] = [];
    await dashboard.follow(`/v1/agents/${id}/events`, stop.signal, {
      onLive: () => stop.abort(),
      onEvent: () => undefined,
      onDown: (offline: boolean, pause: Pause | null) => {
        downs.push({ offline, pause });
        // Once the pause has begun, so it ends at once.
        setTimeout(() => stop.abort(), 0);
      },
      onUnauthorized: () => stop.abort(),
      onGone: () => stop.abort(),
    });
    expect(downs).toHaveLength(1);
    expect(downs[0]?.pause).toEqual({ status: 429, seconds: 15, code: 'too_many_streams' });
    expect(dashboard.downText(false, downs[0]?.pause ?? null)).toBe('too many streams open on this agent (429): paused 15 s, then reconnecting…');
    // The key's own limits and an unavailable gateway read as before.
    expect(dashboard.downText(false, { status: 429, seconds: 30, code: 'rate_limited' })).toBe('rate limited (429): paused 30 s, then reconnecting…');
    expect(dashboard.downText(false, { status: 503, seconds: 60 })).toBe('unavailable (503): paused 60 s, then reconnecting…');
    expect(dashboard.downText(true, null)).toBe('offline, reconnecting…');
    expect(dashboard.downText(false, null)).toBe('reconnecting…');
    for (const r of open) await r.cancel();
  });
});
