import { ApiError } from '../worker/errors';

/** What an execution shows for a fault of the gateway's own: logged in full, described to no one. */
export const RUN_FAULT_MESSAGE = 'the gateway failed while running this execution (logged with its execution id)';

/**
 * The error an execution records when its run threw. An `ApiError` was written for the caller
 * (a pool credential the key cannot open names the pool and the way out, and is logged where it
 * is built): its message stands. Anything else may carry SQL, paths or upstream details: it is
 * logged with the execution id and shown as a generic message.
 */
export function runFault(executionId: string, error: unknown): { code: 'internal_error'; message: string } {
  if (error instanceof ApiError) return { code: 'internal_error', message: error.message };
  console.error(JSON.stringify({
    level: 'error', msg: 'execution failed: internal error', executionId,
    error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    ...(error instanceof Error && error.stack !== undefined && { stack: error.stack }),
  }));
  return { code: 'internal_error', message: RUN_FAULT_MESSAGE };
}
