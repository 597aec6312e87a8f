import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { pickTarget, peakEwma, smoothWeighted, START_WINDOW, startAtRandom, type BalancedTarget, type RoundRobins, type TargetState } from '../../worker/pools/balancer';
import { CircuitBreaker, DEFAULT_BREAKER } from '../../worker/pools/circuit-breaker';
import { PoolRuntime, type Lease } from '../../worker/pools/runtime';
import type { StoredPool } from '../../worker/schemas/pool';
import { healthOutcome } from '../../worker/upstream/pool';
import { UpstreamError } from '../../worker/upstream/types';

type T = BalancedTarget;

function states(ids: string[]): Map<string, TargetState> {
  return new Map(ids.map((id) => [id, { breaker: new CircuitBreaker(), inflight: 0, latencyMs: null, probeDown: false, retryAfterUntil: 0 }]));
}

function picker(targets: T[], strategy: 'weighted-round-robin' | 'least-inflight' | 'latency', s = states(targets.map((t) => t.id)), regions: string[] = []) {
  const wrr: RoundRobins = new Map();
  return {
    s,
    pick: (exclude: Set<string> = new Set(), random?: () => number) =>
      pickTarget({ targets, state: (id) => s.get(id) as TargetState, strategy, regions, exclude, wrr, ...(random && { random }) }),
  };
}

function tally(n: number, pick: () => T | null): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const id = pick()?.id ?? 'none';
    counts[id] = (counts[id] ?? 0) + 1;
  }
  return counts;
}

