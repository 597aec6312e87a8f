import {
  TaskState, type AgentCard, type CancelTaskRequest, type ListTaskPushNotificationConfigsRequest, type ListTaskPushNotificationConfigsResponse, type Message,
  type StreamResponse, type SubscribeToTaskRequest, type Task, type TaskPushNotificationConfig,
} from '@a2a-js/sdk';
import { RequestMalformedError, TaskNotCancelableError, UnsupportedOperationError } from '@a2a-js/sdk/errors';
import {
  DefaultRequestHandler, RequestContext, type AgentExecutionEvent, type AgentExecutor, type ExecutionEventBusManager,
  type PushNotificationSender, type PushNotificationStore, type ServerCallContext,
} from '@a2a-js/sdk/server';
import { newId } from '../worker/lib/ids';
import { turnInput } from './a2a-executor';
import { idProblem, recordProblem, sizeProblem } from './a2a-limits';
import type { A2AStore } from './a2a-store';
import { TERMINAL_TASK_STATES } from './a2a-view';
import { guardedTaskStore, turnOf } from './a2a-internal';
import type { TurnClaims } from './a2a-turn-claims';

type ContextFactory = (request: { message?: Message; configuration?: { taskPushNotificationConfig?: TaskPushNotificationConfig; acceptedOutputModes?: string[] } }, context: ServerCallContext) => Promise<RequestContext>;
type EventMapper = (event: AgentExecutionEvent, context: ServerCallContext) => Promise<StreamResponse>;

/** The SDK would send push notifications itself, once, from memory: the durable path (A2AServer) does. */
const noPushSender: PushNotificationSender = { send: async () => undefined };

/**
 * The SDK's request handler with the gateway's rules. The SDK has no options for most, so
 * two of its private methods are wrapped; both are checked when the handler is made, so an
 * SDK upgrade that renames them fails at the first A2A request (and in the tests), never
 * silently:
 * - `_createRequestContext`: an incoming message is refused (-32602) when its ids or its size
 *   exceed the bounds of an execution, or its push config is one the task cannot take (a
 *   refused URL, one too many), or (-32004) when a follow-up would grow its task's stored
 *   record past its bound (a2a-limits.ts), or while another message is being taken as its
 *   next turn (the check claims the turn in the same step: a2a-turn-claims.ts), before the SDK stores a follow-up's history;
 *   and new tasks get gateway execution ids (`ex_<ulid>`, time-ordered, which D1's
 *   execution lists sort and page by) instead of random UUIDs: the task IS the execution.
 * - `_mapEventToStreamResponse`: a stream's task event shows the task as the executor
 *   published it. The SDK reloads it from the store when the stream gets to the event, and
 *   for a fast upstream the store already holds the finished task, so the stream showed
 *   COMPLETED first and its artifact and COMPLETED status after it.
 *
 * One is an option: no bus outlives its executor (`keepBusAliveStates: []`). The SDK keeps a
 * task's bus open after an interrupted state for an executor that resumes on it, and its
 * stream ends on INPUT_REQUIRED but not on AUTH_REQUIRED; here a turn's executor returns when
 * its execution finishes and the next turn is a new execution, so an auth-required stream
 * stayed open until the client gave up.
 *
 * Its task store is guarded (a2a-internal.ts): the SDK writes a failed save's error message
 * into the task's FAILED status, and that message must not quote SQL.
 */
export class GatewayRequestHandler extends DefaultRequestHandler {
  constructor(card: AgentCard, private readonly tasks: A2AStore, executor: AgentExecutor, buses: ExecutionEventBusManager, pushes: PushNotificationStore, private readonly claims: TurnClaims) {
    super(card, guardedTaskStore(tasks), executor, buses, pushes, noPushSender, undefined, undefined, { keepBusAliveStates: [] });
    const self = this as unknown as { _createRequestContext: ContextFactory; _mapEventToStreamResponse: EventMapper };
    if (typeof self._createRequestContext !== 'function' || typeof self._mapEventToStreamResponse !== 'function') {
      throw new Error('@a2a-js/sdk changed: DefaultRequestHandler._createRequestContext or _mapEventToStreamResponse is gone');
    }
    const createContext = self._createRequestContext.bind(this);
    self._createRequestContext = async (request, context) => {
      const incoming = request.message;
      const taskId = incoming?.taskId ? undefined : newId('ex');
      if (incoming) this.checkMessage(incoming, taskId, request.configuration?.acceptedOutputModes, context);
      const push = request.configuration?.taskPushNotificationConfig;
      // Under the id its task will have: the check names it if the agent is deleted meanwhile.
      if (push && incoming) await this.tasks.checkConfig(taskId ?? incoming.taskId, push);
      const made = await createContext(request, context);
      if (!taskId) return made;
      const message = { ...made.userMessage, taskId };
      return new RequestContext({ ...made.request, message }, taskId, made.contextId, made.context, made.task, made.referenceTasks);
    };
    const mapEvent = self._mapEventToStreamResponse.bind(this);
    // A copy: the SDK trims the event's history for the client (historyLength), and its
    // result manager keeps working on the event's task.
    self._mapEventToStreamResponse = async (event, context) =>
      event.kind === 'task' ? { payload: { $case: 'task', value: structuredClone(event.data) } } : mapEvent(event, context);
  }

