import type { Context, MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { bodyAllowed, unreadableBody } from '../lib/body-encoding';

const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * Reads a request body once, as bytes, and decodes it as strict UTF-8 before anything else
 * reads it. Every route decodes bodies as UTF-8, and a lenient decode turns bytes that are not
 * UTF-8 (latin1 sent without a charset) into U+FFFD, which would be stored as if the client
 * had sent it. The verdict is only noted here, so that auth and limits answer first as for every
 * other body; the routes refuse it with the charset and coding problems
 * (`unreadableRequestBody`). Bodies whose headers already make them unreadable (another
 * charset, a content coding) are left alone: their own refusal names the problem.
 *
 * @example app.use(utf8Body((c) => isIncomingHook(c)))
 */
export function utf8Body(exempt: (c: Context<AppEnv>) => boolean = () => false): MiddlewareHandler<AppEnv> {
  return async function utf8Body(c, next) {
    // A GET's body is read by no route and is left as it came (the assets binding is handed the request).
    if (c.req.raw.body === null || !bodyAllowed(c.req.method) || unreadableBody(c.req.raw.headers) !== null || exempt(c)) return next();
    // Hono caches the bytes for a later read of them, and the text decoded here for every read
    // as text or JSON: without it, each such read would build a Response from the bytes and
    // decode them a second time.
    const bytes = await c.req.arrayBuffer();
    try {
      const text = strict.decode(bytes);
      (c.req.bodyCache as { text?: Promise<string> }).text = Promise.resolve(text);
    } catch {
      c.set('bodyNotUtf8', true);
    }
    await next();
  };
}

/**
 * Why the request body cannot be read as the UTF-8 JSON the routes parse, or null: its headers
 * (another charset, a content coding), else its bytes.
 */
export function unreadableRequestBody(c: Context<AppEnv>): string | null {
  if (c.req.raw.body === null) return null;
  const fromHeaders = unreadableBody(c.req.raw.headers);
  if (fromHeaders !== null) return fromHeaders;
  return c.get('bodyNotUtf8') ? 'the body is not valid UTF-8: send it as UTF-8 (RFC 8259 §8.1)' : null;
}
