import { fail, LOCK_RETRY_AFTER_S, type Failure } from '../worker/errors';
import type { AgentConfig, Region } from '../worker/schemas/agent';
import type { Execution } from '../worker/schemas/execution';

/** The inputs and outputs of AgentDO's RPC methods that are not API schemas themselves. */

/** An execution's deadline when the request names none. */
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface CreateAgentInput {
  tenantId: string;
  config: AgentConfig;
  /** Creation time chosen by the edge, so the registry's provisional snapshot matches. */
  createdAt: number;
  /** Where the object was placed: its region for preferring pool targets. */
  locationHint?: Region | null;
  /** The Worker took over an orphaned D1 claim, which holds its snapshot, not the agent's. */
  adoptedClaim?: boolean;
}

export interface ExecuteInput {
  intent: string;
  input: unknown;
  mode: 'sync' | 'async';
  timeoutMs?: number;
  idempotencyKey?: string;
  /**
   * More keys that find this execution once it started (an incoming GitHub delivery's body
   * digest): a call that one of them finds, when its own key finds nothing, is a replay of it.
   */
  alsoKeys?: string[];
  /**
   * The id the edge chose for this execution: without an idempotency key, a retried delivery
   * of the call finds the execution by its id, so the call needs no key row; with one, the
   * execution a retried delivery finds under the key is its own, not a replay, when the ids match.
   */
  executionId?: string;
  /** This is the first delivery of a call the edge keyed itself (by `executionId`): nothing to look up. */
  freshKey?: boolean;
  /** Hash of the request body, to tell a replay from a reused key (worker/agents/fingerprint.ts). */
  fingerprint: string;
  /** The previous release's hash of the same request, when it differs: a key it recorded is a replay of this one too. */
  legacyFingerprint?: string;
  /** Answer only a replay of a recorded execution; start nothing (the key's budget is used up). */
  replayOnly?: boolean;
  /** The key's token reservation for this execution, which the agent settles once it has ended. */
  charge?: TokenCharge;
  /**
   * Called back over RPC (not awaited) once the call is decided, before a sync call waits for
   * its end: its execution inserted (false), or the one its key recorded found (true: a
   * replay). A refusal is the call's answer instead. The MCP endpoint holds a streamed
   * answer's headers until then, so that they say whether the call counted.
   */
  decided?: (replayed: boolean) => void;
}

/** Tells the caller of `execute` its call is decided (`ExecuteInput.decided`); a caller gone away is no error. */
export function tellDecided(request: ExecuteInput, replayed: boolean): void {
  if (request.decided) Promise.resolve(request.decided(replayed)).catch(() => undefined);
}

/**
 * A token reservation an execution holds against its key's budget (KeyLimiterDO `holdTokens`):
 * the limiter object it is in, its id there, and how many tokens it holds.
 */
export interface TokenCharge {
  limiter: string;
  id: string;
  reserved: number;
  /**
   * Tokens the budget had free beyond `reserved` when the request was admitted: what the agent
   * may add when the prompt it will send (instructions, context, history) needs more than the
   * request body the edge counted. Absent: unknown (no check).
   */
  headroom?: number;
  /** Seconds until the budget's period ends, for the agent's refusal's `retryAfter`. */
  retryAfter?: number;
  /**
   * The key's token budget the request was admitted under: the limiter checks a raise of the
   * reservation against it (`raiseCharge`), so concurrent executions cannot share `headroom`.
   */
  budgetTokens?: number;
}

export interface ExecuteResult {
  execution: Execution;
  replayed: boolean;
}

/**
 * What a sync `execute` answers when its agent was deleted while the execution ran: 404 as for
 * every agent that is gone, but the execution had started (its upstream may have been called),
 * so the edge counts it against the key's budget as it counts a cancelled one. The details
 * name the execution and say so, for the client and for the edge (`deletedWhileRunning`).
 */
export const agentDeletedWhileRunning = (executionId: string): Failure =>
  fail('not_found', 'the agent was deleted while the execution ran', { executionId, agentDeleted: true });

/** Whether an error's details are those of `agentDeletedWhileRunning`. */
export const deletedWhileRunning = (details: unknown): boolean =>
  typeof details === 'object' && details !== null && (details as { agentDeleted?: unknown }).agentDeleted === true;

/** What a change the agent's transaction lock refuses answers: 409, retried once the transaction ends. */
export const agentLocked = (txId: string): Failure =>
  fail('agent_locked', 'a transaction in progress holds this agent; retry shortly', { transactionId: txId, retryAfter: LOCK_RETRY_AFTER_S });