  /**
   * Every terminal task is not cancelable (-32002), as the REST cancel of a finished execution
   * is 409 already_finished. The SDK answers a CANCELED task with itself instead.
   */
  override async cancelTask(params: CancelTaskRequest, context: ServerCallContext): Promise<Task> {
    const state = (await this.tasks.load(params.id))?.status?.state;
    if (state !== undefined && TERMINAL_TASK_STATES.has(state)) {
      throw new TaskNotCancelableError(`Task not cancelable: ${params.id} is ${TaskState[state]}`);
    }
    return super.cancelTask(params, context);
  }

  /**
   * A finished task cannot be subscribed to (-32004), as the SDK says too, naming the state
   * by its name (the SDK's message gives the enum's number).
   */
  override async *resubscribe(params: SubscribeToTaskRequest, context: ServerCallContext): AsyncGenerator<StreamResponse, void, undefined> {
    const state = params.id ? (await this.tasks.load(params.id))?.status?.state : undefined;
    if (state !== undefined && TERMINAL_TASK_STATES.has(state)) {
      throw new UnsupportedOperationError(`Task ${params.id} is ${TaskState[state]}: a finished task cannot be subscribed to; read it with GetTask`);
    }
    yield* super.resubscribe(params, context);
  }

  /**
   * A page of a task's push configs, oldest first: at most `pageSize` (all when it is 0 or
   * absent, as in v0.3, which has no paging), the next page's token the position to go on from.
   * The SDK answers every config with an empty token whatever `pageSize` asks for.
   */
  override async listTaskPushNotificationConfigs(params: ListTaskPushNotificationConfigsRequest, context: ServerCallContext): Promise<ListTaskPushNotificationConfigsResponse> {
    const { pageSize = 0, pageToken = '' } = params;
    if (!Number.isInteger(pageSize) || pageSize < 0) throw new RequestMalformedError('pageSize must be a non-negative integer');
    const start = pageToken === '' ? 0 : /^[1-9]\d{0,3}$/.test(pageToken) ? Number(pageToken) : -1;
    if (start < 0) throw new RequestMalformedError('pageToken is not one this server issued');
    const { configs } = await super.listTaskPushNotificationConfigs(params, context);
    const end = pageSize === 0 ? configs.length : start + pageSize;
    return { configs: configs.slice(start, end), nextPageToken: end < configs.length ? String(end) : '' };
  }

  /**
   * Throws the SDK's invalid-params error when `message` is out of bounds, and its
   * unsupported-operation error (-32004) when it follows up a finished task (naming its state,
   * where the SDK gives the enum's number) or would grow its task's stored record past
   * MAX_TASK_RECORD_BYTES. The input is built as the executor will build it; a context id the
   * SDK fills in later is counted at the length of the UUID it makes, so the estimate is
   * within a few hundred bytes of what is stored.
   */
  private checkMessage(message: Message, newTaskId: string | undefined, acceptedOutputModes: readonly string[] | undefined, context: ServerCallContext): void {
    const ids = idProblem(message);
    if (ids) throw new RequestMalformedError(ids);
    const turn = newTaskId ? 1 : this.tasks.nextTurn(message.taskId);
    const resolved = { ...message, taskId: newTaskId ?? message.taskId, contextId: message.contextId || crypto.randomUUID() };
    const size = sizeProblem(message, turnInput(resolved, turn, acceptedOutputModes));
    if (size) throw new RequestMalformedError(size);
    if (newTaskId) return;
    // The task as the SDK will load it and save it with the message appended; an unknown one
    // is left to the SDK (-32001).
    const task = this.tasks.view(message.taskId);
    const state = task?.status?.state;
    if (!task) return;
    if (state !== undefined && TERMINAL_TASK_STATES.has(state)) {
      throw new UnsupportedOperationError(`Task ${task.id} is ${TaskState[state]}: a finished task takes no more messages; continue in a new task (its message may name this one in referenceTaskIds)`);
    }
    // A turn beside a running one shares its task's event bus (the SDK keys buses by task):
    // its send was answered with whichever turn ended first, and its own answer was lost.
    if (state === TaskState.TASK_STATE_SUBMITTED || state === TaskState.TASK_STATE_WORKING) {
      throw new UnsupportedOperationError(`Task ${task.id} is ${TaskState[state]}: its turn is still running; send this message once the task asks for input, follow the turn with SubscribeToTask, or cancel it`);
    }
    const full = recordProblem(task, message);
    if (full) throw new UnsupportedOperationError(full);
    // In the same step as the state's check: another message taken meanwhile holds the turn (a2a-turn-claims.ts).
    const owner = turnOf(context);
    if (owner && !this.claims.claim(task.id, owner)) {
      throw new UnsupportedOperationError(`Task ${task.id} is taking another message as its next turn; send this message once the task asks for input again, follow the turn with SubscribeToTask, or cancel it`);
    }
  }
}
