import type { Env } from '../worker/env';
import { answerWithin } from '../worker/lib/answer-within';
import { limiter } from '../worker/limits/limiter';
import { executionTokens } from '../worker/limits/usage';
import type { TokenCharge } from './agent-rpc';
import type { ExecutionRow } from './agent-rows';
import type { DeferredSchema } from './agent-schema';
import { outboxBackoffMs } from './outbox';
import type { Sql } from './sql';
import { ok, type Result } from '../worker/errors';
import { executionEstimate, fittedCharge, notCovered } from './execution-estimate';
import type { AgentStore } from './agent-store';
import type { UpstreamRequest } from '../worker/upstream/types';
import { BUILTIN_LABEL } from '../worker/upstream/builtin';
import { raiseAnswer } from './raise-answer';
import { rpcMethodMissing } from '../worker/lib/rpc-missing';

export { executionEstimate } from './execution-estimate';

/** How long one settlement waits for its limiter: an RPC has no deadline of its own. */
const SETTLE_TIMEOUT_MS = 10_000;
/** How long an execution waits for its limiter to raise its reservation before it runs on the admission's headroom. */
const RAISE_TIMEOUT_MS = 5_000;
/** Settlements sent at once. */
const SETTLE_BATCH = 50;

interface ChargeRow extends Record<string, string | number | null> {
  execution_id: string;
  limiter: string;
  charge_id: string;
  reserved: number;
  used: number | null;
  attempts: number;
}

/**
 * What the agent's executions owe their keys' token budgets. An execution admitted for a key
 * with a token budget holds a reservation in the key's limiter (KeyLimiterDO `holdTokens`);
 * the agent records it with the execution, in the execution's transaction, and once the
 * execution is final, in the transaction that finishes it, what it used. The settlement is
 * then sent to the limiter (idempotent there by the reservation's id) and its row removed;
 * one that does not land is retried with backoff from the agent's alarm, across restarts.
 * An agent that never ran such an execution has no table for this and pays nothing.
 */
