import type { Env } from '../env';
import { eachLimited } from '../lib/each-limited';
import { endpointUrl } from '../upstream/endpoint';
import { checkOutboundUrl, outboundPolicy, type OutboundPolicy } from '../upstream/outbound-guard';
import { healthKey, probeSubject, type PoolTarget, type ProbeResult } from './runtime';
import { PROBE_RUN, takeDuePools, type ProbeRunLimits } from './probe-schedule';
import { openTargets } from './store';

const PROBE_TIMEOUT_MS = 5_000;
/**
 * Probes out at once in a run. Workers open at most six connections at a time per invocation
 * (fetches and KV calls alike) and queue the rest, a queued fetch's timeout running meanwhile:
 * five probes leave the sixth to the run's KV writes, so no probe waits behind them.
 */
export const PROBES_AT_ONCE = 5;
const HEALTH_KV_TTL_S = 10 * 60;

/**
 * One active health check: openai-chat targets answer `GET <baseUrl>/models` with 2xx (or, a
 * server with no model listing, see `chatRouteAnswers`); agent-http targets answer their URL
 * with anything below 500 but a redirect; builtin is always up.
 * Null, no verdict, when the DNS resolver could not check the URL's host now: its outage marked
 * every probed target down, sending a pool's traffic to its standbys until the next run.
 */
export async function probeTarget(target: PoolTarget, policy: OutboundPolicy): Promise<ProbeResult | null> {
  const checkedAt = new Date().toISOString();
  if (target.kind === 'builtin') return { ok: true, checkedAt, latencyMs: 0 };
  const url = target.kind === 'openai-chat' ? endpointUrl(target.baseUrl ?? '', '/models') : (target.url ?? '');
  const check = await checkOutboundUrl(url, policy);
  if (!check.ok) return check.unverified ? null : { ok: false, checkedAt, latencyMs: null, error: `refused: ${check.reason}` };
  const started = Date.now();
  try {
    const headers: Record<string, string> = { 'user-agent': 'edge-agent-gateway health probe' };
    if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
    // One timeout for the probe, the chat route's look included.
    const signal = AbortSignal.timeout(PROBE_TIMEOUT_MS);
    const response = await fetch(url, { method: 'GET', headers, signal, redirect: 'manual' });
    await response.body?.cancel();
    // A redirect is not followed (the guard checked this URL only), so calls to it would fail.
    const redirected = response.status >= 300 && response.status < 400;
    if (target.kind === 'openai-chat' && NO_LISTING.has(response.status)) {
      const chat = await chatRouteAnswers(target.baseUrl ?? '', headers, signal);
      const latencyMs = Date.now() - started;
      return chat.ok ? { ok: true, checkedAt, latencyMs } : { ok: false, checkedAt, latencyMs, error: `HTTP ${response.status} (GET /models), ${chat.error}` };
    }
    const ok = target.kind === 'openai-chat' ? response.ok : response.status < 500 && !redirected;
    return ok ? { ok, checkedAt, latencyMs: Date.now() - started } : { ok, checkedAt, latencyMs: Date.now() - started, error: `HTTP ${response.status}` };
  } catch (error) {
    return { ok: false, checkedAt, latencyMs: null, error: error instanceof Error ? error.message : String(error) };
  }
}

/** What `GET /models` answers on a server that serves chats but lists no models. */
const NO_LISTING = new Set([404, 405]);

/**
 * Whether the chat route of a server without a model listing is there: a GET of it, which no
 * server answers by generating, is 405 where a POST-only route exists (FastAPI's answer, as
 * vLLM and LiteLLM give it) or 2xx (OpenAI lists stored completions there). A 404 is a base
 * URL with no chat route either (a wrong path): down, as a 5xx is. Nothing is generated, so
 * the look costs the target nothing; it is taken only when `/models` answered 404 or 405.
 */
async function chatRouteAnswers(baseUrl: string, headers: Record<string, string>, signal: AbortSignal): Promise<{ ok: true } | { ok: false; error: string }> {
  const url = endpointUrl(baseUrl, '/chat/completions');
  const response = await fetch(url, { method: 'GET', headers, signal, redirect: 'manual' });
  await response.body?.cancel();
  return response.status === 405 || response.ok ? { ok: true } : { ok: false, error: `HTTP ${response.status} (GET /chat/completions)` };
}

interface PoolProbes {
  tenantId: string;
  name: string;
  results: [string, ProbeResult][];
  left: number;
}

/**
 * The cron's job: probe the targets of the pools due (worker/pools/probe-schedule.ts) and
 * publish the results per pool in KV, where the balancer of every isolate (edge and agents)
 * reads them. The run's targets, all its pools' together, are probed `PROBES_AT_ONCE` at a
 * time, each under its own timeout: a slow target holds one lane, not the run. A pool's
 * results are published once its last probe is in, one KV write at a time.
 */
export async function probeAllPools(env: Env, now = Date.now(), limits: ProbeRunLimits = PROBE_RUN): Promise<{ pools: number; targets: number; down: number }> {
  const taken = await takeDuePools(env, now, limits);
  const policy = outboundPolicy(env);
  const probes: { pool: PoolProbes; target: PoolTarget; subject: string | undefined }[] = [];
  for (const { tenantId, pool } of taken) {
    const opened = await openTargets(env, tenantId, pool).catch(() => null);
    if (!opened || opened.length === 0) continue;
    // The subject is the stored target's (sealed credential), as the balancer and the view compute it.
    const subjects = new Map(pool.targets.map((t) => [t.id, probeSubject(t)]));
    const entry: PoolProbes = { tenantId, name: pool.name, results: [], left: opened.length };
    for (const target of opened) probes.push({ pool: entry, target, subject: subjects.get(target.id) });
  }
  let down = 0;
  let publishing: Promise<void> = Promise.resolve();
  let unpublished: unknown;
  await eachLimited(probes, PROBES_AT_ONCE, async ({ pool, target, subject }) => {
    const probed = await probeTarget(target, policy);
    if (probed) {
      if (!probed.ok) down++;
      pool.results.push([target.id, { ...probed, subject }]);
    }
    if (--pool.left > 0) return;
    const health = JSON.stringify(Object.fromEntries(pool.results));
    // One write at a time (see PROBES_AT_ONCE); one that fails fails the run (logged) once the
    // other pools' results are written.
    publishing = publishing
      .then(() => env.CACHE.put(healthKey(pool.tenantId, pool.name), health, { expirationTtl: HEALTH_KV_TTL_S }))
      .catch((error: unknown) => { unpublished ??= error; });
  });
  await publishing;
  if (unpublished !== undefined) throw unpublished;
  return { pools: taken.length, targets: probes.length, down };
}
