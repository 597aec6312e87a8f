import type { Sql } from './sql';

/**
 * How long an execution's token reservation waits for its agent to settle it before the
 * reservation is charged: three times the longest execution deadline (300 s, queue time
 * included), so a settlement held up by a restart or an unreachable limiter still lands first.
 */
export const CHARGE_MS = 15 * 60_000;
/** How long an expired reservation is remembered, so a settlement that arrives later still corrects it. */
export const CHARGE_TOMBSTONE_MS = 7 * 86_400_000;

/** The limiter's table of execution reservations (its second migration). */
export const CHARGES_MIGRATION = `
  CREATE TABLE charges (
    id          TEXT PRIMARY KEY,
    period      TEXT NOT NULL,
    reserved    INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    charged     INTEGER
  );
  CREATE INDEX charges_by_expiry ON charges(expires_at);
  `;

/**
 * How long after the edge's call to an agent failed without an answer the limiter asks that
 * agent whether it holds the call's reservation: by then every delivery of the call has landed.
 */
export const ASK_AFTER_MS = 60_000;
/** How soon an agent that could not be asked is asked again. */
export const ASK_AGAIN_MS = 10 * 60_000;

/** The limiter's third migration: which agent to ask about a reservation, and when. */
export const CHARGES_ASK_MIGRATION = `
  ALTER TABLE charges ADD COLUMN agent TEXT;
  ALTER TABLE charges ADD COLUMN ask_at INTEGER;
  CREATE INDEX charges_by_ask ON charges(ask_at) WHERE ask_at IS NOT NULL;
  `;

/**
 * The limiter's answer to a raise: taken (or nothing to take), or refused; `free`, the tokens of
 * the budget free beyond every reservation once it was answered (null: no budget was checked).
 */
export interface RaiseAnswer {
  ok: boolean;
  free: number | null;
}

/**
 * Token reservations of executions, which outlive the HTTP request that admitted them (an
 * async execution runs after its 202): each is settled by the agent that ran the execution,
 * once, by its id (the admission's lease id). One that is not settled within CHARGE_MS is
 * charged in full and kept as a tombstone, so a late settlement replaces that charge with the
 * real one instead of being lost or counted twice. Runs inside the limiter's transactions.
 */
export class LimiterCharges {
  constructor(
    private readonly sql: Sql,
    private readonly storage: DurableObjectStorage,
  ) {}

  /** Holds `reserved` tokens of `period` (already added to its `reserved` count) for an execution. */
  hold(id: string, period: string, reserved: number, now: number): void {
    this.sql.run('INSERT INTO charges (id, period, reserved, expires_at) VALUES (?, ?, ?, ?)', id, period, reserved, now + CHARGE_MS);
  }

  /**
   * Settles reservation `id` with `tokens` used: frees the reservation and counts what was
   * used; after it expired, swaps the reservation it was charged for what was used. False
   * when there is nothing to settle (settled before, or its tombstone is gone).
   */
  settle(id: string, tokens: number): boolean {
    const row = this.sql.one<{ period: string; reserved: number; charged: number | null }>('DELETE FROM charges WHERE id = ? RETURNING period, reserved, charged', id);
    if (!row) return false;
    const used = Math.max(0, Math.ceil(tokens));
    if (row.charged === null) this.sql.run('UPDATE budget SET reserved = max(0, reserved - ?), tokens = tokens + ? WHERE period = ?', row.reserved, used, row.period);
    else this.sql.run('UPDATE budget SET tokens = max(0, tokens + ? - ?) WHERE period = ?', used, row.charged, row.period);
    return true;
  }

