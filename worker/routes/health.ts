import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { everyRouteErrors, json } from './openapi';

export const health = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'get',
      path: '/healthz',
      summary: 'Liveness of the edge Worker (no auth)',
      responses: { 200: json(z.object({ status: z.literal('ok') }), 'the Worker is serving'), ...everyRouteErrors },
    }),
    (c) => c.json({ status: 'ok' as const }, 200),
  );
