import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';

export interface HeaderLimitsOptions {
  /** Largest sum of every header's name and value, in bytes. */
  maxTotalBytes: number;
  /** Largest single header (name and value), in bytes. */
  maxHeaderBytes: number;
}

/** Throws 431 `headers_too_large` when `headers` exceed either limit. */
export function checkHeaderSizes(headers: Headers, options: HeaderLimitsOptions): void {
  let total = 0;
  for (const [name, value] of headers) {
    // Header names and values are byte strings (one char per byte on the wire), so their
    // length is their size; encoding each one cost several percent of a proxied request.
    const size = name.length + value.length;
    if (size > options.maxHeaderBytes) throw new ApiError('headers_too_large', `header ${name.slice(0, 64)} exceeds ${options.maxHeaderBytes} bytes`);
    total += size;
  }
  if (total > options.maxTotalBytes) throw new ApiError('headers_too_large', `request headers exceed ${options.maxTotalBytes} bytes in total`);
}

/**
 * Refuses requests with oversized headers (431 `headers_too_large`) before anything reads
 * them. Cloudflare's edge enforces its own, larger limits; this bounds what the Worker
 * parses, logs and forwards.
 *
 * @example app.use(headerLimits({ maxTotalBytes: 16 * 1024, maxHeaderBytes: 8 * 1024 }))
 */
export function headerLimits(options: HeaderLimitsOptions): MiddlewareHandler<AppEnv> {
  return async function headerLimits(c, next) {
    checkHeaderSizes(c.req.raw.headers, options);
    await next();
  };
}