describe('weighted round robin (smooth)', () => {
  it('gives weights 3:1 a 3:1 split within a few percent over 1000 requests', () => {
    const { pick } = picker([{ id: 'a', weight: 3, priority: 0 }, { id: 'b', weight: 1, priority: 0 }], 'weighted-round-robin');
    const counts = tally(1000, () => pick());
    expect((counts.a ?? 0) / 1000).toBeCloseTo(0.75, 1);
    expect(Math.abs((counts.a ?? 0) - 750)).toBeLessThanOrEqual(20);
  });

  it('interleaves instead of bursting: 3:1 gives a a b a', () => {
    const wrr = new Map<string, number>();
    const ts = [{ id: 'a', weight: 3, priority: 0 }, { id: 'b', weight: 1, priority: 0 }];
    expect(Array.from({ length: 4 }, () => smoothWeighted(ts, wrr)?.id)).toEqual(['a', 'a', 'b', 'a']);
  });

  describe("a new runtime's starting point", () => {
    const ts = [{ id: 'a', weight: 3, priority: 0 }, { id: 'b', weight: 2, priority: 0 }, { id: 'c', weight: 1, priority: 0 }];
    const firstPicks = (random: number, n: number) => {
      const wrr = new Map<string, number>();
      startAtRandom(ts, wrr, () => random);
      return Array.from({ length: n }, () => smoothWeighted(ts, wrr)?.id);
    };

    it('is anywhere in the cycle, so isolates that each send a few requests do not all send them to the same target', () => {
      const firsts = new Set([0, 0.2, 0.4, 0.6, 0.8, 0.99].map((r) => firstPicks(r, 1)[0]));
      expect(firsts).toEqual(new Set(['a', 'b', 'c']));
    });

    it('still splits every whole cycle exactly as the weights say, wherever it starts', () => {
      for (const r of [0, 0.17, 0.5, 0.83, 0.999]) {
        const counts: Record<string, number> = {};
        for (const id of firstPicks(r, 6 * 5)) counts[id as string] = (counts[id as string] ?? 0) + 1;
        expect(counts).toEqual({ a: 15, b: 10, c: 5 });
      }
    });

    it('is found within one cycle of the weights divided by their common factor: 32 targets of weight 1000 start as cheaply as of weight 1', () => {
      const many = Array.from({ length: 32 }, (_, i) => ({ id: `t${i}`, weight: 1000, priority: 0 }));
      let writes = 0;
      const wrr = new (class extends Map<string, number> {
        override set(key: string, value: number) {
          writes++;
          return super.set(key, value);
        }
      })();
      // The last point of the cycle. It used to be found by up to 32,000 picks over 32 targets
      // (some 30 ms of CPU, for each new set of targets picked among), where 32 picks make the
      // very same cycle: weights 1000:1000:… pick as 1:1:… do.
      startAtRandom(many, wrr, () => 0.999);
      expect(writes).toBeLessThanOrEqual(32 * 33);
      const next = Array.from({ length: 32 }, () => smoothWeighted(many, wrr)?.id);
      expect(new Set(next).size).toBe(32);
    });

    /** A Map that counts its writes: the work a start takes. */
    const countingMap = () =>
      new (class extends Map<string, number> {
        writes = 0;
        override set(key: string, value: number) {
          this.writes++;
          return super.set(key, value);
        }
      })();

    it('is found within a bounded number of picks whatever the weights: 32 targets of weights with no common factor start in O(targets)', () => {
      // 1000, 999, … 969: no common factor, a cycle of 31,504 picks. Walking a random part of it
      // took up to a million writes (some 30 ms of CPU) for each new set of targets picked among.
      const coprime = Array.from({ length: 32 }, (_, i) => ({ id: `t${i}`, weight: 1000 - i, priority: 0 }));
      for (const r of [0, 0.5, 0.999]) {
        const wrr = countingMap();
        startAtRandom(coprime, wrr, () => r);
        expect(wrr.writes, `start at ${r}`).toBeLessThanOrEqual(START_WINDOW * 33);
      }
    });

    it('starts a long cycle at a point whose first pick goes to each target by its weight, and splits every whole cycle after it exactly', () => {
      const ts4 = [{ id: 'a', weight: 7, priority: 0 }, { id: 'b', weight: 5, priority: 0 }, { id: 'c', weight: 3, priority: 0 }, { id: 'd', weight: 1000, priority: 0 }];
      const total = 1015; // a cycle longer than the window a start is drawn from
      const firsts: Record<string, number> = {};
      const draws = START_WINDOW * 4;
      for (let i = 0; i < draws; i++) {
        const wrr = new Map<string, number>();
        startAtRandom(ts4, wrr, () => (i + 0.5) / draws);
        const id = smoothWeighted(ts4, wrr)?.id as string;
        firsts[id] = (firsts[id] ?? 0) + 1;
      }
      // Smooth weighted round robin keeps every target within about one pick of its share at
      // every point of the cycle, so a start drawn from its first START_WINDOW picks gives each
      // target the first pick within a pick in START_WINDOW of its share.
      for (const t of ts4) expect(Math.abs((firsts[t.id] ?? 0) / draws - t.weight / total), t.id).toBeLessThanOrEqual(1 / START_WINDOW);
      expect(firsts.a).toBeGreaterThan(0);
      for (const r of [0, 0.37, 0.999]) {
        const wrr = new Map<string, number>();
        startAtRandom(ts4, wrr, () => r);
        const counts: Record<string, number> = {};
        for (let i = 0; i < 2 * total; i++) {
          const id = smoothWeighted(ts4, wrr)?.id as string;
          counts[id] = (counts[id] ?? 0) + 1;
        }
        expect(counts, `start at ${r}`).toEqual({ a: 14, b: 10, c: 6, d: 2000 });
      }
    });

    it("is a point of the cycle of the targets a pick chooses among: a tier's 1:1 primaries alternate from the first pick, whatever the standby's weight or a region", () => {
      const at = new Date().toISOString();
      const primaries = [{ id: 'a', kind: 'builtin' as const, weight: 1, priority: 0 }, { id: 'b', kind: 'builtin' as const, weight: 1, priority: 0 }];
      const pools: StoredPool['targets'][] = [
        [...primaries, { id: 's', kind: 'builtin', weight: 1000, priority: 1 }],
        // A region's targets, picked before the others of the tier.
        [...primaries.map((t) => ({ ...t, region: 'EU' })), { id: 'n', kind: 'builtin', weight: 5, priority: 0, region: 'NA' }],
      ];
      for (const targets of pools) {
        for (const r of [0, 0.2, 0.3613, 0.5, 0.7, 0.9]) {
          // The runtime starts its cycles at Math.random's point.
          const random = vi.spyOn(Math, 'random').mockReturnValue(r);
          try {
            const rt = new PoolRuntime('tn', { name: 'p', strategy: 'weighted-round-robin', targets, createdAt: at, updatedAt: at }, targets);
            const picks = Array.from({ length: 20 }, () => {
              const lease = rt.lease(['EU'], new Set());
              lease?.done('success');
              return lease?.target.id ?? 'none';
            });
            // Each pair of picks is one whole cycle of the two: it used to be a cycle of the whole
            // pool's, which could leave one primary some 500 picks behind the other.
            expect(tally(20, () => ({ id: picks.shift() ?? 'none', weight: 1, priority: 0 })), `${targets.map((t) => t.id).join()} at ${r}`).toEqual({ a: 10, b: 10 });
          } finally {
            random.mockRestore();
          }
        }
      }
    });
  });
});

