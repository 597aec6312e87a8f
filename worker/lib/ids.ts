import { monotonicFactory } from 'ulidx';

const ulid = monotonicFactory();

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
