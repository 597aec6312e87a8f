import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env';
import type { KeyLimits, KeyUsage } from '../worker/schemas/limits';
import { runMigrations } from './agent-schema';
import { CHARGES_ASK_MIGRATION, CHARGES_MIGRATION, LimiterCharges, type RaiseAnswer } from './key-limiter-charges';
import { MCP_CALLS_MIGRATION, McpCalls, type McpCall, type McpCancelMatch } from './key-limiter-calls';
import { budgetPeriod, gcra, rescaleTat, tightest, type PolicyState } from './key-limiter-policy';
import { Sql } from './sql';
import { askAgent, askStreams } from './limiter-asks';
import { STREAM_LEASES_MIGRATION, StreamLeases, type StreamLeaseAnswer, type StreamLeaseRequest } from './key-stream-leases';
import { rpcMethodMissing } from '../worker/lib/rpc-missing';

/** A concurrency slot or token reservation not released within this is given back (a crashed isolate). */
export const LEASE_MS = 330_000;

export interface AdmitRequest {
  limits: KeyLimits;
  /** The request calls an upstream: concurrency and budgets apply to it. */
  upstream: boolean;
  /** Tokens to reserve against the token budget until the request settles. */
  tokens: number;
  /**
   * The least reservation the request can run with (default: all of `tokens`). Lower when part
   * of the estimate is the gateway's own guess (a chat without max_tokens), so a budget smaller
   * than the guess is not refused for it: the reservation shrinks to what is left instead.
   */
  minTokens?: number;
  /**
   * An answer the gateway may already have (a repeated Idempotency-Key, a response-cache hit)
   * could serve the request without upstream work. When only its budget refuses it, the rate
   * windows are checked (and counted) too, and a refusal they pass says `replayable`: worth
   * looking for that answer, a look-up bounded by the rate windows like any request.
   */
  replayable?: boolean;
  /**
   * The reservation outlives the request (an execution, which may run after its 202): it is
   * held under the lease's id until the agent settles it (`settleExecution`), not settled with
   * the lease, unless the request is given back.
   */
  holdTokens?: boolean;
}

export type Admission =
  | {
      ok: true;
      leaseId: string | null;
      /** The limit closest to refusing, this request counted. */
      policy: PolicyState | null;
      /**
       * The same once the gateway refused the request (a 4xx, a JSON-RPC refusal) and its lease
       * gave the budgets back: rate windows and concurrency still count it (it was still load).
       */
      givenBackPolicy: PolicyState | null;
      reservedTokens: number;
      /** The token budget once this request's reservation is taken: what is still free, and when the period ends (null: no token budget). */
      tokenBudget: { free: number; reset: number } | null;
    }
  | Refusal;

export interface Refusal {
  ok: false;
  code: 'rate_limited' | 'budget_exhausted';
  message: string;
  limit: string;
  retryAfter: number;
  policy: PolicyState;
  /** Only the budget refused a `replayable` request: the rate windows admitted (and counted) it. */
  replayable?: boolean;
}

