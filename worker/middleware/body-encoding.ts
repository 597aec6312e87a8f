import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { unreadableRequestBody } from './utf8-body';

/**
 * Refuses a request body in a charset other than UTF-8, with a content coding, or of bytes that
 * are not UTF-8 (`utf8Body`) with 415
 * `unsupported_media_type`, naming it, before a route parses the body as UTF-8 JSON (which would
 * store a latin1 "é" as U+FFFD, or call a gzipped body malformed). A request without a body
 * passes whatever its headers say.
 *
 * @example app.use('/v1/*', bodyEncoding())
 */
export function bodyEncoding(): MiddlewareHandler<AppEnv> {
  return async function bodyEncoding(c, next) {
    const problem = unreadableRequestBody(c);
    if (problem) throw new ApiError('unsupported_media_type', problem);
    await next();
  };
}
