import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { lookupKey } from '../auth/api-keys';

const BEARER = /^Bearer\s+(\S+)\s*$/i;

/** Reads the bearer token of a request, or throws 401 `unauthorized`. */
export function bearerToken(header: string | undefined): string {
  const token = header === undefined ? undefined : BEARER.exec(header)?.[1];
  if (!token) {
    throw new ApiError('unauthorized', 'missing or malformed Authorization header (expected "Bearer <key>")', undefined, { 'www-authenticate': 'Bearer' });
  }
  return token;
}

/**
 * Authenticates a tenant API key and puts its principal on the context.
 *
 * @example app.use('/v1/*', apiKeyAuth())
 */
export function apiKeyAuth(): MiddlewareHandler<AppEnv> {
  return async function apiKeyAuth(c, next) {
    const principal = await lookupKey(c.env, bearerToken(c.req.header('authorization')));
    if (!principal) throw new ApiError('unauthorized', 'invalid or revoked API key', undefined, { 'www-authenticate': 'Bearer' });
    c.set('principal', principal);
    await next();
  };
}
