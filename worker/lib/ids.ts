import { monotonicFactory } from 'ulidx';

/**
 * ulidx draws one random number per character, and its default source calls
 * crypto.getRandomValues once per draw: 16 calls per id were 10 % of a sync execution's CPU.
 * Draws come from a buffer refilled 256 bytes at a time instead (filled lazily: the Workers
 * global scope may not generate randomness). byte / 256 is uniform over 32 characters.
 */
const pool = new Uint8Array(256);
let drawn = pool.length;
function pooledRandom(): number {
  if (drawn === pool.length) {
    crypto.getRandomValues(pool);
    drawn = 0;
  }
  return pool[drawn++]! / 256;
}

const ulid = monotonicFactory(pooledRandom);

/** Time-ordered ids: lexical order is creation order, which list cursors rely on. */
export const newId = (prefix: string): string => `${prefix}_${ulid().toLowerCase()}`;

/** Random URL-safe secret of `bytes` bytes of entropy. */
export function randomToken(bytes: number): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  return base64url(raw);
}

export function base64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}
