import type { MiddlewareHandler } from 'hono';
import type { AppEnv, Env } from '../env';
import { ApiError } from '../errors';

/** A comma-separated operator list, trimmed and lower-cased; empty entries dropped. */
function listOf(value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
}

/**
 * Why a request to the MCP endpoint must be refused before anything reads it, or null.
 *
 * - Origin: a browser page can reach a local or intranet MCP server (drive-by requests), so a
 *   request carrying `Origin` is served only when that origin is the endpoint's own or is
 *   listed in `MCP_ALLOWED_ORIGINS`. Requests without `Origin` (MCP hosts, SDKs, curl) pass:
 *   they are not made by a browser on someone else's behalf. "Own" is read from the request's
 *   Host, so a DNS-rebound page (whose Origin names the Host it sends) passes this check: the
 *   Host list below is what stops rebinding.
 * - Host: when the operator lists `MCP_ALLOWED_HOSTS`, any other Host is refused, so a rebound
 *   DNS name cannot reach the gateway under a name the operator never served it on.
 */
export function mcpRequestProblem(env: Pick<Env, 'MCP_ALLOWED_ORIGINS' | 'MCP_ALLOWED_HOSTS'>, request: Request): string | null {
  const url = new URL(request.url);
  const hosts = listOf(env.MCP_ALLOWED_HOSTS);
  const host = (request.headers.get('host') ?? url.host).toLowerCase();
  if (hosts.length > 0 && !hosts.includes(host)) return `host ${host} is not allowed`;
  const origin = request.headers.get('origin');
  if (origin === null) return null;
  const asked = origin.trim().toLowerCase();
  if (asked === url.origin.toLowerCase() || listOf(env.MCP_ALLOWED_ORIGINS).includes(asked)) return null;
  return `origin ${origin.slice(0, 200)} is not allowed`;
}

/**
 * Origin and Host validation for the MCP endpoint (the MCP SDK leaves both to the server).
 * Refusals are 403 `forbidden` in the API's envelope.
 *
 * @example app.use('/mcp', mcpGuard())
 */
export function mcpGuard(): MiddlewareHandler<AppEnv> {
  return async function mcpGuard(c, next) {
    const problem = mcpRequestProblem(c.env, c.req.raw);
    if (problem) throw new ApiError('forbidden', problem);
    await next();
  };
}
