export type CircuitState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  /** Consecutive failures that open the circuit. */
  failureThreshold: number;
  /** Error rate over the window that opens it, once the window has `minRequests`. */
  errorRate: number;
  windowMs: number;
  minRequests: number;
  /** Time an open circuit waits before letting one probe through (half-open). */
  cooldownMs: number;
}

/**
 * The half-open probe slot, held: handed to the request that took it, and the only thing that
 * gives the slot back. Each taking makes a new one, so a request that did not take the slot
 * (one sent while the circuit was closed, or sent anyway when no target was healthy) never
 * frees it under the probe still out.
 */
export type ProbeSlot = { readonly takenAt: number };

export const DEFAULT_BREAKER: BreakerOptions = { failureThreshold: 5, errorRate: 0.5, windowMs: 30_000, minRequests: 10, cooldownMs: 10_000 };

/**
 * Passive health of one target: opens on consecutive failures or a high error rate over a
 * window, lets a single probe through after a cooldown (half-open), closes on its success
 * with an empty window.
 */
export class CircuitBreaker {
  private state: CircuitState = 'closed';
  private consecutiveFailures = 0;
  private openedAt = 0;
  /** The probe out while half-open (see ProbeSlot); null when none is. */
  private probe: ProbeSlot | null = null;
  private outcomes: { at: number; ok: boolean }[] = [];
  lastFailureAt = 0;

  constructor(private readonly options: BreakerOptions = DEFAULT_BREAKER) {}

  current(now = Date.now()): CircuitState {
    if (this.state === 'open' && now - this.openedAt >= this.options.cooldownMs) return 'half-open';
    return this.state;
  }

  /** Whether a request may go to this target now (without taking the half-open probe slot). */
  available(now = Date.now()): boolean {
    const state = this.current(now);
    return state === 'closed' || (state === 'half-open' && this.probe === null);
  }

  /**
   * Called when a request is sent: takes the probe slot when half-open and free, and returns it
   * (to pass to `failure` or `release`); null when this request is no probe.
   */
  acquire(now = Date.now()): ProbeSlot | null {
    if (this.current(now) !== 'half-open' || this.probe !== null) return null;
    this.state = 'half-open';
    this.probe = { takenAt: now };
    return this.probe;
  }

  /** Whatever request it was: a closed circuit has no probe, so a probe still out holds nothing. */
  success(now = Date.now()): void {
    // Closing starts a new window: the failures that opened the circuit would otherwise still
    // count for up to `windowMs`, and one failure right after recovery would reopen it.
    if (this.state !== 'closed') this.outcomes = [];
    this.record(now, true);
    this.consecutiveFailures = 0;
    this.probe = null;
    this.state = 'closed';
  }

  /**
   * `slot`: what `acquire` returned for this request. A failure of whichever request while
   * half-open reopens the circuit, but only the probe's own gives the slot back: a probe still out keeps it, so the
   * next cooldown lets no second probe through beside it.
   */
  failure(now = Date.now(), slot: ProbeSlot | null = null): void {
    this.record(now, false);
    this.consecutiveFailures++;
    this.lastFailureAt = now;
    const wasProbe = (slot !== null && slot === this.probe) || this.state === 'half-open';
    if (slot !== null && slot === this.probe) this.probe = null;
    if (wasProbe || this.consecutiveFailures >= this.options.failureThreshold || this.errorRateExceeded()) {
      this.state = 'open';
      this.openedAt = now;
    }
  }

  /**
   * A request that ended without telling anything about the target (cancelled): gives the
   * probe slot back if it is the one it took, and leaves the circuit as it is (half-open: the
   * next request probes).
   */
  release(slot: ProbeSlot | null): void {
    if (slot !== null && slot === this.probe) this.probe = null;
  }

  private record(now: number, ok: boolean): void {
    this.outcomes.push({ at: now, ok });
    const horizon = now - this.options.windowMs;
    while (this.outcomes.length > 0 && ((this.outcomes[0]?.at ?? now) < horizon || this.outcomes.length > 200)) this.outcomes.shift();
  }

  private errorRateExceeded(): boolean {
    if (this.outcomes.length < this.options.minRequests) return false;
    const failures = this.outcomes.filter((o) => !o.ok).length;
    return failures / this.outcomes.length >= this.options.errorRate;
  }
}
