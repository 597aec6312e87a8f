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
  private probeInFlight = false;
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
    return state === 'closed' || (state === 'half-open' && !this.probeInFlight);
  }

  /** Called when a request is sent: takes the probe slot when half-open. */
  acquire(now = Date.now()): void {
    if (this.current(now) === 'half-open') {
      this.state = 'half-open';
      this.probeInFlight = true;
    }
  }

  success(now = Date.now()): void {
    // Closing starts a new window: the failures that opened the circuit would otherwise still
    // count for up to `windowMs`, and one failure right after recovery would reopen it.
    if (this.state !== 'closed') this.outcomes = [];
    this.record(now, true);
    this.consecutiveFailures = 0;
    this.probeInFlight = false;
    this.state = 'closed';
  }

  failure(now = Date.now()): void {
    this.record(now, false);
    this.consecutiveFailures++;
    this.lastFailureAt = now;
    const wasProbe = this.probeInFlight || this.state === 'half-open';
    this.probeInFlight = false;
    if (wasProbe || this.consecutiveFailures >= this.options.failureThreshold || this.errorRateExceeded()) {
      this.state = 'open';
      this.openedAt = now;
    }
  }

  /** A request that ended without telling us anything about the target (client cancel). */
  release(): void {
    this.probeInFlight = false;
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
