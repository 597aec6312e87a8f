import { env, runInDurableObject, SELF } from 'cloudflare:test';
import { expect } from 'vitest';
import { STREAM_RETRY_AFTER_S } from '../../durable/stream-slots';
import { BASE } from './api';
import { frameReader, type Frame } from './sse';

/** What the stream caps' tests share: the key's leases, reading streams, and the 429 that refuses one more. */

const limiterOf = (keyId: string) => env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(`key:${keyId}`));

/** The key's stream leases as its limiter holds them (durable/key-stream-leases.ts). */
export const leasesOf = (keyId: string) =>
  runInDurableObject(limiterOf(keyId), (_i, state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM stream_leases').one().n);

/** Has every stream lease of the key due its check, as 15 s later: those of streams that ended go at the next. */
export const leasesDue = (keyId: string) => runInDurableObject(limiterOf(keyId), (_i, state) => void state.storage.sql.exec('UPDATE stream_leases SET expires_at = 0'));

export const openSse = (key: string, id: string, method = 'GET') => SELF.fetch(`${BASE}/v1/agents/${id}/events`, { method, headers: { authorization: `Bearer ${key}` } });

/** An open SSE stream of the agent's events whose client reads on in the background until it ends (`ended`) or is cancelled. */
export async function readingStream(key: string, id: string, timeoutMs = 60_000) {
  const res = await openSse(key, id);
  expect(res.status).toBe(200);
  const reader = frameReader(res);
  // Rejected when the test cancels it, while a read is still pending.
  const ended = reader.until(() => false, timeoutMs).catch(() => ({ frames: [] as Frame[], ended: true, cancelled: true }));
  return { ended, cancel: reader.cancel };
}

/** Opens `count` reading SSE streams on the agent, one after another. */
export async function fill(key: string, id: string, count: number, timeoutMs?: number) {
  const streams: Awaited<ReturnType<typeof readingStream>>[] = [];
  for (let i = 0; i < count; i++) streams.push(await readingStream(key, id, timeoutMs));
  return streams;
}

/** The refusal of one more stream: 429 too_many_streams in the error envelope, with Retry-After and `details` naming `limit`. */
export async function expectStreamRefused(res: Response, limit: 'streams.perAgent' | 'streams.perKey', max: number, open = max) {
  expect(res.status).toBe(429);
  expect(res.headers.get('retry-after')).toBe(String(STREAM_RETRY_AFTER_S));
  const body = (await res.json()) as { error: { code: string; type: string; details: unknown } };
  expect(body.error.code).toBe('too_many_streams');
  expect(body.error.type).toBe('rate_limit_error');
  expect(body.error.details).toEqual({ limit, max, open, retryAfter: STREAM_RETRY_AFTER_S });
}
