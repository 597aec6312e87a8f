import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { secretsEqual } from '../lib/hash';
import { bearerToken } from './api-key-auth';
import { KEY_PREFIX } from '../auth/api-keys';

/**
 * Admits the operator: the bearer token must equal the ADMIN_TOKEN secret (compared in
 * constant time). Without a configured token the admin API is closed.
 */
export function adminAuth(): MiddlewareHandler<AppEnv> {
  return async function adminAuth(c, next) {
    const token = bearerToken(c.req.header('authorization'));
    const expected = c.env.ADMIN_TOKEN;
    if (!expected || expected.length < 16 || !(await secretsEqual(token, expected))) {
      // The prefix tells a tenant key apart without a lookup; it is public (README), so naming it leaks nothing.
      const hint = token.startsWith(KEY_PREFIX) ? `: this is a tenant API key (${KEY_PREFIX}…); /v1/admin routes take the operator token (ADMIN_TOKEN)` : '';
      throw new ApiError('unauthorized', `invalid admin token${hint}`, undefined, { 'www-authenticate': 'Bearer' });
    }
    await next();
  };
}
