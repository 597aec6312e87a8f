import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { mcpRequestProblem } from './mcp-guard';

/** Request headers an MCP client in a browser sends (Streamable HTTP, 2026-07-28 too) besides the CORS-safelisted ones, and the API's own two. */
export const MCP_CORS_ALLOW_HEADERS = ['authorization', 'content-type', 'mcp-protocol-version', 'mcp-session-id', 'mcp-method', 'mcp-name', 'last-event-id', 'x-d1-bookmark', 'x-request-id'];
/** Response headers of /mcp a browser page may read: its session, auth challenge, limits, request id and D1 bookmark. */
export const MCP_CORS_EXPOSE_HEADERS = ['Mcp-Session-Id', 'WWW-Authenticate', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'X-Request-Id', 'X-D1-Bookmark'];
/** How long a browser may cache a preflight (seconds): the allow-list changes only with a deploy. */
export const MCP_CORS_MAX_AGE = 600;

// The origin is already checked against the guard's allow-list when this runs, so it echoes it.
const allowListed = cors({
  origin: (origin) => origin,
  allowMethods: ['POST'],
  allowHeaders: MCP_CORS_ALLOW_HEADERS,
  exposeHeaders: MCP_CORS_EXPOSE_HEADERS,
  maxAge: MCP_CORS_MAX_AGE,
});

/**
 * CORS for the MCP endpoint, so that a browser page on an origin listed in
 * `MCP_ALLOWED_ORIGINS` can call it: a preflight (OPTIONS with `Access-Control-Request-Method`)
 * is answered 204, and every answer to such a page (errors too: they are set by the app's error
 * handler below this) carries `Access-Control-Allow-Origin`, so the page can read the envelope.
 * Same-origin requests and requests without `Origin` need none and get none. A preflight from
 * an origin (or to a Host) the guard refuses is refused as the guard refuses the request itself,
 * 403 `forbidden`; other OPTIONS requests keep the app's 405. No credentials mode: MCP clients
 * send a Bearer key, never cookies. Runs before the 405 check, which would answer OPTIONS.
 *
 * @example app.use('/mcp', mcpCors())
 */
export function mcpCors(): MiddlewareHandler<AppEnv> {
  return async function mcpCors(c, next) {
    const origin = c.req.header('origin');
    if (origin === undefined || origin.trim().toLowerCase() === new URL(c.req.url).origin.toLowerCase()) return next();
    const preflight = c.req.method === 'OPTIONS' && c.req.header('access-control-request-method') !== undefined;
    const problem = mcpRequestProblem(c.env, c.req.raw);
    if (problem) {
      if (preflight) throw new ApiError('forbidden', problem);
      return next();
    }
    if (c.req.method === 'OPTIONS' && !preflight) return next();
    return allowListed(c, next);
  };
}