/** A budget's answer for one request: its refusal, or what admitting it takes. */
type BudgetCheck =
  | { ok: false; refusal: Refusal }
  | { ok: true; period: ReturnType<typeof budgetPeriod>; reserve: number; tokenState: PolicyState | null; requestsState: PolicyState | null };

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE budget (
    period    TEXT PRIMARY KEY,
    requests  INTEGER NOT NULL DEFAULT 0,
    tokens    INTEGER NOT NULL DEFAULT 0,
    reserved  INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE leases (
    id          TEXT PRIMARY KEY,
    expires_at  INTEGER NOT NULL,
    slot        INTEGER NOT NULL,
    period      TEXT,
    reserved    INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX leases_by_expiry ON leases(expires_at);
  `,
  CHARGES_MIGRATION,
  CHARGES_ASK_MIGRATION,
  MCP_CALLS_MIGRATION,
  STREAM_LEASES_MIGRATION,
];

interface BudgetRow extends Record<string, string | number> {
  period: string;
  requests: number;
  tokens: number;
  reserved: number;
}

/**
 * The limiter of one API key (named `key:<id>`; rate shards `key:<id>:r<n>`). One object is
 * single-threaded and every method below runs without an `await`, so a check and the count it
 * guards are one atomic step: 50 concurrent requests against a budget of 10 admit exactly 10.
 * Rate windows (GCRA) live in memory: losing them on eviction (only after the object is idle)
 * is lenient by at most one burst. Concurrency leases and budgets are in SQLite.
 */
export class KeyLimiterDO extends DurableObject<Env> {
  private readonly sql: Sql;
  private readonly charges: LimiterCharges;
  private readonly mcpCalls: McpCalls;
  private readonly streams: StreamLeases;
  /** Theoretical arrival time per rate window ('s', 'm'), with the limit it was computed for. */
  private readonly tat = new Map<string, { tat: number; limit: number }>();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = new Sql(ctx.storage.sql);
    this.charges = new LimiterCharges(this.sql, ctx.storage);
    this.mcpCalls = new McpCalls(this.sql);
    this.streams = new StreamLeases(this.sql, ctx.storage, (agent, keyId) => askStreams(env, agent, keyId));
    void ctx.blockConcurrencyWhile(async () => runMigrations(this.sql, ctx.storage, MIGRATIONS));
  }

  /** Admits or refuses one request, reserving what it may use (rate, slot, budget) at once. */
  admit(request: AdmitRequest): Admission {
    const now = Date.now();
    const { limits } = request;
    const states: PolicyState[] = [];
    const needsSlot = request.upstream && limits.concurrency !== undefined;
    const budget = request.upstream ? limits.budget : undefined;
    if (needsSlot || budget) this.expireLeases(now, budget?.tokens !== undefined);

    // A used-up budget first: it keeps the request out until the next period, far longer than a
    // rate window or a slot, so it is the refusal (and the Retry-After) the client must hear.
    const checked = budget ? this.checkBudget(budget, request, now) : null;
    if (checked && !checked.ok) {
      if (!request.replayable) return checked.refusal;
      const rates = this.checkWindows(limits, now);
      if (!rates.ok) return checked.refusal;
      for (const [name, tat, limit] of rates.passed) this.tat.set(name, { tat, limit });
      return { ...checked.refusal, replayable: true };
    }

    const rates = this.checkWindows(limits, now);
    if (!rates.ok) return rates.refusal;
    const { passed } = rates;
    states.push(...rates.states);

    if (needsSlot && limits.concurrency !== undefined) {
      const inFlight = this.inFlight();
      if (inFlight >= limits.concurrency) {
        return { ok: false, code: 'rate_limited', limit: 'concurrency', message: `${limits.concurrency} requests already in flight for this key`, retryAfter: 1, policy: { limit: limits.concurrency, remaining: 0, reset: 1 } };
      }
      states.push({ limit: limits.concurrency, remaining: limits.concurrency - inFlight - 1, reset: 1 });
    }
    const period = checked?.period ?? null;
    const reserve = checked?.reserve ?? 0;
    const tokenState = checked?.tokenState ?? null;
    const requestsState = checked?.requestsState ?? null;
    if (requestsState) states.push(requestsState);
    // Token counts are in another unit than requests: they speak for the key only when nothing
    // counted in requests limits it.
    if (states.length === 0 && tokenState) states.push(tokenState);
    // Given back, this request leaves the budgets as they were before it.
    const givenBack = states.map((state) =>
      state === requestsState ? { ...state, remaining: state.remaining + 1 } : state === tokenState ? { ...state, remaining: state.remaining + reserve } : state);

    // Every check passed: take what was checked, in one synchronous transaction.
    for (const [name, tat, limit] of passed) this.tat.set(name, { tat, limit });
    let leaseId: string | null = null;
    this.ctx.storage.transactionSync(() => {
      if (period) this.sql.run('UPDATE budget SET requests = requests + 1, reserved = reserved + ? WHERE period = ?', reserve, period.key);
      // Every budgeted request gets a lease, so one the gateway refuses can be given back.
      if (needsSlot || period) {
        leaseId = crypto.randomUUID();
        const held = request.holdTokens === true && period !== null && reserve > 0;
        this.sql.run('INSERT INTO leases (id, expires_at, slot, period, reserved) VALUES (?, ?, ?, ?, ?)', leaseId, now + LEASE_MS, needsSlot ? 1 : 0, period?.key ?? null, held ? 0 : reserve);
        if (held && period) this.charges.hold(leaseId, period.key, reserve, now);
      }
    });
    const tokenBudget = tokenState && { free: tokenState.remaining, reset: tokenState.reset };
    return { ok: true, leaseId, policy: tightest(states), givenBackPolicy: tightest(givenBack), reservedTokens: reserve, tokenBudget };
  }

  /** Whether the rate windows admit one more request now, and what taking it would set. */
  private checkWindows(limits: KeyLimits, now: number): { ok: false; refusal: Refusal } | { ok: true; passed: [string, number, number][]; states: PolicyState[] } {
    const windows: [string, number | undefined, number][] = [['s', limits.perSecond, 1_000], ['m', limits.perMinute, 60_000]];
    const passed: [string, number, number][] = [];
    const states: PolicyState[] = [];
    for (const [name, limit, periodMs] of windows) {
      if (limit === undefined) continue;
      const stored = this.tat.get(name);
      const check = gcra(stored && rescaleTat(stored.tat, now, stored.limit, limit, periodMs), now, limit, periodMs);
      if (!check.allowed) {
        return { ok: false, refusal: { ok: false, code: 'rate_limited', limit: name === 's' ? 'perSecond' : 'perMinute', message: `rate limit of ${limit} requests per ${name === 's' ? 'second' : 'minute'} exceeded`, retryAfter: check.retryAfter, policy: check.state } };
      }
      passed.push([name, check.tat, limit]);
      states.push(check.state);
    }
    return { ok: true, passed, states };
  }

  /**
   * The budget refusal an upstream request would get now, if any, without taking anything: for
   * a sharded key whose rate shard refused it, so a used-up budget is still the answer given.
   */
  budgetRefusal(request: AdmitRequest): Refusal | null {
    const budget = request.upstream ? request.limits.budget : undefined;
    if (!budget) return null;
    const now = Date.now();
    this.expireLeases(now, budget.tokens !== undefined);
    const checked = this.checkBudget(budget, request, now);
    return checked.ok ? null : checked.refusal;
  }

  /** Whether the period's budget has room for `request`, and what admitting it would reserve. */
  private checkBudget(budget: NonNullable<KeyLimits['budget']>, request: AdmitRequest, now: number): BudgetCheck {
    const period = budgetPeriod(budget.period, now);
    const row = this.budgetRow(period.key, now);
    const resetIn = Math.max(1, Math.ceil((period.end - now) / 1000));
    if (budget.requests !== undefined && row.requests >= budget.requests) {
      return { ok: false, refusal: { ok: false, code: 'budget_exhausted', limit: 'budget.requests', message: `request budget of ${budget.requests} per ${budget.period} is used up`, retryAfter: resetIn, policy: { limit: budget.requests, remaining: 0, reset: resetIn } } };
    }
    let reserve = budget.tokens !== undefined ? Math.max(0, Math.ceil(request.tokens)) : 0;
    let tokenState: PolicyState | null = null;
    if (budget.tokens !== undefined) {
      const free = budget.tokens - row.tokens - row.reserved;
      const least = Math.min(reserve, Math.max(0, Math.ceil(request.minTokens ?? reserve)));
      if (row.tokens >= budget.tokens || least > free) {
        const message = row.tokens >= budget.tokens
          ? `token budget of ${budget.tokens} per ${budget.period} is used up`
          : `this request needs ${least} tokens of the token budget of ${budget.tokens} per ${budget.period}; ${Math.max(0, free)} are free (${row.tokens} used, ${row.reserved} reserved by requests in flight)`;
        return { ok: false, refusal: { ok: false, code: 'budget_exhausted', limit: 'budget.tokens', message, retryAfter: resetIn, policy: { limit: budget.tokens, remaining: Math.max(0, free), reset: resetIn } } };
      }
      reserve = Math.min(reserve, free);
      tokenState = { limit: budget.tokens, remaining: free - reserve, reset: resetIn };
    }
    const requestsState = budget.requests === undefined ? null : { limit: budget.requests, remaining: budget.requests - row.requests - 1, reset: resetIn };
    return { ok: true, period, reserve, tokenState, requestsState };
  }

  /**
   * Ends a lease: frees its slot and settles its token reservation with what the request used
   * (`tokens`), or with the reservation itself when the usage is unknown (null). A request the
   * gateway `refused` (a 4xx: it did no work) is not counted against the request budget either.
   * Idempotent.
   */
  release(leaseId: string, tokens: number | null, refused = false): void {
    this.ctx.storage.transactionSync(() => {
      this.settle(leaseId, tokens, refused);
      // A refused execution never ran: the reservation it held is given back too.
      if (refused) this.charges.settle(leaseId, 0);
    });
  }

  /**
   * Frees a lease's concurrency slot and keeps the rest: its client went away, so it is no
   * longer in flight, while its work goes on and `release` still settles its budget with what
   * it came to. Idempotent; a released lease is not touched.
   */
  freeSlot(leaseId: string): void {
    this.sql.run('UPDATE leases SET slot = 0 WHERE id = ?', leaseId);
  }

  /**
   * Settles the token reservation an execution held (`holdTokens`) with what it used, once
   * it has ended: called by the agent that ran it, retried until it lands. Idempotent by the
   * reservation's id; false when there was nothing (left) to settle.
   */
  settleExecution(chargeId: string, tokens: number): boolean {
    return this.ctx.storage.transactionSync(() => this.charges.settle(chargeId, tokens));
  }

  /**
   * Raises execution reservation `chargeId` to `total` tokens: its agent counted what the run
   * will send (instructions, context, history). With `budget`, the key's token budget the
   * execution was admitted under, the raise must fit what the period has free now, checked and
   * taken in one step (the single writer); the agent refuses the execution when it does not.
   */
  raiseCharge(chargeId: string, total: number, budget?: number): RaiseAnswer {
    return this.ctx.storage.transactionSync(() => this.charges.raise(chargeId, total, budget));
  }

  /**
   * The edge's call carrying execution reservation `chargeId` failed without an answer from
   * the agent (`agent`: its object's id), which may or may not have received it: that agent is
   * asked in a minute, from the alarm, and a reservation it never received is given back
   * instead of being charged in full when it expires.
   */
  async doubtCharge(chargeId: string, agent: string): Promise<void> {
    const at = this.ctx.storage.transactionSync(() => this.charges.doubt(chargeId, agent, Date.now()));
    if (at === null) return;
    const alarm = await this.ctx.storage.getAlarm();
    if (alarm === null || alarm > at) await this.ctx.storage.setAlarm(at);
  }

  override async alarm(): Promise<void> {
    await Promise.all(this.charges.toAsk(Date.now()).map(async ({ id, agent }) => {
      try {
        const held = await askAgent(this.env, agent, id);
        this.ctx.storage.transactionSync(() => this.charges.answered(id, held, Date.now()));
      } catch (error) {
        // An agent of a release before this question (a gradual deployment) cannot answer it:
        // its reservation is left held, settled by it or charged at expiry, as that release's were.
        if (rpcMethodMissing(error)) return void this.ctx.storage.transactionSync(() => this.charges.answered(id, true, Date.now()));
        this.charges.askAgain(id, Date.now());
        console.error(JSON.stringify({ level: 'error', msg: 'could not ask an agent about a token reservation; asked again later', chargeId: id, error: String(error) }));
      }
    }));
    const next = this.charges.nextAsk();
    if (next !== null) await this.ctx.storage.setAlarm(next);
  }

  /** Registers a waiting MCP `execute_intent` of the key (durable/key-limiter-calls.ts); true: its cancel came first, start nothing. */
  mcpCallStarted(call: McpCall): boolean {
    return this.ctx.storage.transactionSync(() => this.mcpCalls.started(call, Date.now()));
  }

  /** A registered MCP call ended. */
  mcpCallEnded(executionId: string): void {
    this.mcpCalls.ended(executionId);
  }

  /** The waiting MCP call a `notifications/cancelled` of the key names, if exactly one. */
  mcpCancel(scope: string, requestId: string): McpCancelMatch {
    return this.ctx.storage.transactionSync(() => this.mcpCalls.cancel(scope, requestId, Date.now()));
  }

  /** The key's stream leases across agents, event and A2A streams (durable/key-stream-leases.ts): taken before a stream opens, given back when its agent refused it. */
  takeStreamLease(request: StreamLeaseRequest): Promise<StreamLeaseAnswer> { return this.streams.take(request, Date.now()); }
  releaseStreamLease(leaseId: string): void { this.streams.release(leaseId); }

  /** What the key has used in the current period, and its requests in flight. */
  usage(limits: KeyLimits): Omit<KeyUsage, 'limits'> {
    const now = Date.now();
    this.expireLeases(now, limits.budget?.tokens !== undefined);
    const inFlight = limits.concurrency === undefined ? null : this.inFlight();
    if (!limits.budget) return { inFlight, budget: null };
    const period = budgetPeriod(limits.budget.period, now);
    const row = this.sql.one<BudgetRow>('SELECT * FROM budget WHERE period = ?', period.key);
    return {
      inFlight,
      budget: {
        period: limits.budget.period,
        periodStart: new Date(period.start).toISOString(),
        resetsAt: new Date(period.end).toISOString(),
        requests: row?.requests ?? 0,
        tokens: row?.tokens ?? 0,
        reservedTokens: row?.reserved ?? 0,
      },
    };
  }

  private inFlight(): number {
    return this.sql.one<{ n: number }>('SELECT count(*) AS n FROM leases WHERE slot = 1')?.n ?? 0;
  }

  /**
   * The period's row, created on first use; periods that are over are dropped once nothing
   * refers to them. The current day's and month's both stay, whichever the budget counts in
   * now: a budget whose period is changed and changed back goes on from what it had used.
   */
  private budgetRow(key: string, now: number): BudgetRow {
    const row = this.sql.one<BudgetRow>('SELECT * FROM budget WHERE period = ?', key);
    if (row) return row;
    this.ctx.storage.transactionSync(() => {
      this.sql.run(
        'DELETE FROM budget WHERE period NOT IN (?, ?, ?) AND period NOT IN (SELECT period FROM leases WHERE period IS NOT NULL) AND period NOT IN (SELECT period FROM charges)',
        key, budgetPeriod('day', now).key, budgetPeriod('month', now).key,
      );
      this.sql.run('INSERT INTO budget (period) VALUES (?)', key);
    });
    return { period: key, requests: 0, tokens: 0, reserved: 0 };
  }

  /** Leases of requests that never reported back: free the slot, charge the reservation; `tokens`: executions' reservations too. */
  private expireLeases(now: number, tokens: boolean): void {
    if (tokens) this.charges.expire(now);
    const expired = this.sql.all<{ id: string }>('SELECT id FROM leases WHERE expires_at <= ?', now);
    if (expired.length === 0) return;
    this.ctx.storage.transactionSync(() => {
      for (const { id } of expired) this.settle(id, null);
    });
  }

  private settle(leaseId: string, tokens: number | null, refused = false): void {
    const lease = this.sql.one<{ period: string | null; reserved: number }>('DELETE FROM leases WHERE id = ? RETURNING period, reserved', leaseId);
    if (!lease || lease.period === null) return;
    const used = tokens === null ? lease.reserved : Math.max(0, Math.ceil(tokens));
    this.sql.run('UPDATE budget SET reserved = max(0, reserved - ?), tokens = tokens + ?, requests = max(0, requests - ?) WHERE period = ?', lease.reserved, used, refused ? 1 : 0, lease.period);
  }
}
