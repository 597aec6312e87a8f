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
