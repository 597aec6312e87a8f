import type { Env } from '../worker/env';
import { fail, ok, type Result } from '../worker/errors';
import { mergePatch } from '../worker/lib/json-merge-patch';
import { exceedsJsonBytes } from '../worker/lib/json-limits';
import { exactSum } from '../worker/lib/exact-sum';
import type { AgentContext } from '../worker/schemas/agent';
import type { ParticipantOperation } from '../worker/schemas/transaction';
import type { AgentStore } from './agent-store';
import type { DeferredSchema } from './agent-schema';
import type { Sql } from './sql';

/** How long past the transaction's deadline a prepared agent waits before it asks the coordinator. */
export const PREPARED_GRACE_MS = 2_000;
/** Next inquiry after the coordinator was unreachable or still undecided. */
const INQUIRY_RETRY_MS = 2_000;
/** An inquiry still unanswered after this long counts as the coordinator being unreachable. */
export const INQUIRY_TIMEOUT_MS = 5_000;
/**
 * Tombstones answer late prepares and repeated commits; a day outlives every retry. An operator's
 * (heuristic) outcome is kept as long as the agent: its coordinator may come back whenever,
 * and only the tombstone tells its decision apart from one the agent applied.
 */
const OUTCOME_TTL_MS = 24 * 60 * 60_000;

export interface PrepareInput {
  /** Name of the coordinating TransactionDO, so the agent can ask it after a silence. */
  coordinatorName: string;
  operation: ParticipantOperation;
  /** The end of phase one: a prepare arriving later votes no. */
  deadlineAt: number;
  /**
   * When the transaction began (its coordinator's log row). An agent created later is not the
   * one the edge resolved, but one created again under its id since: it votes no. Absent from
   * a coordinator of an earlier release.
   */
  beganAt?: number;
}

export interface PreparedRow extends Record<string, string | number | null> {
  tx_id: string;
  coordinator_name: string;
  data: string;
  base_version: number;
  new_version: number;
  prepared_at: number;
  expires_at: number;
  /** The transaction's deadline; null on a lock taken before the column existed. */
  deadline_at: number | null;
  inquiries: number;
  last_inquiry_at: number | null;
  /** Why the last inquiry got no answer; null when it was answered. */
  last_error: string | null;
}

export type CoordinatorAnswer = 'preparing' | 'committed' | 'aborted';

/** An outcome tombstone; `heuristic` 1 when an operator decided it (durable/transaction-heuristics.ts). */
export interface OutcomeRow extends Record<string, string | number | null> {
  outcome: 'committed' | 'aborted';
  version: number | null;
  heuristic: number;
  /** JSON of the operator's resolve that decided it, if one did (transaction-heuristics.ts). */
  resolved: string | null;
}

/** What a participant answers a commit or abort that contradicts its operator's outcome: acknowledged, not applied. */
export interface Contradicted {
  heuristicMismatch?: true;
}

/** Asks a transaction's coordinator for its decision; an unreadable answer counts as undecided. */
export async function askCoordinator(env: Pick<Env, 'TRANSACTIONS'>, name: string, txId: string): Promise<CoordinatorAnswer> {
  const coordinator = env.TRANSACTIONS.get(env.TRANSACTIONS.idFromName(name));
  const answer = await coordinator.status(txId);
  return answer.ok ? answer.value.status : 'preparing';
}

/**
 * Applies one operation to a context: merge patch, then increments, then guards. Pure, so the
 * rules are the same for the vote and for a unit test.
 */
export function applyOperation(current: AgentContext, op: ParticipantOperation, maxBytes: number): Result<{ data: Record<string, unknown>; version: number }> {
  if (op.ifVersion !== undefined && op.ifVersion !== current.version) {
    return fail('version_mismatch', `context is at version ${current.version}, not ${op.ifVersion}`, { version: current.version });
  }
  const data = (op.patch ? mergePatch(current.data, op.patch) : { ...current.data }) as Record<string, unknown>;
  for (const [key, delta] of Object.entries(op.increment ?? {})) {
    const value = Object.hasOwn(data, key) ? data[key] : 0;
    if (typeof value !== 'number') return fail('invalid_request', `cannot increment "${key}": it is not a number`, { key });
    // Past 2^53 - 1 the sum is rounded: a transfer would create or lose units, so it aborts.
    if (Math.abs(value + delta) > Number.MAX_SAFE_INTEGER) {
      return fail('invalid_request', `incrementing "${key}" would take it beyond ±(2^53 - 1), where numbers are not exact`, { key });
    }
    // Within the range a fraction may still round (100 + 1e-20 is 100): units created or lost.
    const next = exactSum(value, delta);
    if (next === null) {
      return fail('invalid_request', `incrementing "${key}" (${value}) by ${delta}: no context number is their exact sum (integers within ±(2^53 - 1) always add exactly)`, { key, value, increment: delta });
    }
    Object.defineProperty(data, key, { value: next, enumerable: true, writable: true, configurable: true });
  }
  for (const [key, min] of Object.entries(op.min ?? {})) {
    // A missing key counts as 0 here too, so a guard reads what an increment of it would start from.
    const value = Object.hasOwn(data, key) ? data[key] : 0;
    if (typeof value !== 'number') return fail('invalid_request', `guard on "${key}": it is not a number`, { key });
    if (value < min) return fail('guard_failed', `"${key}" would be ${value}, below its minimum ${min}`, { key, value, min });
  }
  if (exceedsJsonBytes(data, maxBytes)) return fail('payload_too_large', `context would exceed ${maxBytes} bytes`);
  return ok({ data, version: current.version + 1 });
}

