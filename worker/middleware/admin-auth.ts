import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { secretsEqual } from '../lib/hash';
import { bearerToken } from './api-key-auth';

/**
 * Admits the operator: the bearer token must equal the ADMIN_TOKEN secret (compared in
 * constant time). Without a configured token the admin API is closed.
 */
export function adminAuth(): MiddlewareHandler<AppEnv> {
  return async function adminAuth(c, next) {
    const token = bearerToken(c.req.header('authorization'));
    const expected = c.env.ADMIN_TOKEN;
    if (!expected || expected.length < 16 || !(await secretsEqual(token, expected))) {
      throw new ApiError('unauthorized', 'invalid admin token', undefined, { 'www-authenticate': 'Bearer' });
    }
    await next();
  };
}