describe('health, tiers and regions', () => {
  const tiers = [
    { id: 'p1', weight: 1, priority: 0 },
    { id: 'p2', weight: 1, priority: 0 },
    { id: 's1', weight: 1, priority: 1 },
  ];

  function open(s: Map<string, TargetState>, id: string) {
    const breaker = s.get(id)?.breaker as CircuitBreaker;
    for (let i = 0; i < 5; i++) breaker.failure();
  }

  it('uses the standby tier only when every primary is unhealthy, and releases it on recovery', () => {
    const { s, pick } = picker(tiers, 'weighted-round-robin');
    expect(Object.keys(tally(50, () => pick())).sort()).toEqual(['p1', 'p2']);
    open(s, 'p1');
    expect(Object.keys(tally(50, () => pick()))).toEqual(['p2']);
    open(s, 'p2');
    expect(Object.keys(tally(50, () => pick()))).toEqual(['s1']);
    s.get('p1')?.breaker.success();
    expect(Object.keys(tally(50, () => pick()))).toEqual(['p1']);
  });

  it('treats a target whose active probe failed as unhealthy', () => {
    const { s, pick } = picker(tiers, 'weighted-round-robin');
    (s.get('p1') as TargetState).probeDown = true;
    expect(Object.keys(tally(20, () => pick()))).toEqual(['p2']);
  });

  it('keeps a target waiting out its Retry-After out of the picks, a primary sending traffic to the standby tier', () => {
    const { s } = picker(tiers, 'weighted-round-robin');
    const t0 = 1_000_000;
    const wrr: RoundRobins = new Map();
    const pickAt = (now: number) => tally(20, () => pickTarget({ targets: tiers, state: (id) => s.get(id) as TargetState, strategy: 'weighted-round-robin', regions: [], exclude: new Set(), wrr }, now));
    (s.get('p1') as TargetState).retryAfterUntil = t0 + 5_000;
    expect(Object.keys(pickAt(t0))).toEqual(['p2']);
    (s.get('p2') as TargetState).retryAfterUntil = t0 + 3_000;
    expect(Object.keys(pickAt(t0))).toEqual(['s1']);
    expect(Object.keys(pickAt(t0 + 3_000))).toEqual(['p2']);
    expect(Object.keys(pickAt(t0 + 5_000)).sort()).toEqual(['p1', 'p2']);
  });

  it('when every target waits out a Retry-After, tries the one free soonest', () => {
    const { s } = picker(tiers, 'weighted-round-robin');
    const t0 = 1_000_000;
    for (const [id, until] of [['p1', t0 + 9_000], ['p2', t0 + 2_000], ['s1', t0 + 5_000]] as const) (s.get(id) as TargetState).retryAfterUntil = until;
    expect(pickTarget({ targets: tiers, state: (id) => s.get(id) as TargetState, strategy: 'latency', regions: [], exclude: new Set(), wrr: new Map() }, t0)?.id).toBe('p2');
  });

  it('prefers targets in the caller region and spills over when none is healthy', () => {
    const ts = [
      { id: 'eu', weight: 1, priority: 0, region: 'weur' },
      { id: 'us', weight: 1, priority: 0, region: 'enam' },
    ];
    const { s, pick } = picker(ts, 'weighted-round-robin', undefined, ['weur', 'EU']);
    expect(Object.keys(tally(20, () => pick()))).toEqual(['eu']);
    open(s, 'eu');
    expect(Object.keys(tally(20, () => pick()))).toEqual(['us']);
  });

  it('matches regions whatever their case', () => {
    const ts = [
      { id: 'na', weight: 1, priority: 0, region: 'na' },
      { id: 'dfw', weight: 1, priority: 0, region: 'dfw' },
      { id: 'eu', weight: 1, priority: 0, region: 'Weur' },
    ];
    expect(Object.keys(tally(20, () => picker(ts, 'weighted-round-robin', undefined, ['enam', 'NA']).pick()))).toEqual(['na']);
    expect(Object.keys(tally(20, () => picker(ts, 'weighted-round-robin', undefined, ['DFW']).pick()))).toEqual(['dfw']);
    expect(Object.keys(tally(20, () => picker(ts, 'weighted-round-robin', undefined, ['weur', 'EU']).pick()))).toEqual(['eu']);
  });

  it('moves a retry to a target not yet tried', () => {
    const { pick } = picker(tiers, 'weighted-round-robin');
    expect(pick(new Set(['p1']))?.id).toBe('p2');
    expect(pick(new Set(['p1', 'p2']))?.id).toBe('s1');
  });

  it('sends a retry back to a healthy target already tried rather than to one whose circuit is open', () => {
    const ts = [{ id: 'up', weight: 1, priority: 0 }, { id: 'open', weight: 1, priority: 0 }];
    const { s, pick } = picker(ts, 'weighted-round-robin');
    for (let i = 0; i < DEFAULT_BREAKER.failureThreshold; i++) s.get('open')?.breaker.failure();
    // 'up' answered one 503 (its circuit still closed): the retry goes to it again.
    expect(pick(new Set(['up']))?.id).toBe('up');
  });

  it('tries the least recently failed target when every circuit is open', () => {
    const { s, pick } = picker(tiers, 'weighted-round-robin');
    const t0 = 1_000_000;
    for (const [id, at] of [['p1', t0 + 300], ['p2', t0 + 100], ['s1', t0 + 200]] as const) {
      const breaker = s.get(id)?.breaker as CircuitBreaker;
      for (let i = 0; i < 5; i++) breaker.failure(at);
    }
    expect(pickTarget({ targets: tiers, state: (id) => s.get(id) as TargetState, strategy: 'latency', regions: [], exclude: new Set(), wrr: new Map() }, t0 + 400)?.id).toBe('p2');
    expect(pick()).not.toBeNull();
  });
});

