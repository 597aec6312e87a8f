import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { checkHeaderSizes, type HeaderLimitsOptions } from './header-limits';
import { mcpRequestProblem } from './mcp-guard';

/** Request headers an MCP client in a browser sends (Streamable HTTP, 2026-07-28 too) besides the CORS-safelisted ones, and the API's own two. */
export const MCP_CORS_ALLOW_HEADERS = ['authorization', 'content-type', 'mcp-protocol-version', 'mcp-session-id', 'mcp-method', 'mcp-name', 'last-event-id', 'x-d1-bookmark', 'x-request-id'];
/** Response headers of /mcp a browser page may read: its session, auth challenge, limits, request id and D1 bookmark. */
export const MCP_CORS_EXPOSE_HEADERS = ['Mcp-Session-Id', 'WWW-Authenticate', 'Retry-After', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'X-Request-Id', 'X-D1-Bookmark'];
/** How long a browser may cache a preflight (seconds): the allow-list changes only with a deploy. */
export const MCP_CORS_MAX_AGE = 600;

/**
 * `Mcp-Param-{Name}` (2026-07-28, SEP-2243): a client mirrors a tool argument its schema marks
 * `x-mcp-header` into such a header, so the names are open-ended and cannot be listed ahead. The
 * name after the prefix is an RFC 9110 token, as the SDK requires of the declaration.
 */
const MCP_PARAM_HEADER = /^mcp-param-[!#$%&'*+.^_`|~0-9a-z-]+$/;

/** The `Mcp-Param-*` names a preflight asks for (lower-cased), to be allowed with the fixed list. */
function requestedParamHeaders(requested: string | undefined): string[] {
  if (requested === undefined) return [];
  const names = requested.split(',').map((name) => name.trim().toLowerCase());
  return [...new Set(names.filter((name) => MCP_PARAM_HEADER.test(name)))];
}

// The origin is already checked against the guard's allow-list when this runs, so it echoes it.
const allowing = (allowHeaders: string[]) =>
  cors({ origin: (origin) => origin, allowMethods: ['POST'], allowHeaders, exposeHeaders: MCP_CORS_EXPOSE_HEADERS, maxAge: MCP_CORS_MAX_AGE });
const allowListed = allowing(MCP_CORS_ALLOW_HEADERS);

/**
 * CORS for the MCP endpoint, so that a browser page on an origin listed in
 * `MCP_ALLOWED_ORIGINS` can call it: a preflight (OPTIONS with `Access-Control-Request-Method`)
 * is answered 204, and every answer to such a page (errors too: they are set by the app's error
 * handler below this) carries `Access-Control-Allow-Origin`, so the page can read the envelope.
 * Same-origin requests and requests without `Origin` need none and get none. A preflight from
 * an origin (or to a Host) the guard refuses is refused as the guard refuses the request itself,
 * 403 `forbidden`; other OPTIONS requests keep the app's 405. The preflight allows the fixed
 * headers below plus the `Mcp-Param-*` names it asks for. No credentials mode: MCP clients
 * send a Bearer key, never cookies. Runs before the 405 check, which would answer OPTIONS, and
 * before the header limits, so that their 431 carries CORS headers too; a preflight, answered
 * here, is held to `headerLimits` first (it was answered 204, listing back every
 * `Mcp-Param-*` name of an oversized `Access-Control-Request-Headers`).
 *
 * @example app.use('/mcp', mcpCors({ maxTotalBytes: 16 * 1024, maxHeaderBytes: 8 * 1024 }))
 */
export function mcpCors(headerLimits: HeaderLimitsOptions): MiddlewareHandler<AppEnv> {
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
    if (preflight) checkHeaderSizes(c.req.raw.headers, headerLimits);
    // Built per preflight only when it asks for parameter headers; the answer names the fixed
    // list plus exactly those (the preflight's other names are checked by the browser against it).
    const params = preflight ? requestedParamHeaders(c.req.header('access-control-request-headers')) : [];
    return (params.length > 0 ? allowing([...MCP_CORS_ALLOW_HEADERS, ...params]) : allowListed)(c, next);
  };
}
