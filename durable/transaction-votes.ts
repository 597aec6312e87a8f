import { fail, type Failure } from '../worker/errors';
import { isPlatformError } from '../worker/lib/storage-errors';

/** Resolves with the promise's value, or with 'timeout' once `ms` have passed. */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), Math.max(0, ms)); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Phase one's fan-out: asks every participant at once and resolves when all have voted or at
 * the first no. A vote that failed to be recorded (the coordinator's storage refused the write)
 * ends phase one too, through `lost`, which decides the abort: left waiting for it, phase one
 * never ended, and the client's request, with every replay of its key, never got an answer.
 */
export function collectVotes<P>(pending: readonly P[], vote: (p: P) => Promise<'yes' | 'no'>, lost: (p: P, error: unknown) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    let left = pending.length;
    if (left === 0) resolve();
    for (const p of pending) {
      void vote(p).then(
        (v) => {
          left--;
          if (v === 'no' || left === 0) resolve();
        },
        (error: unknown) => {
          try {
            lost(p, error);
          } finally {
            resolve();
          }
        },
      );
    }
  });
}

/**
 * A prepare whose call threw. The platform failing to reach the agent (unreachable, reset,
 * overloaded, its storage refusing for now) is `agent_unavailable`; anything else is a fault of
 * the gateway's own, `internal_error` as everywhere else, logged and not echoed: it was
 * answered "could not be reached" with the exception's text in the abort's message.
 */
export function prepareFailed(agentId: string, error: unknown): Failure {
  const text = error instanceof Error ? error.message : String(error);
  if (isPlatformError(error)) return fail('agent_unavailable', `agent ${agentId} could not be reached: ${text}`);
  console.error(JSON.stringify({ level: 'error', msg: 'participant prepare failed', agentId, error: error instanceof Error ? `${error.name}: ${text}` : text }));
  return fail('internal_error', `agent ${agentId} failed to prepare (a fault of the gateway, logged); nothing was applied`);
}
