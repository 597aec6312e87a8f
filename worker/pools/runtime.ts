import type { Env } from '../env';
import type { PutPoolBody, StoredPool } from '../schemas/pool';
import { latencyNow, pickTarget, peakEwma, type RoundRobins, type TargetState } from './balancer';
import { CircuitBreaker } from './circuit-breaker';
import { getPool, openTargets } from './store';

export type PoolTarget = PutPoolBody['targets'][number];

/** Result of an active probe, shared through KV so every isolate sees it. */
export interface ProbeResult {
  ok: boolean;
  checkedAt: string;
  latencyMs: number | null;
  error?: string;
  /** `probeSubject` of the target as it was probed (absent in results stored before it was kept). */
  subject?: string;
}

/**
 * What a probe result is about: a target's kind, the URL it calls and its credential as stored
 * (sealed; a masked round trip keeps it), hashed. A target redefined under the same id (its URL
 * or key fixed) is another subject: the failed probe of what it was must not keep it down.
 */
export function probeSubject(target: { kind: string; url?: string | undefined; baseUrl?: string | undefined; apiKey?: string | undefined }): string {
  const text = `${target.kind}\n${target.url ?? target.baseUrl ?? ''}\n${target.apiKey ?? ''}`;
  // FNV-1a: only compared for equality, and a collision costs no more than a stale probe.
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return (hash >>> 0).toString(16).padStart(8, '0');
}

/** The probe result that is about this target as it is now defined, or null. */
export const probeOf = (probes: Record<string, ProbeResult>, target: { id: string } & Parameters<typeof probeSubject>[0]): ProbeResult | null => {
  // Own members only: a target id such as "__proto__" or "constructor" found the object's own
  // prototype or constructor in a pool not yet probed, shown as an empty probe.
  const probe = Object.hasOwn(probes, target.id) ? probes[target.id] : undefined;
  return probe && (probe.subject === undefined || probe.subject === probeSubject(target)) ? probe : null;
};

export const healthKey = (tenantId: string, pool: string) => `health:v1:${tenantId}:${pool}`;
/** A failed probe marks a target down for this long unless a newer probe says otherwise. */
const PROBE_FRESH_MS = 3 * 60_000;
export const probeDown = (probe: ProbeResult | null | undefined, now: number): boolean => probe !== undefined && probe !== null && !probe.ok && now - Date.parse(probe.checkedAt) < PROBE_FRESH_MS;
const PROBE_RELOAD_MS = 15_000;
/**
 * Longest a Retry-After keeps a target out of this isolate's picks: longer is more likely a
 * skewed HTTP date than a real request, and a target that stays down is the breaker's and the
 * probes' job. (A call's own wait is bounded by its deadline anyway.)
 */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

export type LeaseOutcome = 'success' | 'failure' | 'cancelled' | 'abandoned';

/** One attempt on a target: report how it went. */
export interface Lease {
  target: PoolTarget;
  /** Epoch ms before which the target asked (Retry-After) not to be called; 0: none pending. */
  notBefore: number;
  /**
   * `cancelled`: ended without telling anything about the target; `abandoned`: answered, then
   * cut short by the client (a stream it stopped reading): no verdict on the target's health
   * either, but `latencyMs`, measured to the answer's start, counts.
   * `retryAfterMs`: the target's Retry-After on a retryable failure: it is not picked again
   * before then while another target can serve.
   */
  done(outcome: LeaseOutcome, latencyMs?: number, retryAfterMs?: number): void;
}

/**
 * The live state of one pool in this isolate: breakers, in-flight counts, latency and the
 * balancer's weights. Rebuilt when the pool's definition changes, keeping the state of each
 * target the change left as it was (see the constructor).
 */
export class PoolRuntime {
  private readonly states = new Map<string, TargetState>();
  /** The balancer's round robin cycles, each started at a random point when first used. */
  private readonly wrr: RoundRobins = new Map();
  /**
   * Leases that must have ended by a time (a chat's: its deadline), and how to end one that has
   * not. A stream whose client went away is never read again, so nothing else would end it:
   * its target would count it in flight, and keep a half-open probe slot, for the isolate's life.
   */
  private readonly bounded = new Map<() => void, number>();
  /** No `bounded` lease ends before this (it may be earlier than the earliest still held): the sweep runs only from then. */
  private nextEnd = Infinity;
  probes: Record<string, ProbeResult> = {};
  probesLoadedAt = 0;

  constructor(
    readonly tenantId: string,
    readonly pool: StoredPool,
    readonly targets: readonly PoolTarget[],
    previous?: PoolRuntime,
  ) {
    // A PUT that leaves a target's kind, URL and credential as they were (another target's
    // weight, say) must not forget what this isolate learnt of it: a rebuilt breaker sent
    // traffic straight back to a target whose circuit had opened, or that asked for a pause.
    // The state object itself is kept, so leases still out on it settle in the same counts.
    for (const t of targets) {
      const stored = pool.targets.find((s) => s.id === t.id);
      const kept = stored && previous?.stateOf(stored);
      this.states.set(t.id, kept ?? { breaker: new CircuitBreaker(), inflight: 0, latencyMs: null, probeDown: false, retryAfterUntil: 0 });
    }
    // Their leases still have to end by their deadline (a stream whose client went away).
    for (const [end, by] of previous?.bounded ?? []) this.bound(end, by);
  }