/** What a transaction's outcome event carries for one participant. */
export interface TransactionEvent {
  transactionId: string;
  agentId: string;
  status: 'committed' | 'aborted';
  contextVersion: number | null;
  /** An operator decided it while the coordinator could not answer. */
  heuristic?: true;
}

/**
 * The participant side of two-phase commit for one agent. A prepared row is the agent's only
 * lock: one transaction at a time, and a second prepare votes no instead of waiting, so two
 * transactions can never wait for each other.
 */
export class AgentTransactions {
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly sql: Sql,
    private readonly schema: DeferredSchema,
    private readonly store: AgentStore,
    /** Its coordinators, to ask one for a decision (`askCoordinator`). */
    private readonly env: Pick<Env, 'TRANSACTIONS'>,
    private readonly options: {
      maxContextBytes: number;
      enqueueAgent: (now: number) => void;
      /** Publishes an event (event log and webhooks), inside the transaction that records it. */
      publish?: (type: 'transaction.committed' | 'transaction.aborted', data: TransactionEvent, now: number) => void;
    },
  ) {}

  /** Deletions under way (a retried DELETE may overlap the first): they would drop a lock taken now. */
  private deleting = 0;

  /**
   * The lock check of a deletion: the transaction holding the agent, or undefined; without one, prepares
   * vote no until `reopen`, since the deletion awaits a flush before it wipes the storage and a
   * prepare could otherwise lock the agent in between and be committed into nothing.
   */
  closeForDelete(): PreparedRow | undefined {
    const held = this.lock();
    if (!held) this.deleting++;
    return held;
  }

  /**
   * Whether a deletion is under way: it awaits a flush (and its charges) before it wipes the
   * storage, and work accepted meanwhile would be answered, even run upstream, then wiped.
   */
  closedForDelete(): boolean {
    return this.deleting > 0;
  }

  /** The agent's row for a request that writes or starts work, none while a deletion under way would wipe what it did. */
  liveRow(): ReturnType<AgentStore['agentRow']> {
    return this.deleting > 0 ? undefined : this.store.agentRow();
  }

  /** A deletion that found no lock is over (the agent is gone; a new one may take part again). */
  reopen(): void {
    this.deleting = Math.max(0, this.deleting - 1);
  }

  /** The transaction holding the agent, if any. */
  lock(): PreparedRow | undefined {
    if (!this.schema.has('transactions')) return undefined; // never prepared here: no lock
    return this.sql.one<PreparedRow>('SELECT * FROM tx_prepared ORDER BY prepared_at LIMIT 1');
  }

  prepare(txId: string, input: PrepareInput, now: number): Result<{ version: number }> {
    if (this.deleting > 0) return fail('not_found', 'agent not found (it is being deleted)');
    // A prepare sent to the agent that existed when the transaction began, landing after it was
    // deleted and created again: locking the new one would hold it until past the deadline.
    if (this.createdAfter(input.beganAt)) return fail('not_found', 'agent not found (this id was deleted and created again after the transaction began)');
    this.schema.ensure('transactions');
    const held = this.lock();
    if (held?.tx_id === txId) return ok({ version: held.new_version }); // a repeated prepare
    const outcome = this.outcome(txId);
    if (outcome) return fail('conflict', `transaction ${txId} was already ${outcome.outcome} here`);
    if (held) return fail('agent_locked', 'another transaction holds this agent', { transactionId: held.tx_id });
    // `reason` tells the coordinator this no is its own deadline passing, not a conflict here.
    if (now > input.deadlineAt) return fail('conflict', 'the transaction deadline passed before this agent prepared', { reason: 'timeout' });
    const applied = applyOperation(this.store.context(), input.operation, this.options.maxContextBytes);
    if (!applied.ok) return applied;
    this.sql.run(
      'INSERT INTO tx_prepared (tx_id, coordinator_name, data, base_version, new_version, prepared_at, expires_at, deadline_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      txId, input.coordinatorName, JSON.stringify(applied.value.data), applied.value.version - 1, applied.value.version, now, input.deadlineAt + PREPARED_GRACE_MS, input.deadlineAt,
    );
    return ok({ version: applied.value.version });
  }

  /**
   * Applies the prepared change and releases the lock; a repeated commit answers the same version.
   * `heuristic`: the operator decided it (durable/transaction-heuristics.ts), recorded as such.
   */
  commit(txId: string, now: number, heuristic = false): Result<{ version: number } & Contradicted> {
    const prepared = this.lockOf(txId);
    if (!prepared) {
      const outcome = this.outcome(txId);
      if (outcome?.outcome === 'aborted') {
        if (outcome.heuristic) return this.contradicted(txId, outcome, ok({ version: this.store.context().version, heuristicMismatch: true }));
        return fail('conflict', `transaction ${txId} was aborted here`);
      }
      return ok({ version: outcome?.version ?? this.store.context().version });
    }
    const { committed } = this.storage.transactionSync(() => {
      const written = this.store.writeContext(JSON.parse(prepared.data) as Record<string, unknown>, now);
      this.sql.run('DELETE FROM tx_prepared WHERE tx_id = ?', txId);
      this.sql.run("INSERT OR REPLACE INTO tx_outcomes (tx_id, outcome, version, decided_at, heuristic) VALUES (?, 'committed', ?, ?, ?)", txId, prepared.new_version, now, heuristic ? 1 : 0);
      this.options.enqueueAgent(now);
      this.outcomeEvent(txId, 'committed', prepared.new_version, now, heuristic);
      return written;
    });
    committed();
    return ok({ version: this.store.context().version });
  }

  /**
   * Releases the lock if this transaction holds it, and remembers the abort against a late prepare.
   * `beganAt`: when the transaction began, from its coordinator (see PrepareInput).
   */
  abort(txId: string, now: number, heuristic = false, beganAt?: number): Result<{ aborted: true } & Contradicted> {
    // No agent, no lock (a deletion refuses while one is held, and wipes the storage); a late
    // prepare here answers not_found without a tombstone, which would only keep a deleted
    // object's storage alive. (A commit writes nothing without a lock either.) An agent created
    // since the transaction began never took part in it (its prepares vote no): without its
    // lock, it hears nothing of it either, no tombstone, no event, no webhook.
    if (!this.store.agentRow() || (this.createdAfter(beganAt) && !this.lockOf(txId))) return ok({ aborted: true });
    this.schema.ensure('transactions'); // the tombstone answers a prepare that arrives late
    const known = this.outcome(txId);
    if (known?.outcome === 'committed') {
      if (known.heuristic) return this.contradicted(txId, known, ok({ aborted: true, heuristicMismatch: true }));
      return fail('conflict', `transaction ${txId} was committed here`);
    }
    // Aborted already: nothing holds the lock (a tombstone refuses a late prepare), and rewriting
    // the tombstone would drop the mark of an operator's abort.
    if (known) return ok({ aborted: true });
    if (this.tombstoneMayBeGone(txId, now, beganAt)) return ok({ aborted: true });
    this.storage.transactionSync(() => {
      this.sql.run('DELETE FROM tx_prepared WHERE tx_id = ?', txId);
      this.sql.run("INSERT OR REPLACE INTO tx_outcomes (tx_id, outcome, version, decided_at, heuristic) VALUES (?, 'aborted', NULL, ?, ?)", txId, now, heuristic ? 1 : 0);
      this.outcomeEvent(txId, 'aborted', null, now, heuristic);
    });
    return ok({ aborted: true });
  }

  /**
   * For every prepared transaction past its expiry, asks the coordinator for the decision and
   * applies it. An unreachable or undecided coordinator is asked again later; the lock stays,
   * because deciding alone could contradict a commit the coordinator already logged (only an
   * operator may, durable/transaction-heuristics.ts).
   */
  async resolveExpired(now: number): Promise<void> {
    if (!this.schema.has('transactions')) return;
    const expired = this.sql.all<PreparedRow>('SELECT * FROM tx_prepared WHERE expires_at <= ?', now);
    for (const row of expired) {
      const answer = await this.inquire(row);
      if (answer === 'committed') this.commit(row.tx_id, Date.now());
      else if (answer === 'aborted') this.abort(row.tx_id, Date.now());
      else this.sql.run('UPDATE tx_prepared SET expires_at = ? WHERE tx_id = ?', Date.now() + INQUIRY_RETRY_MS, row.tx_id);
    }
  }

  /**
   * Asks the coordinator of a lock for its decision, and counts the inquiry on the lock (with
   * its error) for the operator's view. `unreachable`: the call failed or outlived
   * INQUIRY_TIMEOUT_MS.
   */
  async inquire(row: PreparedRow): Promise<CoordinatorAnswer | 'unreachable'> {
    let answer: CoordinatorAnswer | 'unreachable' = 'unreachable';
    let error: string | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${INQUIRY_TIMEOUT_MS} ms`)), INQUIRY_TIMEOUT_MS);
    });
    try {
      answer = await Promise.race([askCoordinator(this.env, row.coordinator_name, row.tx_id), timeout]);
    } catch (e) {
      error = (e instanceof Error ? e.message : String(e)).slice(0, 500);
      console.error(JSON.stringify({ msg: 'transaction inquiry failed', txId: row.tx_id, error }));
    } finally {
      clearTimeout(timer);
    }
    this.sql.run('UPDATE tx_prepared SET inquiries = inquiries + 1, last_inquiry_at = ?, last_error = ? WHERE tx_id = ?', Date.now(), error, row.tx_id);
    return answer;
  }

  /**
   * An abort finding neither lock nor tombstone, of a transaction begun more than a tombstone's
   * day ago: its abort may have been recorded here, event and all, and the tombstone pruned
   * since (the coordinator retries phase two until it hears an ack, however long this agent
   * could not be reached). Recorded again, it announced a second `transaction.aborted`; so it is
   * acknowledged and nothing written. The price: an agent that never locked for it and first
   * hears of it that late gets no event (its context was never touched).
   */
  private tombstoneMayBeGone(txId: string, now: number, beganAt: number | undefined): boolean {
    return beganAt !== undefined && now - beganAt > OUTCOME_TTL_MS && !this.lockOf(txId);
  }

  /** Whether this agent was created after `beganAt`: deleted and created again since a transaction began. */
  private createdAfter(beganAt: number | undefined): boolean {
    const row = this.store.agentRow();
    return beganAt !== undefined && row !== undefined && row.created_at > beganAt;
  }

  contextVersion(): number {
    return this.store.context().version;
  }

  prune(now: number): void {
    if (!this.schema.has('transactions')) return;
    this.sql.run('DELETE FROM tx_outcomes WHERE decided_at < ? AND heuristic = 0', now - OUTCOME_TTL_MS);
  }

  /** The prepared row of `txId`, if it holds the lock here. */
  lockOf(txId: string): PreparedRow | undefined {
    if (!this.schema.has('transactions')) return undefined;
    return this.sql.one<PreparedRow>('SELECT * FROM tx_prepared WHERE tx_id = ?', txId);
  }

  outcome(txId: string): OutcomeRow | undefined {
    if (!this.schema.has('transactions')) return undefined;
    return this.sql.one<OutcomeRow>('SELECT outcome, version, heuristic, resolved FROM tx_outcomes WHERE tx_id = ?', txId);
  }

  /** Marks the outcome of `txId` as decided by an operator's resolve (`resolved`: its JSON). */
  markResolved(txId: string, resolved: string): void {
    this.sql.run('UPDATE tx_outcomes SET resolved = ? WHERE tx_id = ?', resolved, txId);
  }

  /**
   * The coordinator's decision contradicts the operator's: the operator's stands (it may have
   * been acted on), and the decision is acknowledged rather than refused, or the coordinator
   * would resend it forever; the acknowledgement says so and the coordinator shows it.
   */
  private contradicted<T>(txId: string, known: OutcomeRow, answer: T): T {
    console.error(JSON.stringify({ level: 'error', msg: 'coordinator decision contradicts an operator (heuristic) outcome', txId, heuristic: known.outcome }));
    return answer;
  }

  /** `transaction.committed` / `transaction.aborted` for this agent, once per transaction. */
  private outcomeEvent(txId: string, outcome: 'committed' | 'aborted', version: number | null, now: number, heuristic: boolean): void {
    const row = this.store.agentRow();
    if (!row || !this.options.publish) return;
    const data: TransactionEvent = { transactionId: txId, agentId: this.store.config(row).id, status: outcome, contextVersion: version, ...(heuristic && { heuristic: true as const }) };
    this.options.publish(`transaction.${outcome}`, data, now);
  }
}
