import type { Strategy } from '../schemas/pool';
import type { CircuitBreaker } from './circuit-breaker';

export interface BalancedTarget {
  id: string;
  weight: number;
  priority: number;
  region?: string;
}

/** What the balancer knows about a target right now. */
export interface TargetState {
  breaker: CircuitBreaker;
  inflight: number;
  /** Peak-EWMA of latency in ms (null until the first response), as of `latencyAt`. */
  latencyMs: number | null;
  /** Epoch ms of the sample `latencyMs` last took in (absent: taken now, no decay yet). */
  latencyAt?: number;
  /** The last active probe failed (and is recent). */
  probeDown: boolean;
  /** Epoch ms before which the target asked (Retry-After) not to be called again; 0: none. */
  retryAfterUntil: number;
}

export interface PickInput<T extends BalancedTarget> {
  targets: readonly T[];
  state: (id: string) => TargetState;
  strategy: Strategy;
  /** Region tags of the caller (location hint and continent); matching targets are preferred, whatever their case. */
  regions: readonly string[];
  /** Targets already tried for this request: the next attempt goes elsewhere when it can. */
  exclude: ReadonlySet<string>;
  /** Smooth weighted round robin's cycles, kept per pool (see `cycleOf`). */
  wrr: RoundRobins;
  random?: () => number;
}

/** Smooth weighted round robin's running weights, one cycle per set of targets picked among. */
export type RoundRobins = Map<string, Map<string, number>>;

/** Sets of targets whose cycles a pool keeps: tiers, regions and health make few. */
const MAX_CYCLES = 64;

/**
 * The running weights of the cycle over exactly `targets` (a tier, its caller's region, the
 * healthy ones), started at a random point of it when new (`startAtRandom`). One set of
 * weights for every set skewed the picks: a target's weight moves only while it is picked
 * among, so a start anywhere in the cycle of the whole pool (a standby of weight 1000
 * included) could leave one of two 1:1 primaries 500 picks behind the other, and it took
 * every request of the tier until they drew level.
 */
function cycleOf(targets: readonly BalancedTarget[], cycles: RoundRobins, random: () => number): Map<string, number> {
  const key = targets.map((t) => t.id).join('\n');
  let cycle = cycles.get(key);
  if (!cycle) {
    if (cycles.size >= MAX_CYCLES) cycles.clear();
    cycle = new Map();
    startAtRandom(targets, cycle, random);
    cycles.set(key, cycle);
  }
  return cycle;
}

/**
 * A target's health as the balancer judges it: its circuit takes a request now (closed, or
 * half-open with the probe slot free) and its last active probe did not fail recently. The pool
 * view's `healthy` is this; a Retry-After pause is shown apart from it (`pausedUntil`).
 */
export const targetHealthy = (s: Pick<TargetState, 'breaker' | 'probeDown'>, now: number): boolean => s.breaker.available(now) && !s.probeDown;

const healthy = (s: TargetState, now: number) => targetHealthy(s, now) && s.retryAfterUntil <= now;

/** When nothing is healthy: the target free soonest (Retry-After), then the least recently failed. */
function fallbackOrder(a: TargetState, b: TargetState, now: number): number {
  const waitA = Math.max(0, a.retryAfterUntil - now);
  const waitB = Math.max(0, b.retryAfterUntil - now);
  return waitA - waitB || a.breaker.lastFailureAt - b.breaker.lastFailureAt;
}

/**
 * Picks the target for the next attempt. Eligible: healthy targets not yet tried, of the
 * lowest priority tier that has any (a standby tier serves only when every target above it is
 * unhealthy; a target waiting out its Retry-After is not healthy); among them the caller's
 * region first, the rest as spill-over; when every untried target is unhealthy, a healthy one
 * already tried. When no target is healthy, the least recently failed one is tried rather than
 * refusing (among those waiting out a Retry-After, the one free soonest).
 */
export function pickTarget<T extends BalancedTarget>(input: PickInput<T>, now = Date.now()): T | null {
  const untried = input.targets.filter((t) => !input.exclude.has(t.id));
  const candidates = untried.length > 0 ? untried : [...input.targets];
  if (candidates.length === 0) return null;
  let up = candidates.filter((t) => healthy(input.state(t.id), now));
  // Every target not yet tried is down: a healthy one already tried (one 503 leaves its
  // circuit closed) takes the retry, not a target whose circuit is open.
  if (up.length === 0 && untried.length > 0) up = input.targets.filter((t) => healthy(input.state(t.id), now));
  if (up.length === 0) {
    return [...candidates].sort((a, b) => fallbackOrder(input.state(a.id), input.state(b.id), now))[0] ?? null;
  }
  const tier = Math.min(...up.map((t) => t.priority));
  const eligible = up.filter((t) => t.priority === tier);
  // Tags compare without case: a target's "na" or "dfw" is the caller's NA or DFW (cf.continent, cf.colo).
  const tags = input.regions.map((r) => r.toLowerCase());
  const local = tags.length === 0 ? [] : eligible.filter((t) => t.region !== undefined && tags.includes(t.region.toLowerCase()));
  const pool = local.length > 0 ? local : eligible;
  const random = input.random ?? Math.random;
  switch (input.strategy) {
    case 'weighted-round-robin':
      return smoothWeighted(pool, cycleOf(pool, input.wrr, random));
    case 'least-inflight':
      return leastInflight(pool, input.state, (ties) => cycleOf(ties, input.wrr, random));
    case 'latency':
      return powerOfTwo(pool, input.state, random, now);
  }
}

