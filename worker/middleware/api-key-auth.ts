import type { Context, MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { KEY_PREFIX, lookupKey, type Defer } from '../auth/api-keys';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Reads the bearer token of a request, or throws 401 `unauthorized`. */
export function bearerToken(header: string | undefined): string {
  const token = header === undefined ? undefined : BEARER.exec(header)?.[1];
  if (!token) {
    throw new ApiError('unauthorized', 'missing or malformed Authorization header (expected "Bearer <key>")', undefined, { 'www-authenticate': 'Bearer' });
  }
  return token;
}

/** The request's `waitUntil`, or none where the app runs without an execution context (tests). */
function deferrer(c: Context<AppEnv>): Defer | undefined {
  try {
    const ctx = c.executionCtx;
    return (work) => ctx.waitUntil(work);
  } catch {
    return undefined;
  }
}

/**
 * Authenticates a tenant API key and puts its principal on the context.
 *
 * @example app.use('/v1/*', apiKeyAuth())
 */
export function apiKeyAuth(): MiddlewareHandler<AppEnv> {
  return async function apiKeyAuth(c, next) {
    const token = bearerToken(c.req.header('authorization'));
    if (!token.startsWith(KEY_PREFIX)) {
      // Most often the operator token sent to a tenant route: say what a key looks like.
      throw new ApiError('unauthorized', `not an API key: API keys start with ${KEY_PREFIX} (the operator token ADMIN_TOKEN is for /v1/admin routes only)`, undefined, { 'www-authenticate': 'Bearer' });
    }
    const principal = await lookupKey(c.env, token, deferrer(c));
    if (!principal) throw new ApiError('unauthorized', 'invalid or revoked API key', undefined, { 'www-authenticate': 'Bearer' });
    c.set('principal', principal);
    await next();
  };
}
