import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { bodyAllowed } from '../lib/body-encoding';
import { readUpTo } from '../lib/bytes';

/** How much of an oversized chunked body is read through before the 413. */
const DRAIN_BYTES = 8 * 1024 * 1024;

/**
 * Refuses a request body over `maxSize` bytes with 413 `payload_too_large`, by its
 * Content-Length when it has one, else by counting a chunked body as it arrives. Hono's
 * `bodyLimit` counts the same way but leaves the rest of an oversized chunked body unread and
 * its reader held: the runtime then loses the connection, and under `wrangler dev` the next
 * request on it fails with a 503. Cancelling the body tells the runtime to discard the rest.
 *
 * @example app.use('*', bodyLimit(1024 * 1024))
 */
export function bodyLimit(maxSize: number): MiddlewareHandler<AppEnv> {
  const refuse = () => new ApiError('payload_too_large', `request body exceeds ${maxSize} bytes`);
  return async function bodyLimit(c, next) {
    const body = c.req.raw.body;
    if (!body) return next();
    const length = c.req.raw.headers.get('content-length');
    if (length !== null && !c.req.raw.headers.has('transfer-encoding')) {
      if (Number(length) > maxSize) throw refuse();
      return next();
    }
    // No route reads a GET's or HEAD's body, and such a request cannot be rebuilt with one (the
    // Request constructor throws): a chunked body sent with one is left unread.
    if (!bodyAllowed(c.req.method)) return next();
    const reader = body.getReader();
    const whole = await readUpTo(reader, maxSize);
    if (!whole) {
      // Drained (up to a bound), so the connection stays usable for the client's next request.
      for (let drained = 0; drained < DRAIN_BYTES; ) {
        const rest = await reader.read().catch(() => ({ done: true as const, value: undefined }));
        if (rest.done) break;
        drained += rest.value.byteLength;
      }
      await reader.cancel().catch(() => undefined);
      throw refuse();
    }
    c.req.raw = new Request(c.req.raw, { body: whole });
    return next();
  };
}