/** Nginx's smooth weighted round robin: weights 3:1 give A A B A, evenly interleaved. */
export function smoothWeighted<T extends BalancedTarget>(targets: readonly T[], current: Map<string, number>): T | null {
  let best: T | null = null;
  let bestWeight = -Infinity;
  let total = 0;
  for (const t of targets) {
    const w = (current.get(t.id) ?? 0) + t.weight;
    current.set(t.id, w);
    total += t.weight;
    if (w > bestWeight) {
      best = t;
      bestWeight = w;
    }
  }
  if (best) current.set(best.id, bestWeight - total);
  return best;
}

/**
 * How far into a new cycle a start may be: a cycle longer than this starts within its first
 * START_WINDOW picks. Smooth weighted round robin keeps every target within about one pick of
 * its share at every point of a cycle (within 0.8 in 3,000 random sets of up to 32 targets of
 * weights up to 1000), so over a start drawn from that window each target takes the first
 * pick within a pick in START_WINDOW of its weight's share (from anywhere in the cycle: its
 * share exactly), and exactly as before in a cycle of START_WINDOW picks or fewer.
 */
export const START_WINDOW = 256;

/**
 * Moves a new cycle (`cycleOf`) a random number of picks into it. Each isolate
 * builds its own runtime, and every one started at the same point sent its first request to
 * the same target: a pool used by many isolates a few requests each (agents' objects spread
 * over machines) loaded its first target with nearly all of them, whatever the weights. A whole
 * cycle still splits exactly as the weights say; only where it starts moves.
 *
 * The state after k picks has no closed form (a target's lead depends on the order of earlier
 * picks, not only on k), so the start is reached by picking, fewer than START_WINDOW times:
 * at most START_WINDOW × targets steps. Anywhere in the whole cycle took up to its length in
 * picks (the weights' sum over their common factor): 31,504 picks over 32 targets of weights
 * 1000, 999, … 969, some half a million writes, for each new set of targets picked among.
 */
export function startAtRandom(targets: readonly BalancedTarget[], current: Map<string, number>, random: () => number = Math.random): void {
  // Weights with a common factor pick as they do divided by it (1000:1000 as 1:1), so the cycle
  // repeats after their sum divided by it: a short cycle is started anywhere in it.
  const factor = targets.reduce((g, t) => gcd(g, t.weight), 0) || 1;
  const cycle = targets.reduce((sum, t) => sum + t.weight, 0) / factor;
  for (let skip = Math.floor(random() * Math.min(cycle, START_WINDOW)); skip > 0; skip--) smoothWeighted(targets, current);
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function leastInflight<T extends BalancedTarget>(targets: readonly T[], state: (id: string) => TargetState, cycle: (ties: readonly T[]) => Map<string, number>): T | null {
  const least = Math.min(...targets.map((t) => state(t.id).inflight / t.weight));
  // Ties (an idle pool) are broken by weighted round robin so weights still count.
  const ties = targets.filter((t) => state(t.id).inflight / t.weight === least);
  return smoothWeighted(ties, cycle(ties));
}

/** Power of two choices on peak-EWMA latency × (in-flight + 1); unmeasured targets get tried. */
function powerOfTwo<T extends BalancedTarget>(targets: readonly T[], state: (id: string) => TargetState, random: () => number, now: number): T | null {
  if (targets.length <= 1) return targets[0] ?? null;
  const i = Math.floor(random() * targets.length);
  let j = Math.floor(random() * (targets.length - 1));
  if (j >= i) j++;
  const a = targets[i] as T;
  const b = targets[j] as T;
  const cost = (t: T) => {
    const s = state(t.id);
    return (latencyNow(s, now) ?? 0) * (s.inflight + 1);
  };
  return cost(a) <= cost(b) ? a : b;
}

/**
 * How long a latency estimate takes to fall to 1/e of itself without new samples (Finagle's
 * peak-EWMA default). Without it, a target's one slow answer (a passing stall) stayed its
 * latency for the isolate's life: power of two choices never picked it again, so no sample
 * could ever bring it down, and a pool of two sent everything to the other target.
 */
export const LATENCY_DECAY_MS = 10_000;

/**
 * The estimate as of `now`: it decays towards zero while the target goes unsampled, so a
 * target shunned for a slow answer is tried again once the others' answers outweigh it, and a
 * new sample then says what it is now.
 */
export function latencyNow(s: Pick<TargetState, 'latencyMs' | 'latencyAt'>, now: number): number | null {
  if (s.latencyMs === null) return null;
  const idle = Math.max(0, now - (s.latencyAt ?? now));
  return s.latencyMs * Math.exp(-idle / LATENCY_DECAY_MS);
}

/**
 * Peak-EWMA: a slower sample is taken at once, a faster one decays in, so a target that
 * turns slow is avoided immediately and trusted again gradually.
 */
export function peakEwma(previous: number | null, sample: number, alpha = 0.3): number {
  if (previous === null || sample > previous) return sample;
  return previous + alpha * (sample - previous);
}
