import { mediaType } from './media-type';

/** Whether a Request with this method may carry a body (the Request constructor refuses one for GET and HEAD). */
export const bodyAllowed = (method: string): boolean => method !== 'GET' && method !== 'HEAD';

/**
 * Charsets a body may declare: every route decodes bodies as UTF-8, and US-ASCII is a subset of
 * it. Each by its labels (IANA's aliases, and the WHATWG Encoding Standard's for UTF-8): senders
 * write "utf8" as often as "utf-8", and such a body, refused, was retried until it was lost.
 */
const READABLE_CHARSETS: ReadonlySet<string> = new Set([
  'utf-8', 'utf8', 'csutf8', 'unicode-1-1-utf-8', 'unicode11utf8', 'unicode20utf8', 'x-unicode20utf8',
  'us-ascii', 'ascii', 'csascii', 'iso646-us', 'ansi_x3.4-1968',
]);

/** The `charset` parameter of a Content-Type, unquoted and lower-cased; undefined without one. */
export function charsetOf(contentType: string | null | undefined): string | undefined {
  for (const param of (contentType ?? '').split(';').slice(1)) {
    const at = param.indexOf('=');
    if (at < 0 || param.slice(0, at).trim().toLowerCase() !== 'charset') continue;
    const value = param.slice(at + 1).trim();
    return (value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value).toLowerCase();
  }
  return undefined;
}

/**
 * Why a request body cannot be read as the UTF-8 JSON the routes parse, from its headers alone
 * (null when it can): a Content-Encoding other than identity, since the runtime hands the Worker
 * the coded bytes (workerd decodes no request body), or a charset other than UTF-8 (or
 * US-ASCII), which would be decoded as UTF-8 all the same (RFC 8259 §8.1: JSON exchanged between
 * systems is UTF-8). Only the headers are read, so the body is left for the route.
 *
 * @example unreadableBody(new Headers({ 'content-encoding': 'gzip' })) // 'Content-Encoding "gzip" is not supported: …'
 */
export function unreadableBody(headers: Headers): string | null {
  const codings = (headers.get('content-encoding') ?? '').split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '' && c !== 'identity');
  if (codings.length > 0) return `Content-Encoding ${JSON.stringify(codings.join(', '))} is not supported: send the body uncompressed (identity)`;
  const contentType = headers.get('content-type');
  const charset = charsetOf(contentType);
  if (charset !== undefined && !READABLE_CHARSETS.has(charset)) {
    return `charset ${JSON.stringify(charset)} is not supported: send ${mediaType(contentType ?? undefined) ?? 'the body'} as UTF-8`;
  }
  return null;
}
