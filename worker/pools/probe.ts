import type { Env } from '../env';
import { checkOutboundUrl, outboundPolicy, type OutboundPolicy } from '../upstream/outbound-guard';
import { healthKey, probeSubject, type PoolTarget, type ProbeResult } from './runtime';
import { PROBE_RUN, takeDuePools, type ProbeRunLimits } from './probe-schedule';
import { openTargets } from './store';

const PROBE_TIMEOUT_MS = 5_000;
/** Workers allow six simultaneous outgoing connections per invocation. */
const PARALLEL = 6;
const HEALTH_KV_TTL_S = 10 * 60;

/**
 * One active health check: openai-chat targets answer `GET <baseUrl>/models` with 2xx;
 * agent-http targets answer their URL with anything below 500 but a redirect; builtin is always up.
 */
export async function probeTarget(target: PoolTarget, policy: OutboundPolicy): Promise<ProbeResult> {
  const checkedAt = new Date().toISOString();
  if (target.kind === 'builtin') return { ok: true, checkedAt, latencyMs: 0 };
  const url = target.kind === 'openai-chat' ? `${(target.baseUrl ?? '').replace(/\/+$/, '')}/models` : (target.url ?? '');
  const check = await checkOutboundUrl(url, policy);
  if (!check.ok) return { ok: false, checkedAt, latencyMs: null, error: `refused: ${check.reason}` };
  const started = Date.now();
  try {
    const headers: Record<string, string> = { 'user-agent': 'edge-agent-gateway health probe' };
    if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
    const response = await fetch(url, { method: 'GET', headers, signal: AbortSignal.timeout(PROBE_TIMEOUT_MS), redirect: 'manual' });
    await response.body?.cancel();
    // A redirect is not followed (the guard checked this URL only), so calls to it would fail.
    const redirected = response.status >= 300 && response.status < 400;
    const ok = target.kind === 'openai-chat' ? response.ok : response.status < 500 && !redirected;
    return ok ? { ok, checkedAt, latencyMs: Date.now() - started } : { ok, checkedAt, latencyMs: Date.now() - started, error: `HTTP ${response.status}` };
  } catch (error) {
    return { ok: false, checkedAt, latencyMs: null, error: error instanceof Error ? error.message : String(error) };
  }
}

async function inBatches<T, R>(items: readonly T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += size) results.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return results;
}

/**
 * The cron's job: probe the targets of the pools due (worker/pools/probe-schedule.ts) and
 * publish the results per pool in KV, where the balancer of every isolate (edge and agents)
 * reads them.
 */
export async function probeAllPools(env: Env, now = Date.now(), limits: ProbeRunLimits = PROBE_RUN): Promise<{ pools: number; targets: number; down: number }> {
  const taken = await takeDuePools(env, now, limits);
  const policy = outboundPolicy(env);
  let targets = 0;
  let down = 0;
  for (const { tenantId, pool } of taken) {
    const opened = await openTargets(env, tenantId, pool).catch(() => null);
    if (!opened) continue;
    // The subject is the stored target's (sealed credential), as the balancer and the view compute it.
    const subjects = new Map(pool.targets.map((t) => [t.id, probeSubject(t)]));
    const probes = await inBatches(opened, PARALLEL, async (t) => [t.id, { ...(await probeTarget(t, policy)), subject: subjects.get(t.id) }] as const);
    targets += probes.length;
    down += probes.filter(([, p]) => !p.ok).length;
    await env.CACHE.put(healthKey(tenantId, pool.name), JSON.stringify(Object.fromEntries(probes)), { expirationTtl: HEALTH_KV_TTL_S });
  }
  return { pools: taken.length, targets, down };
}
