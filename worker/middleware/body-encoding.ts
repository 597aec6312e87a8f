import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { unreadableBody } from '../lib/body-encoding';

/**
 * Refuses a request body in a charset other than UTF-8 or with a content coding with 415
 * `unsupported_media_type`, naming it, before a route parses the body as UTF-8 JSON (which would
 * store a latin1 "é" as U+FFFD, or call a gzipped body malformed). A request without a body
 * passes whatever its headers say.
 *
 * @example app.use('/v1/*', bodyEncoding())
 */
export function bodyEncoding(): MiddlewareHandler<AppEnv> {
  return async function bodyEncoding(c, next) {
    const problem = c.req.raw.body === null ? null : unreadableBody(c.req.raw.headers);
    if (problem) throw new ApiError('unsupported_media_type', problem);
    await next();
  };
}
