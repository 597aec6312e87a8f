/**
 * Pure parts of a key's limiter: GCRA rate windows and UTC budget periods. No storage, no
 * clock: the object passes `now`, so these are unit-testable.
 */

/** One limit as the RateLimit-* headers describe it: seconds until it is full again. */
export interface PolicyState {
  limit: number;
  remaining: number;
  reset: number;
}

export interface RateCheck {
  allowed: boolean;
  /** The theoretical arrival time to store if the request is admitted. */
  tat: number;
  /** Seconds until one more request fits (refused only). */
  retryAfter: number;
  state: PolicyState;
}

/**
 * GCRA (generic cell rate algorithm) for `limit` requests per `periodMs`: each request moves
 * the theoretical arrival time (TAT) on by periodMs/limit; a request is admitted while the TAT
 * stays within one period of now. That allows a burst of `limit`, then a steady rate, with one
 * number of state per window and no boundary doubling (unlike fixed windows).
 */
export function gcra(tat: number | undefined, now: number, limit: number, periodMs: number): RateCheck {
  const interval = periodMs / limit;
  const start = Math.max(tat ?? now, now);
  const next = start + interval;
  if (next - now <= periodMs) {
    const remaining = Math.floor((periodMs - (next - now)) / interval + 1e-9);
    return { allowed: true, tat: next, retryAfter: 0, state: { limit, remaining, reset: Math.ceil((next - now) / 1000) } };
  }
  const retryAfter = Math.max(1, Math.ceil((next - periodMs - now) / 1000));
  return { allowed: false, tat: start, retryAfter, state: { limit, remaining: 0, reset: Math.ceil((start - now) / 1000) } };
}

/**
 * A window's TAT after its limit changed from `from` to `to`: the requests it still counts
 * stay counted (one request per old interval becomes one per new interval), so raising a
 * limit takes effect at once and lowering it does not forgive what was already used.
 */
export function rescaleTat(tat: number | undefined, now: number, from: number, to: number, periodMs: number): number | undefined {
  if (tat === undefined || from === to || tat <= now) return tat;
  const outstanding = (tat - now) / (periodMs / from);
  return now + outstanding * (periodMs / to);
}

export type BudgetPeriodName = 'day' | 'month';

/** The UTC calendar period containing `now`: its key (`d:2026-11-26`, `m:2026-11`) and bounds. */
export function budgetPeriod(period: BudgetPeriodName, now: number): { key: string; start: number; end: number } {
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  if (period === 'day') {
    const start = Date.UTC(y, m, d.getUTCDate());
    return { key: `d:${new Date(start).toISOString().slice(0, 10)}`, start, end: start + 86_400_000 };
  }
  const start = Date.UTC(y, m, 1);
  return { key: `m:${new Date(start).toISOString().slice(0, 7)}`, start, end: Date.UTC(y, m + 1, 1) };
}

/** The policy a response should report: the one closest to refusing (least remaining). */
export function tightest(states: readonly PolicyState[]): PolicyState | null {
  let best: PolicyState | null = null;
  for (const s of states) if (!best || s.remaining < best.remaining || (s.remaining === best.remaining && s.reset > best.reset)) best = s;
  return best;
}
