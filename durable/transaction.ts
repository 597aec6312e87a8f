import { DurableObject } from 'cloudflare:workers';
import { agentStub, type AgentRoute } from '../worker/agents/registry';
import type { Env } from '../worker/env';
import { fail, ok, type Failure, type Result } from '../worker/errors';
import type { Jurisdiction, Region } from '../worker/schemas/agent';
import { AbortReason, type ParticipantOperation, type Transaction } from '../worker/schemas/transaction';
import type { CoordinatorAnswer } from './agent-transactions';
import { Sql } from './sql';
import { TransactionLog, toTransaction, type NewParticipant, type ParticipantRow, type TxRow } from './transaction-log';
import { dropIndexRow, expiresAt } from './transaction-retention';
import { aliasAlarm, aliasFor, pointFromId, writeAlias } from './transaction-alias';
import { coordinator } from '../worker/transactions/coordinator';
import { DECISION_GRACE_MS } from './transaction-grace';
import { collectVotes, prepareFailed, withTimeout } from './transaction-votes';
import { ownedFinish, type Run } from './transaction-finish';

/** Phase-two retries back off from 1 s to a minute, and never stop until every ack is in. */
const PHASE_TWO_MAX_BACKOFF_MS = 60_000;
const INDEX_RETRY_MS = 5_000;
/**
 * How long an answer (a run's, a replay's) waits for phase two once the decision is logged.
 * The outcome is certain then; a participant slow to hear it must not hold the client, and the
 * alarm (armed since begin) goes on telling it.
 */
export const PHASE_TWO_WAIT_MS = 1_000;

export interface RunInput {
  txId: string;
  tenantId: string;
  /** This object's own name, which participants use to ask for the decision. */
  coordinatorName: string;
  /** SHA-256 of the request when it carried an Idempotency-Key, to tell a replay from a reused key. */
  fingerprint: string | null;
  operations: NewParticipant[];
  timeoutMs: number;
}

export interface RunResult {
  transaction: Transaction;
  replayed: boolean;
}

const routeOf = (p: ParticipantRow): AgentRoute => ({ jurisdiction: p.jurisdiction as Jurisdiction | null, locationHint: p.location_hint as Region | null });

/**
 * Why a participant's no aborts the transaction: the reason it names in its details (a prepare
 * that arrived after the deadline names `timeout`), else its code, else `internal_error`.
 */
export function abortReasonOf(failure: Failure): AbortReason {
  const named = AbortReason.safeParse((failure.details as { reason?: unknown } | undefined)?.reason);
  if (named.success) return named.data;
  const coded = AbortReason.safeParse(failure.code);
  return coded.success ? coded.data : 'internal_error';
}

/**
 * Coordinator of one multi-agent transaction (two-phase commit). Its SQLite log is durable
 * before anyone is told anything: the log row exists before the first prepare, and the
 * decision is written before the first commit or abort. Phase two is retried from the alarm
 * until every participant has acknowledged; a log found undecided after a crash is aborted.
 */
