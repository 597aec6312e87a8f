import { A2AError, TaskNotFoundError } from '@a2a-js/sdk/errors';
import { ServerCallContext, type TaskStore } from '@a2a-js/sdk/server';
import type { A2AVersion } from '../worker/a2a/rpc-error';
import type { TokenCharge } from './agent-rpc';
import { PUSH_CHANGES, type PushChange } from './a2a-push-audit';

/**
 * Internal errors on the A2A face never show their cause: a storage error's message may quote
 * SQL (the object's SQL helper wraps failures with the query). The cause goes to the logs,
 * with the gateway's request id, and the client gets a generic message naming that id: in a
 * JSON-RPC -32603, and in the FAILED status the SDK saves into a task when the executor or
 * the task store throws (its DefaultRequestHandler puts the error's message there:
 * "Agent execution error: …", "Event processing loop failed: …").
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

/** Where the SDK's call context carries the request's InternalErrorContext (its state bag, meant for such data). */
const LOGGED = 'gateway.internalErrorContext';

/** Where it carries the key's token reservation for the turn the request starts (absent without one). */
const CHARGE = 'gateway.tokenCharge';

/** The methods that start a turn, in both protocol versions. */
export const SENDS: ReadonlySet<unknown> = new Set(['SendMessage', 'SendStreamingMessage', 'message/send', 'message/stream']);

/** Where it carries whether the request's turn has started (a send's): set by the executor once its execution is in. */
const TURN = 'gateway.turn';

/** Whether a request started its turn; an object, so that a copy of the state the SDK may make still shares it. */
export interface TurnMark {
  started: boolean;
}

/** The SDK's call context for one request: the executor and the stores see its request id (and `charge`, `turn`, and where push config changes are noted) there. */
export function callContext(version: A2AVersion, logged: InternalErrorContext, charge?: TokenCharge, turn?: TurnMark, pushChanges?: PushChange[]): ServerCallContext {
  const state = new Map<string, unknown>([
    [LOGGED, logged],
    ...(charge ? [[CHARGE, charge] as const] : []),
    ...(turn ? [[TURN, turn] as const] : []),
    ...(pushChanges ? [[PUSH_CHANGES, pushChanges] as const] : []),
  ]);
  return new ServerCallContext({ requestedVersion: version, state });
}

/** Marks the request's turn started: its execution is in, and the request counts as work even if its agent is then deleted. */
export function turnStarted(context: ServerCallContext | undefined): void {
  const turn = turnOf(context);
  if (turn) turn.started = true;
}

/** The request's turn mark (a send's), or undefined. */
export const turnOf = (context: ServerCallContext | undefined): TurnMark | undefined => context?.state.get(TURN) as TurnMark | undefined;

/** The token reservation the request's turn holds (a key with a token budget), or undefined. */
export const chargeOf = (context: ServerCallContext | undefined): TokenCharge | undefined => context?.state.get(CHARGE) as TokenCharge | undefined;

function loggedOf(context: ServerCallContext | undefined): InternalErrorContext {
  return (context?.state.get(LOGGED) as InternalErrorContext | undefined) ?? { method: undefined };
}

/**
 * The one -32603 written for the client, not caused by a fault: the DNS resolver could not
 * check a push URL's host right now, which the client mends by retrying (docs/A2A.md, Errors).
 * Its message names the host and the resolver's answer, as the REST 503 for a webhook does,
 * so it is shown as it is, not replaced by the generic message (which hid the advice to retry).
 */
const PUSH_URL_UNCHECKED = 'push notification URL cannot be checked right now (';

export const pushUrlUnchecked = (reason: string): A2AError => new A2AError(`${PUSH_URL_UNCHECKED}${reason}); retry later`);

/** The message a client sees for an internal error of request `requestId`. */
export function internalErrorMessage(requestId: string | undefined): string {
  const id = requestId ? ` (request ${requestId})` : '';
  return `Internal error${id}: the request could not be completed; the gateway has logged the cause`;
}

function logCause(cause: unknown, context: InternalErrorContext): void {
  const detail = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
  console.error(JSON.stringify({ level: 'error', msg: 'a2a internal error', requestId: context.requestId, method: typeof context.method === 'string' ? context.method : undefined, error: detail }));
}

/**
 * `cause` as the SDK may show it: an A2A error as it is (its message is meant for the client),
 * anything else logged and replaced by an error with the generic message.
 */
export function internalError(cause: unknown, context: ServerCallContext | undefined): Error {
  if (cause instanceof A2AError) return cause;
  const logged = loggedOf(context);
  logCause(cause, logged);
  return new Error(internalErrorMessage(logged.requestId));
}

/**
 * How `agentDeleted`'s message ends: a send answered so had started its turn (the task
 * existed), so the edge counts it against the key's budget instead of giving it back, unless
 * the agent's reply says the send started none (`A2AReply.noTurn`).
 */
export const AGENT_DELETED = ': the agent was deleted';

/** JSON-RPC's code of the SDK's TaskNotFoundError, in both protocol versions. */
const TASK_NOT_FOUND_CODE = -32001;

/**
 * What a request following a task gets when the agent is deleted under it: the task is gone
 * (an A2A error, shown as it is: -32001), not an internal failure.
 */
export const agentDeleted = (taskId: string): TaskNotFoundError => new TaskNotFoundError(`Task not found: ${taskId}${AGENT_DELETED}`);

/** Runs `work`; what it throws is thrown as `internalError` shows it. */
export async function guarded<T>(context: ServerCallContext | undefined, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw internalError(error, context);
  }
}

/**
 * The task store as the SDK's request handler uses it: what its reads and saves throw (the
 * SDK's result manager turns that into a FAILED status once the client has its first answer)
 * is shown as `internalError` does. Listing feeds no task, and its errors reach shownError.
 */
export function guardedTaskStore(store: TaskStore): TaskStore {
  return {
    load: (taskId, context) => guarded(context, () => store.load(taskId, context)),
    save: (task, context) => guarded(context, () => store.save(task, context)),
    list: (params, context) => store.list(params, context),
  };
}

/** `error` as the client sees it: a -32603 with the generic message, its cause logged once; any other as it is. */
export function shownError<E extends RpcError>(error: E, cause: unknown, context: InternalErrorContext): E {
  if (error.code !== INTERNAL_ERROR_CODE || error.message.startsWith(PUSH_URL_UNCHECKED)) return error;
  const message = internalErrorMessage(context.requestId);
  // The generic message already: made by internalError, which logged the cause.
  if (error.message !== message) logCause(cause ?? error.message, context);
  return { ...error, message };
}

/** A JSON-RPC answer with its -32603 error, if any, shown as `shownError` does. */
export function shownAnswer(answer: unknown, context: InternalErrorContext): unknown {
  if (typeof answer !== 'object' || answer === null || !('error' in answer)) return answer;
  const error = (answer as { error?: RpcError }).error;
  if (!error || typeof error.code !== 'number') return answer;
  return { ...answer, error: shownError(error, undefined, context) };
}

/**
 * Whether `answer` is the -32001 of an agent deleted (`agentDeleted`) given to a send whose
 * turn never started: the deletion began, or ended, while the request awaited (its push URL's
 * check), and it stopped before the execution went in, or the task it follows was gone.
 */
export function deletedBeforeTurn(answer: unknown, turn: TurnMark | undefined): boolean {
  if (!turn || turn.started || typeof answer !== 'object' || answer === null) return false;
  const error = (answer as { error?: { code?: unknown; message?: unknown } }).error;
  return error?.code === TASK_NOT_FOUND_CODE && typeof error.message === 'string' && error.message.endsWith(AGENT_DELETED);
}
