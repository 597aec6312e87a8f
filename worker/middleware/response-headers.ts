import type { Context, MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';

/**
 * Sets a header on the response the request ended with, however it was built. Hono adds the
 * headers it prepared (`c.header`) only to responses made with `c.json`, `c.body` and the like;
 * a handler's own `new Response` (a stream, a proxied completion) misses them, and a response
 * from a fetch or a Durable Object (a WebSocket's 101) has immutable headers, so it is copied:
 * the copy keeps the body stream and the WebSocket as they are.
 */
export function setResponseHeader(c: Context<AppEnv>, name: string, value: string): void {
  const response = c.res;
  if (response.headers.get(name) === value) return;
  try {
    response.headers.set(name, value);
  } catch {
    const copy = new Response(response.body, response);
    copy.headers.set(name, value);
    c.res = copy;
  }
}

/** What an incoming request id may be (as Hono's `requestId` allows): else one is made. */
const VALID_ID = /^[\w\-=]+$/;

/**
 * Names the request: the caller's `x-request-id` when it is a valid one, else a new UUID, as
 * `c.get('requestId')`, and puts it on every response the Worker answers, including the ones a
 * handler built itself (Hono's `requestId` reaches only the responses Hono builds). One
 * middleware for both: each layer costs every request a closure and a promise.
 *
 * @example app.use(requestIds({ headerName: 'x-request-id', limitLength: 128 }))
 */
export function requestIds(options: { headerName: string; limitLength: number }): MiddlewareHandler<AppEnv> {
  const { headerName, limitLength } = options;
  return async function requestIds(c, next) {
    const given = c.req.header(headerName);
    const id = given !== undefined && given.length <= limitLength && VALID_ID.test(given) ? given : crypto.randomUUID();
    c.set('requestId', id);
    await next();
    setResponseHeader(c, headerName, id);
  };
}