export class TransactionDO extends DurableObject<Env> {
  private readonly log: TransactionLog;
  /** The run in progress in this instance (its decision, then its end); absent after a restart. */
  private driving: Run | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.log = new TransactionLog(new Sql(ctx.storage.sql), ctx.storage);
    void ctx.blockConcurrencyWhile(async () => {
      this.log.open();
      // A log with no alarm has lost what drives it on: a coordinator completed before retention
      // existed (it deleted its alarm at completion), or one whose alarm failed past the
      // runtime's retries while its object kept failing (an operator's case): its undecided
      // phase one, unfinished phase two or unwritten index would then wait for good. Every start
      // of it arms the alarm again, so each of those ends, and retention deletes it in the end.
      if (this.log.tx() && (await ctx.storage.getAlarm()) === null) await this.armAlarm();
    });
  }

  /**
   * Runs the transaction to its decision and tries phase two once, waiting for that try at most
   * PHASE_TWO_WAIT_MS. A repeated call (the same Idempotency-Key, or the edge retrying the
   * RPC) returns the recorded outcome.
   */
  async run(input: RunInput): Promise<Result<RunResult>> {
    const recorded = await this.replay(input.tenantId, input.fingerprint);
    if (recorded) return recorded;
    this.writeBegin(input);
    await this.answerOf(this.drive());
    return ok({ transaction: this.view(), replayed: false });
  }

  /**
   * The recorded outcome of the transaction this coordinator ran, for a repeat of its key; null
   * when it ran none. The edge asks before its own checks too: a participant deleted since
   * must not turn a recorded outcome into a 404.
   */
  async replay(tenantId: string, fingerprint: string | null): Promise<Result<RunResult> | null> {
    const existing = this.log.tx();
    if (!existing) return null;
    if (existing.tenant_id !== tenantId || existing.fingerprint !== fingerprint) {
      return fail('idempotency_key_reused', 'this Idempotency-Key was used with a different transaction', { transactionId: existing.id });
    }
    await this.settle();
    // Deleted by retention while this replay waited: the key is free again, as after expiry.
    if (!this.log.tx()) return null;
    return ok({ transaction: this.view(), replayed: true });
  }

  /**
   * The cron's sweep of an old completed index row (worker/transactions/sweep.ts): `deleted`
   * once past retention, `kept` while it must stay (its alarm armed, for a coordinator from
   * before retention that never started since), `stale` when this coordinator holds another
   * transaction or none, so the row points at nothing.
   */
  async sweep(tenantId: string, txId: string): Promise<'deleted' | 'kept' | 'stale'> {
    const tx = this.log.tx();
    if (!tx || tx.tenant_id !== tenantId || tx.id !== txId) return 'stale';
    const expiry = expiresAt(tx);
    if (expiry !== null && Date.now() >= expiry) {
      await this.expire(tx);
      return this.log.tx() ? 'kept' : 'deleted';
    }
    if ((await this.ctx.storage.getAlarm()) === null) await this.armAlarm();
    return 'kept';
  }

  async get(tenantId: string, txId: string): Promise<Result<Transaction>> {
    const tx = this.log.tx();
    if (!tx || tx.tenant_id !== tenantId || tx.id !== txId) {
      const alias = tx ? undefined : aliasFor(this.log, tenantId, txId);
      if (alias) return coordinator(this.env, alias.coordinator_name).get(tenantId, txId);
      return fail('not_found', `transaction ${txId} not found`);
    }
    return ok(this.view());
  }

  /**
   * Keeps, at the object named from a keyed transaction's id, where its coordinator is: written
   * by that coordinator when D1 refused its index row (durable/transaction-alias.ts).
   */
  async point(tenantId: string, txId: string, coordinatorName: string): Promise<void> {
    await writeAlias(this.log, this.ctx.storage, { txId, tenantId, coordinatorName });
  }

  /**
   * A prepared participant asking for the decision. No record means the transaction never
   * began here, so it is aborted (presumed abort); an undecided log past its deadline is
   * decided abort now, since the run that owned it can no longer commit.
   */
  async status(txId: string): Promise<Result<{ status: CoordinatorAnswer }>> {
    const tx = this.log.tx();
    if (!tx || tx.id !== txId) return ok({ status: 'aborted' });
    if (tx.status === 'preparing' && Date.now() > tx.deadline_at + DECISION_GRACE_MS) {
      this.log.decide('aborted', { reason: 'timeout', message: 'no decision by the deadline' }, Date.now());
      // Owned, not awaited (durable/transaction-finish.ts); a run in progress finishes it itself.
      this.driving ??= ownedFinish(this.ctx, this.finishUp(), txId, (run) => {
        if (this.driving === run) this.driving = null;
      });
    }
    return ok({ status: this.log.tx()?.status ?? 'aborted' });
  }

  override async alarm(): Promise<void> {
    const tx = this.log.tx();
    const alias = tx ? undefined : this.log.alias();
    if (alias) return aliasAlarm(this.env, this.log, this.ctx.storage, alias);
    if (!tx) return;
    const expiry = expiresAt(tx);
    if (expiry !== null && Date.now() >= expiry) return this.expire(tx);
    if (tx.status === 'preparing') {
      if (this.driving && Date.now() < tx.deadline_at + DECISION_GRACE_MS) return this.armAlarm();
      // The run that owned phase one is gone (a crash or restart): presumed abort.
      this.log.decide('aborted', { reason: 'timeout', message: 'the coordinator restarted before deciding' }, Date.now());
    }
    await this.finishUp();
  }

  // --- the steps of run(), public so the crash tests can stop between any two of them ---

  /** Writes the log row (`preparing`) with every participant, and arms the recovery alarm. */
  async begin(input: RunInput): Promise<void> {
    this.writeBegin(input);
    await this.armAlarm();
  }

  /**
   * Phase one: asks every participant that has not voted, in parallel, to prepare. Returns
   * when all have voted or at the first no, which is logged as the decision at once so the
   * others' locks are released without waiting for stragglers.
   */
  async prepareAll(): Promise<void> {
    const tx = this.log.tx();
    if (!tx || tx.status !== 'preparing') return;
    const pending = this.log.participants().filter((p) => p.vote === null);
    await collectVotes(pending, (p) => this.prepareOne(tx, p), (p, error) => this.voteLost(p, error));
  }

  /**
   * A vote the log refused to record: the transaction cannot commit without it, so it aborts
   * now (phase two releases the lock a yes took). Should the decision be refused too, `decide`
   * after phase one meets the same refusal, and the caller hears of it.
   */
  private voteLost(p: ParticipantRow, error: unknown): void {
    console.error(JSON.stringify({ msg: 'transaction vote not recorded', agentId: p.agent_id, error: String(error) }));
    try {
      this.log.decide('aborted', { reason: 'internal_error', agentId: p.agent_id, message: `the vote of agent ${p.agent_id} could not be recorded; nothing was applied` }, Date.now());
    } catch (refused) {
      console.error(JSON.stringify({ msg: 'transaction abort not recorded', agentId: p.agent_id, error: String(refused) }));
    }
  }

  /** Logs the decision from the votes: commit only if every participant voted yes. */
  decide(): string {
    const tx = this.log.tx();
    if (!tx || tx.status !== 'preparing') return tx?.status ?? 'aborted';
    const all = this.log.participants();
    if (all.every((p) => p.vote === 'yes')) return this.log.decide('committed', {}, Date.now());
    return this.log.decide('aborted', { reason: 'timeout', message: 'not every participant voted by the deadline' }, Date.now());
  }

  /** Phase two: tells every participant that has not acknowledged. Returns true once all have. */
  async phaseTwo(): Promise<boolean> {
    const tx = this.log.tx();
    if (!tx || tx.status === 'preparing') return false;
    if (tx.completed_at !== null) return true;
    await Promise.all(this.log.participants().filter((p) => !p.acked).map((p) => this.tellOne(tx, p)));
    if (this.log.participants().every((p) => p.acked)) {
      this.log.complete(Date.now());
      return true;
    }
    this.log.phaseTwoFailed();
    return false;
  }

  // --- internals ---

  private writeBegin(input: RunInput): void {
    const now = Date.now();
    const t = { id: input.txId, tenantId: input.tenantId, coordinatorName: input.coordinatorName, fingerprint: input.fingerprint, deadlineAt: now + input.timeoutMs, now };
    this.log.begin(t, input.operations);
  }

  private drive(): { decided: Promise<void>; done: Promise<void> } {
    if (this.driving) return this.driving;
    const decided = (async () => {
      await this.armAlarm();
      // A keyed coordinator can only be found through the index, so it is written before phase
      // one; an unkeyed one is named from its id and indexed with the decision, off the lock path.
      // Without D1, a pointer at the object named from the id does; without either, a GET could
      // answer 404 for a transfer that committed, and the client run it again: nothing starts.
      const tx = this.log.tx();
      if (tx && tx.fingerprint !== null && !(await this.findable(tx))) {
        this.log.decide('aborted', { reason: 'unavailable', message: 'the transaction could not be indexed by its deadline (D1 unreachable or slow); nothing was applied' }, Date.now());
      }
      await this.prepareAll();
      this.decide();
    })();
    const done = decided.then(() => this.finishUp()).finally(() => {
      this.driving = null;
    });
    done.catch(() => undefined); // its failure reaches whoever awaits it; a run past its wait does not
    this.driving = { decided, done };
    return this.driving;
  }

  /**
   * What an answer waits for: the decision (phase one is bounded by its deadline), then phase
   * two at most PHASE_TWO_WAIT_MS. A participant slow to hear the decision does not hold the
   * client: the run goes on without it, and the alarm armed since begin retries what is left.
   */
  private async answerOf(run: { decided: Promise<void>; done: Promise<void> }): Promise<void> {
    await run.decided;
    await withTimeout(run.done, PHASE_TWO_WAIT_MS);
  }

  /** A replay: waits for the run in progress, or finishes what a crashed one left (both as a run's answer does). */
  private async settle(): Promise<void> {
    if (this.driving) return this.answerOf(this.driving);
    const tx = this.log.tx();
    if (tx?.status === 'preparing') this.log.decide('aborted', { reason: 'timeout', message: 'the coordinator restarted before deciding' }, Date.now());
    const finishing = this.finishUp();
    finishing.catch(() => undefined);
    await withTimeout(finishing, PHASE_TWO_WAIT_MS);
  }

  private async finishUp(): Promise<void> {
    await Promise.all([this.phaseTwo(), this.index()]);
    await this.armAlarm();
  }

  private async prepareOne(tx: TxRow, p: ParticipantRow): Promise<'yes' | 'no'> {
    const operation = JSON.parse(p.operation) as ParticipantOperation;
    let result: Result<{ version: number }> | 'timeout';
    try {
      const stub = agentStub(this.env, tx.tenant_id, p.agent_id, routeOf(p));
      result = await withTimeout(stub.prepare(tx.id, { coordinatorName: tx.coordinator_name, operation, deadlineAt: tx.deadline_at, beganAt: tx.created_at }), tx.deadline_at - Date.now());
    } catch (error) {
      result = prepareFailed(p.agent_id, error);
    }
    if (result !== 'timeout' && result.ok) {
      this.log.recordVote(p.agent_id, 'yes', result.value.version);
      return 'yes';
    }
    this.ctx.storage.transactionSync(() => {
      this.log.recordVote(p.agent_id, 'no', null);
      if (result === 'timeout') this.log.decide('aborted', { reason: 'timeout', agentId: p.agent_id, message: `agent ${p.agent_id} did not vote by the deadline` }, Date.now());
      else if (!result.ok) this.log.decide('aborted', { reason: abortReasonOf(result), agentId: p.agent_id, message: result.message }, Date.now());
    });
    return 'no';
  }

  private async tellOne(tx: TxRow, p: ParticipantRow): Promise<void> {
    try {
      const stub = agentStub(this.env, tx.tenant_id, p.agent_id, routeOf(p));
      if (tx.status === 'committed') {
        const result = await stub.commit(tx.id);
        if (result.ok) this.log.ack(p.agent_id, result.value.version, result.value.heuristicMismatch === true);
        else console.error(JSON.stringify({ msg: 'participant refused commit', txId: tx.id, agentId: p.agent_id, code: result.code }));
      } else {
        const result = await stub.abort(tx.id, tx.created_at);
        if (result.ok) this.log.ack(p.agent_id, null, result.value.heuristicMismatch === true);
        else console.error(JSON.stringify({ msg: 'participant refused abort', txId: tx.id, agentId: p.agent_id, code: result.code }));
      }
    } catch (error) {
      console.error(JSON.stringify({ msg: 'phase two delivery failed', txId: tx.id, agentId: p.agent_id, error: String(error) }));
    }
  }

  /**
   * A keyed transaction made findable from its id before phase one, within its deadline: the D1
   * index, or the pointer at the object named from the id when D1 refuses or has not answered
   * in half the time left. A stalled index write lands later; the alarm brings it up to date.
   */
  private async findable(tx: TxRow): Promise<boolean> {
    if ((await withTimeout(this.index(), (tx.deadline_at - Date.now()) / 2)) === true) return true;
    return (await withTimeout(pointFromId(this.env, tx), tx.deadline_at - Date.now())) === true;
  }

  /** Projects id → coordinator name and status into D1 for GET; retried from the alarm. False when D1 refused. */
  private async index(): Promise<boolean> {
    const tx = this.log.tx();
    if (!tx || tx.indexed_status === tx.status) return true;
    try {
      await this.env.DB.prepare(
        `INSERT INTO transactions (tenant_id, id, coordinator_name, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at WHERE transactions.status = 'preparing'`,
      )
        .bind(tx.tenant_id, tx.id, tx.coordinator_name, tx.status, tx.created_at, Date.now())
        .run();
      this.log.indexed(tx.status);
      return true;
    } catch (error) {
      console.error(JSON.stringify({ msg: 'transaction index write failed', txId: tx.id, error: String(error) }));
      return false;
    }
  }

  /**
   * One alarm for all due work: the phase-one deadline, phase-two retries, the D1 index, and
   * once all of that is done, retention (the coordinator deletes itself, with the alarm).
   */
  private async armAlarm(): Promise<void> {
    const tx = this.log.tx();
    if (!tx) return;
    const now = Date.now();
    let at: number;
    if (tx.status === 'preparing') at = tx.deadline_at + DECISION_GRACE_MS;
    else if (tx.completed_at === null) at = now + Math.min(PHASE_TWO_MAX_BACKOFF_MS, 1_000 * 2 ** Math.min(tx.phase_two_tries, 16));
    else at = expiresAt(tx) ?? now + INDEX_RETRY_MS;
    await this.ctx.storage.setAlarm(at);
  }

  /**
   * Retention: the index row first, then the whole storage and the alarm, so D1 never points
   * at a log that is gone while it is being deleted, and a failure at either step is retried.
   */
  private async expire(tx: TxRow): Promise<void> {
    if (!(await dropIndexRow(this.env.DB, tx))) return this.ctx.storage.setAlarm(Date.now() + INDEX_RETRY_MS);
    this.log.forget();
    try {
      await this.ctx.storage.deleteAlarm();
      await this.ctx.storage.deleteAll();
    } catch (error) {
      this.log.open();
      throw error;
    }
  }

  private view(): Transaction {
    const tx = this.log.tx();
    if (!tx) throw new Error('transaction log vanished');
    return toTransaction(tx, this.log.participants());
  }
}
