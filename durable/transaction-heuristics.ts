import { fail, ok, type Result } from '../worker/errors';
import { iso } from '../worker/lib/time';
import type { LockResolution, ResolveLockBody, TransactionLock } from '../worker/schemas/transaction';
import { PREPARED_GRACE_MS, type AgentTransactions, type PreparedRow } from './agent-transactions';
import { DECISION_GRACE_MS } from './transaction-grace';

export type { ResolveLockBody };

/** What the agent answers a resolve; the edge adds the agent's id. */
export type Resolved = Omit<LockResolution, 'agentId'>;

/** The agent's lock, or null when it holds none. */
export type LockRead = TransactionLock | null;

/** A lock as the operator's read shows it. */
export function lockView(row: PreparedRow | undefined): LockRead {
  if (!row) return null;
  return {
    transactionId: row.tx_id,
    coordinator: row.coordinator_name,
    since: iso(row.prepared_at),
    deadlineAt: iso(deadlineOf(row)),
    expiresAt: iso(row.expires_at),
    inquiries: row.inquiries,
    lastInquiryAt: row.last_inquiry_at === null ? null : iso(row.last_inquiry_at),
    lastError: row.last_error,
    contextVersion: row.base_version,
  };
}

/**
 * A lock taken before its deadline was stored: its first expiry was the deadline plus the
 * grace, and a later one (after an unanswered inquiry) is past the deadline anyway.
 */
const deadlineOf = (row: PreparedRow): number => row.deadline_at ?? row.expires_at - PREPARED_GRACE_MS;

/**
 * An operator resolving one lock, named by its transaction (XA's heuristic decision). The
 * coordinator is asked first and, if it answers, decides: a decision (or its presumed abort of
 * a transaction it has no record of, or its abort of one undecided past the deadline) is applied
 * as if the agent's own alarm had asked; undecided within its deadline, it is left to finish
 * (409). Only when it cannot be reached, and the transaction's deadline has passed (until then
 * phase one may still be running, and a lock is normally released within milliseconds), is the
 * operator's outcome applied: a commit writes the context computed at prepare, exactly as the
 * coordinator's commit would, and the tombstone marks it heuristic, so a later contradicting
 * decision is acknowledged but not applied (agent-transactions.ts, `contradicted`).
 */
export async function resolveLock(tx: AgentTransactions, txId: string, body: ResolveLockBody): Promise<Result<Resolved>> {
  const held = tx.lockOf(txId);
  if (!held) return notHeld(tx, txId, body.outcome);
  const answer = await tx.inquire(held);
  if (answer === 'preparing') return fail('conflict', undecided(txId, deadlineOf(held)), { coordinator: 'preparing', deadlineAt: iso(deadlineOf(held)) });
  if (answer === 'committed' || answer === 'aborted') return apply(tx, txId, answer, 'coordinator', body.outcome);
  if (Date.now() <= deadlineOf(held)) {
    return fail('conflict', `the coordinator of ${txId} cannot be reached, but the transaction's deadline has not passed: retry after it`, { coordinator: 'unreachable', deadlineAt: iso(deadlineOf(held)) });
  }
  return apply(tx, txId, body.outcome === 'commit' ? 'committed' : 'aborted', 'operator', body.outcome);
}

/**
 * Why an undecided coordinator is left to finish. Just past the deadline it still answers
 * undecided: it gives the run that owns the transaction a grace before taking it for crashed.
 */
function undecided(txId: string, deadlineAt: number): string {
  if (Date.now() <= deadlineAt) return `the coordinator of ${txId} has not decided yet and its deadline has not passed: let it finish`;
  return `the coordinator of ${txId} has not decided yet; its deadline has passed, but it gives the run that owns the transaction ${DECISION_GRACE_MS} ms of grace after it before taking that run for crashed and aborting: retry after the grace`;
}

/** Applies an outcome to the lock `txId` holds, unless the decision arrived while the coordinator was asked. */
function apply(tx: AgentTransactions, txId: string, status: 'committed' | 'aborted', source: Resolved['source'], requested: ResolveLockBody['outcome']): Result<Resolved> {
  if (!tx.lockOf(txId)) return notHeld(tx, txId);
  const heuristic = source === 'operator';
  const now = Date.now();
  const result = status === 'committed' ? tx.commit(txId, now, heuristic) : tx.abort(txId, now, heuristic);
  if (!result.ok) return result;
  const resolved: Resolved = { transactionId: txId, status, source, heuristic, contextVersion: tx.contextVersion() };
  // Written in the same turn as the outcome (no await between), so stored with it.
  tx.markResolved(txId, JSON.stringify({ requested, source, contextVersion: resolved.contextVersion } satisfies ResolvedBy));
  return ok(resolved);
}

/** What the outcome row keeps of the resolve that decided it. */
interface ResolvedBy {
  requested: ResolveLockBody['outcome'];
  source: Resolved['source'];
  contextVersion: number;
}

function resolvedBy(json: string | null): ResolvedBy | null {
  if (json === null) return null;
  try {
    return JSON.parse(json) as ResolvedBy;
  } catch {
    return null;
  }
}

/**
 * No lock of `txId`: another transaction's (409), one already decided here (409), or none
 * (404). One decided by a resolve asking `requested` too is that resolve again, retried because
 * its answer was lost: it is answered what that one applied (`replayed`), changing nothing.
 */
function notHeld(tx: AgentTransactions, txId: string, requested?: ResolveLockBody['outcome']): Result<never> | Result<Resolved> {
  const other = tx.lock();
  if (other) return fail('agent_locked', `transaction ${other.tx_id} holds this agent, not ${txId}`, { transactionId: other.tx_id });
  const outcome = tx.outcome(txId);
  if (outcome) {
    const earlier = resolvedBy(outcome.resolved);
    if (earlier && requested !== undefined && earlier.requested === requested) {
      return ok({ transactionId: txId, status: outcome.outcome, source: earlier.source, heuristic: outcome.heuristic === 1, contextVersion: earlier.contextVersion, replayed: true });
    }
    return fail('already_finished', `transaction ${txId} was already ${outcome.outcome} here`, { status: outcome.outcome, heuristic: outcome.heuristic === 1 });
  }
  return fail('not_found', `this agent holds no lock for transaction ${txId}`);
}