export class AgentCharges {
  /** Executions with a row here, and whether their use is final, as read once per instance. */
  private rows: Map<string, boolean> | undefined;
  /** Whether the last send left settlements for a retry: the alarm must know. */
  held = false;
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly sql: Sql,
    private readonly schema: DeferredSchema,
    private readonly env: Env,
  ) {}

  /** Before the transaction that inserts an execution holding a charge: its table exists. */
  prepare(): void {
    this.schema.ensure('charges');
  }

  /**
   * Before the transaction that inserts an execution holding `charge`: the reservation it
   * should hold once the prompt is counted (`estimate`, see execution-estimate.ts), or the
   * refusal of one the budget cannot cover. An estimate beyond the admission's headroom is
   * refused at once; one within it is taken by the key's limiter, which checks it against the
   * budget as it stands now (concurrent executions of the key may have taken that headroom
   * too) and may refuse it. Only an estimate above the edge's reservation asks the limiter.
   */
  async fit(charge: TokenCharge, estimate: number | null): Promise<Result<TokenCharge>> {
    const fitted = fittedCharge(charge, estimate);
    if (!fitted.ok) return fitted;
    this.prepare();
    const total = fitted.value.reserved;
    if (total <= charge.reserved) return fitted;
    try {
      const raised = raiseAnswer(await answerWithin(limiter(this.env, charge.limiter).raiseCharge(charge.id, total, charge.budgetTokens), RAISE_TIMEOUT_MS, "the key's limiter"));
      if (!raised.ok) return notCovered(charge, total, charge.reserved + (raised.free ?? 0));
    } catch (error) {
      // The limiter admitted the execution a moment ago and the headroom it reported covers the
      // estimate: it runs, and its settlement counts what it used (as when the raise was not awaited).
      // A limiter of a release before raises (a gradual deployment) is expected, not an error.
      const level = rpcMethodMissing(error) ? 'warn' : 'error';
      console[level](JSON.stringify({ level, msg: 'could not raise a token reservation; the execution runs on the headroom its admission reported', chargeId: charge.id, error: String(error) }));
    }
    return fitted;
  }

  /**
   * `fit` for an execution of the agent in `store` (none: nothing to fit), estimated from its
   * config, context and history. Called before its idempotency lookup: a replay found then is
   * answered as usual, and the edge gives its reservation back, raised or not.
   */
  fitExecution(charge: TokenCharge, store: AgentStore, request: Pick<UpstreamRequest, 'intent' | 'input'>): Promise<Result<TokenCharge>> {
    const row = store.agentRow();
    return row ? this.fit(charge, executionEstimate(store.config(row), store, request)) : Promise.resolve(ok(charge));
  }

  /** Inside the transaction that inserts the execution (after `prepare`). */
  hold(executionId: string, charge: TokenCharge): void {
    this.sql.run('INSERT OR IGNORE INTO token_charges (execution_id, limiter, charge_id, reserved) VALUES (?, ?, ?, ?)', executionId, charge.limiter, charge.id, charge.reserved);
    this.known().set(executionId, false);
  }

  /**
   * Inside the transaction that finishes an execution: what it used becomes due. Succeeded: its
   * upstream's reported usage, else its input and output at ~4 characters a token. Failed:
   * nothing (as a failed chat: no usage is known). Cancelled: the reservation if a call to a
   * remote upstream had started (it may have used tokens no one reports), else nothing: the
   * agent's own builtin upstream calls out to no one.
   */
  finished(row: ExecutionRow, now: number): void {
    if (!this.schema.has('charges') || this.known().get(row.id) !== false) return;
    const used = row.status === 'succeeded' ? executionTokens(row.input, row.output === null ? undefined : JSON.parse(row.output)) : row.status === 'cancelled' && calledOut(row) ? null : 0;
    this.sql.run('UPDATE token_charges SET used = coalesce(?, reserved), next_at = ? WHERE execution_id = ? AND used IS NULL', used, now, row.id);
    // Marked final only as it is sent: a transaction that rolls back leaves it open here too.
  }

  /**
   * Before the agent's storage is deleted: what every execution owes becomes final (one that
   * has not ended is treated as cancelled: its reservation if a call to a remote upstream had
   * started, else nothing) and is sent once. What does not land then is lost with the storage,
   * and its reservation is charged in full when it expires, as before.
   */
  async settleBeforeDelete(): Promise<void> {
    if (!this.mayBeDue()) return;
    this.sql.run(
      `UPDATE token_charges SET used = CASE WHEN EXISTS (SELECT 1 FROM executions e WHERE e.id = token_charges.execution_id AND e.attempts > 0 AND coalesce(e.upstream, '') <> ?) THEN reserved ELSE 0 END
       WHERE used IS NULL`,
      BUILTIN_LABEL,
    );
    this.sql.run('UPDATE token_charges SET next_at = 0');
    for (const id of this.known().keys()) this.known().set(id, true);
    await this.send();
  }

  /** Whether an execution here holds reservation `chargeId`, settled or not yet sent. */
  holds(chargeId: string): boolean {
    return this.schema.has('charges') && this.sql.one('SELECT 1 AS held FROM token_charges WHERE charge_id = ?', chargeId) !== undefined;
  }

  /** Whether a settlement may be waiting to be sent (none known: no statement). */
  mayBeDue(): boolean {
    return this.schema.has('charges') && this.known().size > 0;
  }

  /** Sends due settlements to their limiters; one at a time per instance (a repeat would be harmless). */
  send(): Promise<void> {
    this.sending = this.sending.then(() => this.sendDue()).catch((error: unknown) => console.error(JSON.stringify({ level: 'error', msg: 'token settlement failed', error: String(error) })));
    return this.sending;
  }

  /** When the next settlement is due (null: none is waiting). */
  nextAt(): number | null {
    if (!this.mayBeDue()) return null;
    return this.sql.one<{ at: number | null }>('SELECT min(next_at) AS at FROM token_charges WHERE used IS NOT NULL')?.at ?? null;
  }

  private async sendDue(): Promise<void> {
    if (!this.mayBeDue()) return;
    const rows = this.sql.all<ChargeRow>('SELECT execution_id, limiter, charge_id, reserved, used, attempts FROM token_charges WHERE used IS NOT NULL AND next_at <= ? ORDER BY next_at LIMIT ?', Date.now(), SETTLE_BATCH);
    let held = false;
    await Promise.all(rows.map(async (row) => {
      try {
        await settle(this.env, row);
        this.sql.run('DELETE FROM token_charges WHERE execution_id = ?', row.execution_id);
        this.rows?.delete(row.execution_id);
      } catch (error) {
        if (rpcMethodMissing(error)) {
          // A limiter of a release before settlements (a gradual deployment) charged the whole
          // reservation when the edge released the lease, as that release did: nothing to send.
          this.sql.run('DELETE FROM token_charges WHERE execution_id = ?', row.execution_id);
          this.rows?.delete(row.execution_id);
          return;
        }
        held = true;
        this.sql.run('UPDATE token_charges SET attempts = attempts + 1, next_at = ? WHERE execution_id = ?', Date.now() + outboxBackoffMs(row.attempts), row.execution_id);
        console.error(JSON.stringify({ level: 'error', msg: 'token settlement not delivered; retried', executionId: row.execution_id, limiter: row.limiter, error: String(error) }));
      }
    }));
    this.held = held;
  }

  /** The executions with rows here, read once per instance (none without the table). */
  private known(): Map<string, boolean> {
    if (this.rows) return this.rows;
    const rows = this.schema.has('charges') ? this.sql.all<{ execution_id: string; final: number }>('SELECT execution_id, used IS NOT NULL AS final FROM token_charges') : [];
    this.rows = new Map(rows.map((r) => [r.execution_id, r.final === 1]));
    return this.rows;
  }
}

/**
 * Whether an execution cut short had called a remote upstream, which may have used tokens no one
 * reports. Its last attempt's label tells: the agent's own builtin upstream calls no one. A pool's
 * label names no kind, so a pool's builtin target counts as remote.
 */
function calledOut(row: Pick<ExecutionRow, 'attempts' | 'upstream'>): boolean {
  return row.attempts > 0 && row.upstream !== BUILTIN_LABEL;
}

async function settle(env: Env, row: ChargeRow): Promise<void> {
  await answerWithin(limiter(env, row.limiter).settleExecution(row.charge_id, row.used ?? row.reserved), SETTLE_TIMEOUT_MS, "the key's limiter");
}
