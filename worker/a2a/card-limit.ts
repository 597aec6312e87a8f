import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { parseIp } from '../upstream/ip-ranges';

/**
 * The window of PUBLIC_CARD_LIMIT (`simple.period` of its `[[ratelimits]]` entries in
 * wrangler.toml, 10 or 60): the binding answers only yes or no, so a refusal's Retry-After is
 * the whole window, the longest the caller may have to wait.
 */
export const PUBLIC_CARD_PERIOD_S = 60;

/**
 * The bucket of requests without a client address: not through Cloudflare's edge (the tests'
 * direct calls). `wrangler dev` sets the header to the local client's address.
 */
export const LOCAL_BUCKET = 'local';

/**
 * The bucket a client's card requests count in: its IPv4 address, or its IPv6 /64, since one
 * subscriber (or one cloud machine) is given a whole /64 and could walk it address by address.
 */
export function clientBucket(address: string | undefined): string {
  const ip = address === undefined ? null : parseIp(address.trim());
  if (!ip) return LOCAL_BUCKET;
  if (ip.v === 4) return [24, 16, 8, 0].map((shift) => (ip.n >>> shift) & 0xff).join('.');
  return `${(ip.n >> 64n).toString(16)}::/64`;
}

/**
 * Counts an agent card asked for without a key against its client's bucket (Cloudflare's
 * rate limiting binding, per location), or throws 429 `rate_limited`. It runs before the card is
 * looked up, so a flood costs no D1 query or Durable Object call, whether the card exists,
 * is public, or would be answered 304.
 */
export async function limitAnonymousCard(c: Context<AppEnv>): Promise<void> {
  const { success } = await c.env.PUBLIC_CARD_LIMIT.limit({ key: clientBucket(c.req.header('cf-connecting-ip')) });
  if (success) return;
  throw new ApiError(
    'rate_limited',
    `too many agent card requests without a key from this address; retry in ${PUBLIC_CARD_PERIOD_S} s, or ask with an API key`,
    { limit: 'perAddress', retryAfter: PUBLIC_CARD_PERIOD_S },
    { 'retry-after': String(PUBLIC_CARD_PERIOD_S) },
  );
}