  state(id: string): TargetState {
    const state = this.states.get(id);
    if (!state) throw new Error(`unknown target ${id}`);
    return state;
  }

  /**
   * This runtime's state of the target `stored` defines (credential sealed, as stored), or
   * undefined when it knew that id by another kind, URL or credential, or not at all.
   */
  stateOf(stored: StoredPool['targets'][number]): TargetState | undefined {
    const known = this.pool.targets.find((t) => t.id === stored.id);
    return known && probeSubject(known) === probeSubject(stored) ? this.states.get(stored.id) : undefined;
  }

  applyProbes(probes: Record<string, ProbeResult>, now = Date.now()): void {
    this.probes = probes;
    this.probesLoadedAt = now;
    // The stored targets (credentials sealed), as the cron saw them.
    for (const target of this.pool.targets) {
      const state = this.states.get(target.id);
      if (state) state.probeDown = probeDown(probeOf(probes, target), now);
    }
  }

  /**
   * Chooses a target for the next attempt and counts it in flight until `done`. `endBy`: when
   * the lease is over whatever happened; one still open then ends as cancelled (see `bounded`).
   * `unusable`: targets this call can never use (a chat's agent-http ones), never picked.
   */
  lease(regions: readonly string[], exclude: ReadonlySet<string>, endBy?: number, unusable?: ReadonlySet<string>): Lease | null {
    // A sweep walks every lease in flight: on every lease, at 50 concurrent calls, it showed in profiles.
    if (Date.now() >= this.nextEnd) this.endOverdue();
    const targets = unusable && unusable.size > 0 ? this.targets.filter((t) => !unusable.has(t.id)) : this.targets;
    const target = pickTarget({ targets, state: (id) => this.state(id), strategy: this.pool.strategy, regions, exclude, wrr: this.wrr });
    if (!target) return null;
    const state = this.state(target.id);
    state.inflight++;
    // Only this lease's own slot: a lease that is no probe never frees the probe's (ProbeSlot).
    const slot = state.breaker.acquire();
    let finished = false;
    const lease: Lease = {
      target,
      notBefore: state.retryAfterUntil > Date.now() ? state.retryAfterUntil : 0,
      done: (outcome, latencyMs, retryAfterMs) => {
        if (finished) return;
        finished = true;
        this.bounded.delete(overdue);
        state.inflight--;
        if (retryAfterMs !== undefined) state.retryAfterUntil = Date.now() + Math.min(retryAfterMs, MAX_RETRY_AFTER_MS);
        if (outcome === 'success') state.breaker.success();
        else if (outcome === 'failure') state.breaker.failure(Date.now(), slot);
        else state.breaker.release(slot);
        if (latencyMs !== undefined && outcome !== 'cancelled') {
          const now = Date.now();
          const current = latencyNow(state, now);
          // A failure is no answer: a slow one (a timeout) says the target is slow, a quick one
          // (a 503 shedding load) says nothing of how fast it answers, and used to draw the
          // latency strategy's traffic to the target refusing it.
          const noFaster = outcome === 'failure' && current !== null && latencyMs < current;
          state.latencyMs = noFaster ? current : peakEwma(current, latencyMs);
          state.latencyAt = now;
        }
      },
    };
    const overdue = () => lease.done('cancelled');
    if (endBy !== undefined) this.bound(overdue, endBy);
    return lease;
  }

  private bound(end: () => void, by: number): void {
    this.bounded.set(end, by);
    if (by < this.nextEnd) this.nextEnd = by;
  }

  /** Ends the leases past their `endBy` (as cancelled: nothing is known about the target). */
  endOverdue(now = Date.now()): void {
    let next = Infinity;
    for (const [end, by] of this.bounded) {
      if (by > now) {
        if (by < next) next = by;
        continue;
      }
      // A lease taken over from a replaced runtime removes itself from that one's map only.
      this.bounded.delete(end);
      end();
    }
    this.nextEnd = next;
  }
}

const runtimes = new Map<string, PoolRuntime>();

/**
 * The runtime for a tenant's pool, or null if there is no such pool. Balancer and breaker
 * state live in this isolate (a Durable Object's, or the edge's); active probe results come
 * from KV every 15 s.
 */
export async function loadPoolRuntime(env: Env, tenantId: string, name: string): Promise<PoolRuntime | null> {
  const pool = await getPool(env, tenantId, name);
  if (!pool) return null;
  const key = `${tenantId}/${name}`;
  let runtime = runtimes.get(key);
  if (!runtime || runtime.pool.updatedAt !== pool.updatedAt) {
    runtime = new PoolRuntime(tenantId, pool, await openTargets(env, tenantId, pool), runtime);
    if (runtimes.size > 5_000) runtimes.clear();
    runtimes.set(key, runtime);
  }
  if (Date.now() - runtime.probesLoadedAt > PROBE_RELOAD_MS) {
    const probes = await env.CACHE.get<Record<string, ProbeResult>>(healthKey(tenantId, name), 'json').catch(() => null);
    runtime.applyProbes(probes ?? {});
  }
  return runtime;
}

/** The runtime if this isolate has one (for health views), without loading anything. */
export const cachedRuntime = (tenantId: string, name: string): PoolRuntime | undefined => runtimes.get(`${tenantId}/${name}`);