describe('least-inflight and latency', () => {
  const ts = [
    { id: 'fast', weight: 1, priority: 0 },
    { id: 'slow', weight: 1, priority: 0 },
  ];

  it('least-inflight steers away from a target with requests piling up', () => {
    const { s, pick } = picker(ts, 'least-inflight');
    (s.get('slow') as TargetState).inflight = 5;
    expect(Object.keys(tally(20, () => pick()))).toEqual(['fast']);
  });

  it('latency (power of two choices on peak-EWMA) steers away from a slow target', () => {
    const { s, pick } = picker(ts, 'latency');
    (s.get('fast') as TargetState).latencyMs = 20;
    (s.get('slow') as TargetState).latencyMs = 800;
    expect(Object.keys(tally(50, () => pick()))).toEqual(['fast']);
  });

  it('peak-EWMA jumps up at once and decays down gradually', () => {
    expect(peakEwma(null, 100)).toBe(100);
    expect(peakEwma(100, 500)).toBe(500);
    const decayed = peakEwma(500, 100);
    expect(decayed).toBeLessThan(500);
    expect(decayed).toBeGreaterThan(100);
  });
});

describe('circuit breaker', () => {
  it('opens on consecutive failures, half-opens after the cooldown, closes on success', () => {
    const b = new CircuitBreaker({ failureThreshold: 3, errorRate: 1, windowMs: 30_000, minRequests: 100, cooldownMs: 1_000 });
    b.failure(0);
    b.failure(1);
    expect(b.current(2)).toBe('closed');
    b.failure(2);
    expect(b.current(3)).toBe('open');
    expect(b.available(500)).toBe(false);
    expect(b.current(1_100)).toBe('half-open');
    expect(b.available(1_100)).toBe(true);
    b.acquire(1_100);
    expect(b.available(1_101)).toBe(false); // one probe at a time
    b.success(1_200);
    expect(b.current(1_201)).toBe('closed');
  });

  it('re-opens when the half-open probe fails', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, errorRate: 1, windowMs: 30_000, minRequests: 100, cooldownMs: 1_000 });
    b.failure(0);
    b.acquire(1_500);
    b.failure(1_600);
    expect(b.current(1_700)).toBe('open');
  });

  it('opens on an error rate over the window even without a long streak', () => {
    const b = new CircuitBreaker({ failureThreshold: 100, errorRate: 0.5, windowMs: 10_000, minRequests: 10, cooldownMs: 1_000 });
    for (let i = 0; i < 9; i++) {
      if (i % 2 === 0) b.failure(i);
      else b.success(i);
    }
    expect(b.current(9)).toBe('closed'); // fewer than minRequests outcomes
    b.failure(10); // the failure that takes the window to 10 outcomes at 60 % errors
    expect(b.current(11)).toBe('open');
  });

  it('forgets the failures before it closed: one failure after recovery does not reopen it', () => {
    const b = new CircuitBreaker(DEFAULT_BREAKER);
    for (let i = 0; i < 5; i++) b.success(i);
    for (let i = 5; i < 10; i++) b.failure(i); // five in a row: open, with 5 of 10 failed in the window
    expect(b.current(10)).toBe('open');
    const probeAt = 10 + DEFAULT_BREAKER.cooldownMs;
    b.acquire(probeAt);
    b.success(probeAt + 1);
    expect(b.current(probeAt + 2)).toBe('closed');
    b.failure(probeAt + 3); // still inside the 30 s window of the failures that opened it
    expect(b.current(probeAt + 4)).toBe('closed');
    // A fresh streak still opens it as before.
    for (let i = 0; i < DEFAULT_BREAKER.failureThreshold - 1; i++) b.failure(probeAt + 5 + i);
    expect(b.current(probeAt + 20)).toBe('open');
  });

  it('lets only the request that took the half-open probe slot give it back', () => {
    const b = new CircuitBreaker({ failureThreshold: 1, errorRate: 1, windowMs: 30_000, minRequests: 100, cooldownMs: 1_000 });
    b.failure(0);
    const probe = b.acquire(1_500);
    expect(probe).not.toBeNull();
    // Sent anyway (no target was healthy): no probe, and its cancel frees nothing.
    const extra = b.acquire(1_510);
    expect(extra).toBeNull();
    b.release(extra);
    expect(b.available(1_520)).toBe(false);
    // A failure of that other request reopens the circuit; the probe still out keeps the slot.
    b.failure(1_530);
    expect(b.available(2_600)).toBe(false);
    expect(b.acquire(2_600)).toBeNull();
    // The probe's own cancel gives it back, and is no success: still half-open, the next request probes.
    b.release(probe);
    expect(b.current(2_610)).toBe('half-open');
    expect(b.available(2_610)).toBe(true);
    const second = b.acquire(2_620);
    expect(second).not.toBeNull();
    b.release(probe); // the first probe's slot, ended twice: the second probe keeps its own
    expect(b.available(2_630)).toBe(false);
    b.failure(2_640, second);
    expect(b.current(2_650)).toBe('open');
    expect(b.available(3_700)).toBe(true);
  });
});

