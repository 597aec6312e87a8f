import type { ExecuteInput } from './agent-rpc';
import type { ExecutionRow } from './agent-rows';
import type { AgentStore } from './agent-store';

/** The execution a call repeats, and the fingerprint recorded with the key that found it (none when found by id). */
export interface PriorExecution {
  first: ExecutionRow;
  fingerprint?: string;
}

/**
 * The execution a call repeats, or undefined: the one its idempotency key started (else, without a
 * key, the one the edge named by id), and failing that the first that one of its `alsoKeys` started.
 * The key comes first, so a key reused with another request is still told apart by its
 * fingerprint. A key whose execution was pruned finds nothing, as before.
 */
export function priorExecution(store: AgentStore, request: ExecuteInput): PriorExecution | undefined {
  const keyed = (key: string): PriorExecution | undefined => {
    const seen = store.idempotency(key);
    const first = seen && store.execution(seen.execution_id);
    return first ? { first, fingerprint: seen.fingerprint } : undefined;
  };
  if (request.idempotencyKey) {
    const found = keyed(request.idempotencyKey);
    if (found) return found;
  } else if (request.executionId !== undefined) {
    const first = store.execution(request.executionId);
    if (first) return { first };
  }
  for (const key of request.alsoKeys ?? []) {
    const found = keyed(key);
    if (found) return found;
  }
  return undefined;
}

/** Whether the key that found `prior` was recorded with another request than this one (neither of its fingerprints is the key's). */
export const keyReused = (prior: PriorExecution, request: ExecuteInput): boolean =>
  prior.fingerprint !== undefined && prior.fingerprint !== request.fingerprint && prior.fingerprint !== request.legacyFingerprint;

/** Inside the transaction that inserts the execution: every key that must find it from now on. */
export function recordKeys(store: AgentStore, request: ExecuteInput, executionId: string, now: number): void {
  for (const key of [request.idempotencyKey, ...(request.alsoKeys ?? [])]) {
    if (key) store.putIdempotency(key, request.fingerprint, executionId, now);
  }
}
