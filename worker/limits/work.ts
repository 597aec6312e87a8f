import type { Context } from 'hono';
import { deletedWhileRunning } from '../../durable/agent-rpc';
import { revokedWhileRunning } from '../auth/key-watch';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';

/**
 * What a call that asked to start budgeted work did: `refused` before any work started (bad
 * params, an unknown task or agent), `replayed` an answer the gateway already had without
 * calling an upstream (a repeated Idempotency-Key, a response-cache hit), or `started` (or may
 * have: a 5xx), even if it then failed.
 */
export type WorkOutcome = 'refused' | 'replayed' | 'started';

/**
 * Tells the limits middleware what the request's work came to where its HTTP status cannot:
 * a JSON-RPC refusal travels in a 200, and a sync execution cancelled while it ran answers a
 * 409. A refused request gives its budget back as a 4xx does; a start is final, so a JSON-RPC
 * batch in which one call started work counts whatever its other calls did.
 *
 * @example if (isRefusal(reply)) noteWork(c, 'refused');
 */
export function noteWork(c: Context<AppEnv>, outcome: WorkOutcome): void {
  if (c.get('work') !== 'started') c.set('work', outcome);
}

/**
 * Whether a response of `status` gives the request's budget back: a 4xx, a refusal in a 200,
 * or a replayed answer (whatever its status: it called no upstream).
 */
export function givesBack(c: Context<AppEnv>, status: number): boolean {
  const work = c.get('work');
  return work === 'refused' || work === 'replayed' || (status >= 400 && status < 500 && work !== 'started');
}

/**
 * Whether an error answers work that had started although its status is a 4xx: a sync
 * execution whose agent was deleted while it ran (404), or whose key was revoked before its
 * answer (401). Such a request counts, not given back.
 */
export const startedWork = (error: unknown): boolean => (error instanceof ApiError && deletedWhileRunning(error.details)) || revokedWhileRunning(error);
