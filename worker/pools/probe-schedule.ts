import type { Env } from '../env';
import type { StoredPool } from '../schemas/pool';

/**
 * How much one cron run probes, and how the runs share that out. A run is bounded by the
 * platform (subrequests and CPU per invocation), so `pools` and `probes` cap it; `tenantShare`
 * is how many of a tenant's pools fall due per run: a tenant with more waits longer between
 * probes of each, while every tenant with fewer has each of its pools due every run.
 */
export interface ProbeRunLimits {
  /** Pools per run. */
  pools: number;
  /** Target probes per run: a pool holds up to 32 targets, and each probe is a subrequest. */
  probes: number;
  /** A tenant's pools due per run, whatever its other pools. */
  tenantShare: number;
  /** The cron's period: one run a minute. */
  periodMs: number;
}

export const PROBE_RUN: ProbeRunLimits = { pools: 1_000, probes: 5_000, tenantShare: 100, periodMs: 60_000 };

/**
 * The pools due soonest, off the `probe_due` index. Pools not yet due fill what the due ones
 * leave of a run, so a light load probes every pool every run.
 */
export const DUE_POOLS_QUERY = 'SELECT tenant_id, name, config FROM pools ORDER BY probe_due LIMIT ?';

/** Pools per tenant, for the tenants of a run: a range of the primary key each. */
export const TENANT_POOL_COUNTS_QUERY = 'SELECT tenant_id, COUNT(*) AS n FROM pools WHERE tenant_id IN (SELECT value FROM json_each(?)) GROUP BY tenant_id';

/** Each taken pool's next due time, in one statement ([tenant, name, due] triples). */
const SET_DUE = 'UPDATE pools SET probe_due = u.value ->> 2 FROM json_each(?) AS u WHERE pools.tenant_id = u.value ->> 0 AND pools.name = u.value ->> 1';

/** Runs between two probes of a pool of a tenant that has `pools` of them. */
export const runsBetweenProbes = (pools: number, limits: ProbeRunLimits = PROBE_RUN): number => Math.max(1, Math.ceil(pools / limits.tenantShare));

export interface DuePool {
  tenantId: string;
  pool: StoredPool;
}

/**
 * This run's pools, taken: their next due time is set before they are probed, so a run that
 * outlasts the minute does not hand the same pools to the next one. A pool is next due after
 * `runsBetweenProbes` for its tenant's pool count; a pool left out for lack of room keeps its
 * time and so comes first next run.
 */
export async function takeDuePools(env: Env, now: number, limits: ProbeRunLimits = PROBE_RUN): Promise<DuePool[]> {
  const { results } = await env.DB.prepare(DUE_POOLS_QUERY).bind(limits.pools).all<{ tenant_id: string; name: string; config: string }>();
  const taken: DuePool[] = [];
  let probes = 0;
  for (const row of results) {
    const pool = JSON.parse(row.config) as StoredPool;
    // In due order, stopping at the first that does not fit, so it is first in line next run.
    if (taken.length > 0 && probes + pool.targets.length > limits.probes) break;
    probes += pool.targets.length;
    taken.push({ tenantId: row.tenant_id, pool: { ...pool, name: row.name } });
  }
  if (taken.length === 0) return taken;
  const tenants = [...new Set(taken.map((t) => t.tenantId))];
  const counted = await env.DB.prepare(TENANT_POOL_COUNTS_QUERY).bind(JSON.stringify(tenants)).all<{ tenant_id: string; n: number }>();
  const counts = new Map(counted.results.map((r) => [r.tenant_id, r.n]));
  const due = taken.map((t) => [t.tenantId, t.pool.name, now + runsBetweenProbes(counts.get(t.tenantId) ?? 1, limits) * limits.periodMs]);
  await env.DB.prepare(SET_DUE).bind(JSON.stringify(due)).run();
  return taken;
}

/** Pools a tenant holds (a range of the primary key). */
export async function countTenantPools(env: Env, tenantId: string): Promise<number> {
  const row = await env.DB.prepare('SELECT COUNT(*) AS n FROM pools WHERE tenant_id = ?').bind(tenantId).first<{ n: number }>();
  return row?.n ?? 0;
}
