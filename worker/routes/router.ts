import { OpenAPIHono, type z } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { validationError } from '../errors';

type HeaderSchema = z.ZodObject;

/**
 * Validates the headers a route declares, and only those. zod-openapi's own header validator
 * first copies every request header into an object, maps their names, and parses it
 * asynchronously, whatever the schema names (BENCHMARKS.md, fifth and sixth passes). This
 * reads the few names the schema has (`Headers.get` ignores case), parses synchronously, and
 * hands the result to `c.req.valid('header')` as that validator would.
 */
export function declaredHeaders(schema: HeaderSchema): MiddlewareHandler<AppEnv> {
  const names = Object.keys(schema.shape);
  return async function declaredHeaders(c, next) {
    const value: Record<string, string> = {};
    for (const name of names) {
      const found = c.req.raw.headers.get(name);
      if (found !== null) value[name] = found;
    }
    const result = schema.safeParse(value);
    if (!result.success) throw validationError(result.error);
    c.req.addValidatedData('header', result.data as Record<string, unknown>);
    await next();
  };
}

/**
 * A router for the API's routes. Its `openapi` is zod-openapi's, with the same types (so
 * `hono/client` sees every declared header), except that a route's headers are validated by
 * `declaredHeaders` rather than by zod-openapi: the route is documented as declared, and
 * served without its header schema plus that middleware in front.
 */
export function router(): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  const register = app.openapi;
  app.openapi = ((route, handler, hook) => {
    const headers = route.request?.headers;
    if (!headers || !('shape' in headers)) return register(route, handler, hook);
    const { middleware, hide, ...documented } = route;
    if (!hide) app.openAPIRegistry.registerPath(documented);
    const served = {
      ...documented,
      hide: true,
      request: { ...route.request, headers: undefined },
      middleware: [declaredHeaders(headers as HeaderSchema), ...[middleware ?? []].flat()],
    };
    return register(served as typeof route, handler, hook);
  }) as typeof app.openapi;
  return app;
}
