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

/**
 * Puts the request id (from Hono's `requestId`, registered before it) on every response the
 * Worker answers, including the ones a handler built itself. Registered right after
 * `requestId`, so it sees the final response, errors included.
 *
 * @example app.use(requestId({ headerName: 'x-request-id' })); app.use(responseRequestId('x-request-id'))
 */
export function responseRequestId(headerName: string): MiddlewareHandler<AppEnv> {
  return async function responseRequestId(c, next) {
    await next();
    setResponseHeader(c, headerName, c.get('requestId'));
  };
}