describe('the half-open probe slot in the pool runtime', () => {
  const at = new Date().toISOString();
  const runtime = (targets: StoredPool['targets']) => {
    const pool: StoredPool = { name: 'p', strategy: 'weighted-round-robin', targets, createdAt: at, updatedAt: at };
    return new PoolRuntime('tn', pool, targets);
  };
  const builtin = (id: string, priority = 0) => ({ id, kind: 'builtin' as const, weight: 1, priority });
  /** Opened long enough ago that the cooldown is over: half-open now. */
  const halfOpen = (rt: PoolRuntime, id: string) => {
    const longAgo = Date.now() - 60_000;
    for (let i = 0; i < DEFAULT_BREAKER.failureThreshold; i++) rt.state(id).breaker.failure(longAgo);
  };
  const lease = (rt: PoolRuntime, endBy?: number): Lease => {
    const l = rt.lease([], new Set(), endBy);
    if (!l) throw new Error('no lease');
    return l;
  };

  it('is not freed by a cancelled lease taken before the circuit opened: the standby serves, no second probe', () => {
    const rt = runtime([builtin('a'), builtin('s', 1)]);
    const early = lease(rt); // a, its circuit closed (a stream whose client went away, say)
    expect(early.target.id).toBe('a');
    halfOpen(rt, 'a');
    const probe = lease(rt);
    expect(probe.target.id).toBe('a');
    expect(lease(rt).target.id).toBe('s');
    early.done('cancelled');
    const next = lease(rt);
    expect(next.target.id).toBe('s');
    expect(rt.state('a').inflight).toBe(1);
    // The probe's own end as cancelled frees its slot without closing the circuit.
    probe.done('cancelled');
    expect(rt.state('a').breaker.current()).toBe('half-open');
    expect(lease(rt).target.id).toBe('a');
  });

  it('is not freed by a cancelled request sent to the target when none was healthy', () => {
    const rt = runtime([builtin('only')]);
    lease(rt).done('success');
    halfOpen(rt, 'only');
    const probe = lease(rt);
    const extra = lease(rt); // nothing is healthy: tried rather than refused, but no probe
    expect(extra.target.id).toBe('only');
    extra.done('cancelled');
    expect(rt.state('only').breaker.available()).toBe(false);
    probe.done('success');
    expect(rt.state('only').breaker.current()).toBe('closed');
  });

  it('is no verdict when the outbound guard refused the call: it was never sent, so the circuit neither closes nor forgets', () => {
    const rt = runtime([builtin('a'), builtin('s', 1)]);
    halfOpen(rt, 'a');
    const probe = lease(rt);
    expect(probe.target.id).toBe('a');
    probe.done(healthOutcome(new UpstreamError('refused', 'upstream URL refused: 127.0.0.1 is a loopback address', false)), 1);
    expect(rt.state('a').breaker.current()).toBe('half-open');
    expect(rt.state('a').latencyMs).toBeNull();
    // The slot is free again: the next request probes the target, as after any cancel.
    expect(lease(rt).target.id).toBe('a');
  });

  it('is freed by the probe that ends past its deadline, as a cancel: the circuit stays half-open', () => {
    const rt = runtime([builtin('a'), builtin('s', 1)]);
    halfOpen(rt, 'a');
    const probe = lease(rt, Date.now() + 1_000);
    expect(probe.target.id).toBe('a');
    expect(rt.state('a').breaker.available()).toBe(false);
    rt.endOverdue(Date.now() + 2_000);
    expect(rt.state('a').inflight).toBe(0);
    expect(rt.state('a').breaker.current()).toBe('half-open');
    expect(rt.state('a').breaker.available()).toBe(true);
  });

  it('is ended by the next lease once its deadline has passed, and not before', () => {
    const rt = runtime([builtin('a')]);
    const soon = lease(rt, Date.now() + 50);
    const later = lease(rt, Date.now() + 60_000);
    expect(rt.state('a').inflight).toBe(2);
    lease(rt).done('success'); // before either deadline: both stay in flight
    expect(rt.state('a').inflight).toBe(2);
    const sleptUntil = Date.now() + 60;
    while (Date.now() < sleptUntil); // past the first deadline only
    lease(rt).done('success');
    expect(rt.state('a').inflight).toBe(1);
    soon.done('success'); // already ended as cancelled: no second count
    expect(rt.state('a').inflight).toBe(1);
    later.done('success');
    expect(rt.state('a').inflight).toBe(0);
  });
});