  /**
   * Raises reservation `id` to `total` tokens: its agent found that the run will send more
   * than the request the edge counted. With `budget` (the key's token budget), only when the
   * period has room for the difference beside everything else used and reserved: refused
   * otherwise, with what is free (the agent then refuses the execution). Checked and taken in
   * this one synchronous step, so concurrent executions cannot both take the same room.
   * Nothing to do once it holds `total` or was settled or charged at expiry (the settlement
   * counts what was used either way); idempotent.
   */
  raise(id: string, total: number, budget?: number): RaiseAnswer {
    const row = this.sql.one<{ period: string; reserved: number }>('SELECT period, reserved FROM charges WHERE id = ? AND charged IS NULL', id);
    const used = row && budget !== undefined ? this.sql.one<{ tokens: number; reserved: number }>('SELECT tokens, reserved FROM budget WHERE period = ?', row.period) : undefined;
    const free = budget === undefined ? null : budget - (used?.tokens ?? 0) - (used?.reserved ?? 0);
    const more = row ? Math.ceil(total) - row.reserved : 0;
    if (!row || more <= 0) return { ok: true, free };
    if (free !== null && more > free) return { ok: false, free: Math.max(0, free) };
    this.sql.run('UPDATE charges SET reserved = reserved + ? WHERE id = ?', more, id);
    this.sql.run('UPDATE budget SET reserved = reserved + ? WHERE period = ?', more, row.period);
    return { ok: true, free: free === null ? null : free - more };
  }

  /**
   * The edge's call carrying reservation `id` failed without the agent's answer: agent object
   * `agent` is to be asked whether it holds it. The time to ask, or null (nothing to ask about).
   */
  doubt(id: string, agent: string, now: number): number | null {
    const at = now + ASK_AFTER_MS;
    return this.sql.run('UPDATE charges SET agent = ?, ask_at = ? WHERE id = ? AND charged IS NULL', agent, at, id) > 0 ? at : null;
  }

  /** Reservations whose agent is due to be asked. */
  toAsk(now: number): { id: string; agent: string }[] {
    return this.sql.all<{ id: string; agent: string }>('SELECT id, agent FROM charges WHERE ask_at <= ? AND agent IS NOT NULL', now);
  }

  /** When the next agent is to be asked (null: none). */
  nextAsk(): number | null {
    return this.sql.one<{ at: number | null }>('SELECT min(ask_at) AS at FROM charges WHERE ask_at IS NOT NULL')?.at ?? null;
  }

  /**
   * The agent's answer: holding the reservation, it settles it as usual; never having had it,
   * the reservation is given back (or, charged at expiry meanwhile, refunded) and kept as a
   * tombstone charged 0, so a settlement that arrives after all still counts, once.
   */
  answered(id: string, held: boolean, now: number): void {
    if (held) {
      this.sql.run('UPDATE charges SET ask_at = NULL WHERE id = ?', id);
      return;
    }
    const row = this.sql.one<{ period: string; reserved: number; charged: number | null }>('SELECT period, reserved, charged FROM charges WHERE id = ?', id);
    if (!row) return;
    if (row.charged === null) this.sql.run('UPDATE budget SET reserved = max(0, reserved - ?) WHERE period = ?', row.reserved, row.period);
    else this.sql.run('UPDATE budget SET tokens = max(0, tokens - ?) WHERE period = ?', row.charged, row.period);
    this.sql.run('UPDATE charges SET charged = 0, ask_at = NULL, expires_at = ? WHERE id = ?', now + CHARGE_TOMBSTONE_MS, id);
  }

  /** The agent could not be asked: ask again later. */
  askAgain(id: string, now: number): void {
    this.sql.run('UPDATE charges SET ask_at = ? WHERE id = ?', now + ASK_AGAIN_MS, id);
  }

  /** Charges reservations whose agent never settled them (kept as tombstones), and forgets old tombstones. */
  expire(now: number): void {
    const due = this.sql.all<{ id: string; period: string; reserved: number; charged: number | null }>('SELECT id, period, reserved, charged FROM charges WHERE expires_at <= ?', now);
    if (due.length > 0) this.storage.transactionSync(() => this.expireRows(due, now));
  }

  private expireRows(due: { id: string; period: string; reserved: number; charged: number | null }[], now: number): void {
    for (const row of due) {
      if (row.charged !== null) {
        this.sql.run('DELETE FROM charges WHERE id = ?', row.id);
        continue;
      }
      this.sql.run('UPDATE budget SET reserved = max(0, reserved - ?), tokens = tokens + ? WHERE period = ?', row.reserved, row.reserved, row.period);
      this.sql.run('UPDATE charges SET charged = reserved, expires_at = ? WHERE id = ?', now + CHARGE_TOMBSTONE_MS, row.id);
    }
  }
}
