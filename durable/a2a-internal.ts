/**
 * JSON-RPC -32603 on the A2A face. The SDK answers any error that is not an A2A error with
 * its message, and a storage error's message may quote SQL (the object's SQL helper wraps
 * failures with the query): the cause goes to the logs, with the gateway's request id, and
 * the client gets a generic message naming that id.
 */

export const INTERNAL_ERROR_CODE = -32603;

interface RpcError {
  code: number;
  message: string;
  data?: unknown;
}

export interface InternalErrorContext {
  /** The gateway's request id (the `x-request-id` of the answer), when the edge passed it. */
  requestId?: string;
  method: unknown;
}

/** `error` as the client sees it: a -32603 with the generic message, logged; any other as it is. */
export function shownError<E extends RpcError>(error: E, cause: unknown, context: InternalErrorContext): E {
  if (error.code !== INTERNAL_ERROR_CODE) return error;
  const detail = cause instanceof Error ? `${cause.name}: ${cause.message}` : (cause === undefined ? error.message : String(cause));
  console.error(JSON.stringify({ level: 'error', msg: 'a2a internal error', requestId: context.requestId, method: typeof context.method === 'string' ? context.method : undefined, error: detail }));
  const id = context.requestId ? ` (request ${context.requestId})` : '';
  return { ...error, message: `Internal error${id}: the request could not be completed; the gateway has logged the cause` };
}

/** A JSON-RPC answer with its -32603 error, if any, shown as `shownError` does. */
export function shownAnswer(answer: unknown, context: InternalErrorContext): unknown {
  if (typeof answer !== 'object' || answer === null || !('error' in answer)) return answer;
  const error = (answer as { error?: RpcError }).error;
  if (!error || typeof error.code !== 'number') return answer;
  return { ...answer, error: shownError(error, undefined, context) };
}
