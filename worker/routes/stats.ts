import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { commonErrors, json, security } from './openapi';

const Window = z.object({ windowMinutes: z.coerce.number().int().min(1).max(24 * 60).default(60) });

const Stats = z
  .object({
    windowMinutes: z.number().int(),
    executions: z.record(z.string(), z.number().int()).openapi({ description: 'executions by status, finished or changed in the window' }),
    latencyMs: z.object({ p50: z.number().nullable(), p99: z.number().nullable(), samples: z.number().int() }),
    upstreams: z.array(z.object({ upstream: z.string(), total: z.number().int(), failed: z.number().int(), errorRate: z.number() })),
  })
  .openapi('Stats');

const percentile = (sorted: number[], p: number): number | null => (sorted.length === 0 ? null : (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? null));

export const stats = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/stats',
      tags: ['observability'],
      summary: "The tenant's executions over a recent window: by status, latency percentiles, upstream error rates",
      security,
      request: { query: Window },
      responses: { 200: json(Stats, 'the summary'), ...commonErrors },
    }),
    async (c) => {
      const { windowMinutes } = c.req.valid('query');
      const since = Date.now() - windowMinutes * 60_000;
      const tenantId = c.get('principal').tenantId;
      const [byStatus, durations, upstreams] = await c.env.DB.batch([
        c.env.DB.prepare('SELECT status, count(*) AS n FROM executions WHERE tenant_id = ? AND updated_at >= ? GROUP BY status').bind(tenantId, since),
        c.env.DB.prepare(
          "SELECT json_extract(record, '$.durationMs') AS d FROM executions WHERE tenant_id = ? AND updated_at >= ? AND status IN ('succeeded', 'failed') AND json_extract(record, '$.durationMs') IS NOT NULL ORDER BY d LIMIT 10000",
        ).bind(tenantId, since),
        c.env.DB.prepare(
          "SELECT json_extract(record, '$.upstream') AS upstream, count(*) AS total, sum(status = 'failed') AS failed FROM executions WHERE tenant_id = ? AND updated_at >= ? AND status IN ('succeeded', 'failed') GROUP BY upstream ORDER BY total DESC LIMIT 100",
        ).bind(tenantId, since),
      ]);
      const sorted = ((durations?.results ?? []) as { d: number }[]).map((r) => r.d);
      return c.json(
        {
          windowMinutes,
          executions: Object.fromEntries(((byStatus?.results ?? []) as { status: string; n: number }[]).map((r) => [r.status, r.n])),
          latencyMs: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), samples: sorted.length },
          upstreams: ((upstreams?.results ?? []) as { upstream: string | null; total: number; failed: number }[]).map((r) => ({
            upstream: r.upstream ?? 'none',
            total: r.total,
            failed: r.failed,
            errorRate: r.total === 0 ? 0 : Math.round((r.failed / r.total) * 1000) / 1000,
          })),
        },
        200,
      );
    },
  );