describe('the latency strategy over time', () => {
  const at = new Date().toISOString();
  const chat = (id: string) => ({ id, kind: 'builtin' as const, weight: 1, priority: 0 });
  const runtime = () => {
    const targets = [chat('a'), chat('b')];
    const pool: StoredPool = { name: 'p', strategy: 'latency', targets, createdAt: at, updatedAt: at };
    return new PoolRuntime('tn', pool, targets);
  };
  const call = (rt: PoolRuntime, ms: number): string => {
    const lease = rt.lease([], new Set());
    if (!lease) throw new Error('no lease');
    lease.done('success', ms);
    return lease.target.id;
  };
  beforeEach(() => { vi.useFakeTimers({ toFake: ['Date'] }); });
  afterEach(() => { vi.useRealTimers(); });

  it('tries a target again once its one slow answer is long past, instead of never calling it again', () => {
    const rt = runtime();
    // One answer slow (a passing stall), then the other target, unmeasured, is tried.
    const slow = call(rt, 2_000);
    const fast = call(rt, 20);
    expect(fast).not.toBe(slow);
    // Right after, the slow one is shunned: the other answers fast, call after call.
    for (let i = 0; i < 20; i++) expect(call(rt, 20)).toBe(fast);
    // A few minutes of fast answers later, the one slow sample no longer outweighs them: it
    // used to stay 2,000 ms for the isolate's life, and power of two choices never picked it.
    const picked = new Set<string>();
    for (let i = 0; i < 120; i++) {
      vi.setSystemTime(Date.now() + 2_000);
      picked.add(call(rt, 20));
    }
    expect(picked.has(slow)).toBe(true);
  });

  it('does not take a fast failure for a fast answer: a target shedding load with quick 503s is not preferred for them', () => {
    const rt = runtime();
    const timed = (id: string, outcome: 'success' | 'failure', ms: number) => {
      // The other target excluded, as a retry excludes the one it tried.
      const lease = rt.lease([], new Set([id === 'a' ? 'b' : 'a']));
      if (lease?.target.id !== id) throw new Error(`no lease on ${id}`);
      lease.done(outcome, ms);
    };
    timed('a', 'success', 300);
    timed('b', 'success', 100);
    // a refuses four calls in a millisecond each (one fewer than opens its circuit).
    for (let i = 0; i < 4; i++) timed('a', 'failure', 1);
    expect(rt.state('a').breaker.current()).toBe('closed');
    // It answers in 300 ms when it answers: b, at 100 ms, is still the faster.
    for (let i = 0; i < 10; i++) expect(call(rt, 100)).toBe('b');
  });
});
