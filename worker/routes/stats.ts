import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { commonErrors, json, security } from './openapi';

const Window = z.object({ windowMinutes: z.coerce.number().int().min(1).max(24 * 60).default(60) });

const Stats = z
  .object({
    windowMinutes: z.number().int(),
    executions: z.record(z.string(), z.number().int()).openapi({ description: 'executions by status, finished or changed in the window' }),
    latencyMs: z
      .object({ p50: z.number().nullable(), p99: z.number().nullable(), samples: z.number().int().openapi({ description: 'the executions the percentiles are over' }) })
      .openapi({ description: 'over the executions of the window that succeeded, or failed after they started (not cancelled ones, nor ones whose deadline passed while queued); null when there were none' }),
    upstreams: z
      .array(
        z.object({
          upstream: z.string().openapi({ description: 'the execution\'s `upstream` (its last attempt\'s, such as `builtin`), or `none` for one that never reached an upstream (its deadline passed while queued)' }),
          total: z.number().int(),
          failed: z.number().int(),
          errorRate: z.number().openapi({ description: 'failed / total, to 3 decimals' }),
        }),
      )
      .openapi({ description: 'per upstream, over the executions of the window that succeeded or failed; the 100 with the most, most first' }),
  })
  .openapi('Stats');

/**
 * The p50 and p99 rows of the window's durations, ranked in D1: reading them out to rank here
 * took at most 10,000, the fastest, so a busy tenant's percentiles were those of its fastest
 * executions. Each percentile is the duration at rank floor(p% of n), the last at most.
 */
const PERCENTILES_SQL = `WITH ranked AS (
    SELECT json_extract(record, '$.durationMs') AS d, row_number() OVER (ORDER BY json_extract(record, '$.durationMs')) - 1 AS i, count(*) OVER () AS n
    FROM executions
    WHERE tenant_id = ? AND updated_at >= ? AND status IN ('succeeded', 'failed') AND json_extract(record, '$.durationMs') IS NOT NULL
  )
  SELECT d, n, i = min(n - 1, n * 50 / 100) AS p50, i = min(n - 1, n * 99 / 100) AS p99 FROM ranked
  WHERE i = min(n - 1, n * 50 / 100) OR i = min(n - 1, n * 99 / 100)`;

interface PercentileRow { d: number; n: number; p50: number; p99: number }

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
        c.env.DB.prepare(PERCENTILES_SQL).bind(tenantId, since),
        c.env.DB.prepare(
          "SELECT json_extract(record, '$.upstream') AS upstream, count(*) AS total, sum(status = 'failed') AS failed FROM executions WHERE tenant_id = ? AND updated_at >= ? AND status IN ('succeeded', 'failed') GROUP BY upstream ORDER BY total DESC LIMIT 100",
        ).bind(tenantId, since),
      ]);
      const ranks = (durations?.results ?? []) as PercentileRow[];
      return c.json(
        {
          windowMinutes,
          executions: Object.fromEntries(((byStatus?.results ?? []) as { status: string; n: number }[]).map((r) => [r.status, r.n])),
          latencyMs: { p50: ranks.find((r) => r.p50)?.d ?? null, p99: ranks.find((r) => r.p99)?.d ?? null, samples: ranks[0]?.n ?? 0 },
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
