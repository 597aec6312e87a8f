import { Part, TaskState, type Message, type Task } from '@a2a-js/sdk';
import { AgentEvent, type AgentExecutor, type ExecutionEventBus, type RequestContext } from '@a2a-js/sdk/server';
import { newId } from '../worker/lib/ids';
import { CANCELLED_ERROR, TERMINAL } from '../worker/schemas/execution';
import type { A2AStore } from './a2a-store';
import { artifactsOf, stateOf, statusMessage } from './a2a-view';
import { agentMessage, textPart } from './a2a-parts';
import type { AgentStore } from './agent-store';
import { pausedNoteId } from './a2a-legacy';
import { agentDeleted, chargeOf, guarded, turnStarted } from './a2a-internal';
import { waitingCancelMessage } from './a2a-cancel-status';
import type { TokenCharge } from './agent-rpc';

/** Deadline of one A2A turn: A2A tasks may run long, and clients need not wait (returnImmediately). */
export const A2A_TURN_TIMEOUT_MS = 300_000;
/** The status message of a task queued on a paused agent. */
export const PAUSED_NOTE = 'the agent is paused: this task stays queued and runs when the agent is resumed; still queued at its deadline, it fails (upstream_timeout)';
/** A missed change notification costs at most this much latency, never a hung request. */
const RECHECK_MS = 5_000;

export interface TurnInput {
  executionId: string;
  taskId: string;
  contextId: string;
  turn: number;
  input: Record<string, unknown>;
  /** The task as it stands when the turn starts, saved with the link (first turn). */
  task: Task;
  /** The key's token reservation for the turn's execution, settled once it has ended. */
  charge?: TokenCharge;
}

/** What the executor needs from the agent object: the same runner the REST API uses. */
export interface ExecutorHost {
  readonly store: AgentStore;
  readonly tasks: A2AStore;
  /** Inserts the turn's execution and its task link in one transaction, then lets the runner start it. */
  startTurn(turn: TurnInput): void;
  /** Calls `listener` after each state change of the execution; returns the unsubscribe. */
  watch(executionId: string, listener: () => void): () => void;
}

/**
 * The upstream's input for one A2A message: its text, the parts as A2A JSON, and the tasks it
 * refers to when it names any (A2A asks agents to use them to understand a follow-up; they
 * are task ids of this agent, readable with GET /v1/agents/:id/executions/:eid).
 */
export function turnInput(message: Message, turn: number, acceptedOutputModes: readonly string[] = []): Record<string, unknown> {
  const text = message.parts.flatMap((p) => (p.content?.$case === 'text' ? [p.content.value] : [])).join('\n');
  const references = message.referenceTaskIds ?? [];
  return {
    message: text, messageId: message.messageId, contextId: message.contextId, taskId: message.taskId, turn, parts: message.parts.map((p) => Part.toJSON(p)),
    ...(references.length > 0 && { referenceTaskIds: references }),
    // The turn's artifact is shaped by them (a2a-output-modes.ts), and the upstream may tailor its answer.
    ...(acceptedOutputModes.length > 0 && { acceptedOutputModes: [...acceptedOutputModes] }),
  };
}

/**
 * Runs A2A messages as gateway executions. Each message is one turn: an execution (the
 * first turn's id is the task id) scheduled by the agent's runner, so concurrency, retries,
 * the outbox, webhooks and events apply as for the REST API. The executor only translates the
 * execution's state changes into A2A events while a request is listening; the state itself
 * lives in the execution row, so nothing is lost when no one listens.
 */
export class GatewayExecutor implements AgentExecutor {
  /** Executions whose CANCELED event the cancel path already published. */
  private readonly canceled = new Set<string>();

  constructor(private readonly host: ExecutorHost) {}

  /**
   * What a turn throws is internal (storage, a vanished row): an upstream's failure is the
   * execution's outcome, shown from its row. The SDK saves a thrown error's message into the
   * task's FAILED status, so it gets the generic one, and the cause is logged.
   */
  execute = (context: RequestContext, bus: ExecutionEventBus): Promise<void> => guarded(context.context, () => this.turn(context, bus));

  /** One turn: starts its execution, publishes the task, then follows the execution. */
  private async turn(context: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const { taskId, contextId } = context;
    const message = context.userMessage;
    const turn = context.task ? this.host.tasks.nextTurn(taskId) : 1;
    const executionId = turn === 1 ? taskId : newId('ex');
    const initial: Task = context.task ?? {
      id: taskId, contextId, status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() },
      artifacts: [], history: [message], metadata: undefined,
    };
    const charge = chargeOf(context.context);
    this.host.startTurn({ executionId, taskId, contextId, turn, input: turnInput(message, turn, context.request.configuration?.acceptedOutputModes), task: initial, ...(charge && { charge }) });
    turnStarted(context.context);
    const task = this.host.tasks.view(taskId);
    if (!task) throw new Error(`task ${taskId} vanished`);
    bus.publish(AgentEvent.task(task));
    await this.follow(taskId, contextId, executionId, task.status?.state, bus);
  }

  cancelTask = async (taskId: string, bus: ExecutionEventBus): Promise<void> => {
    const record = this.host.tasks.record(taskId);
    if (!record) return;
    const running = record.execution && !TERMINAL.has(record.execution.status) ? record.execution : undefined;
    if (record.execution) this.canceled.add(record.execution.id);
    // The status a cancel through REST leaves (a2a-view.ts statusMessage): the execution's error
    // under its status message id. A task waiting for input has no execution left to stop.
    const message = running
      ? agentMessage(`${running.id}-status`, taskId, record.contextId, [textPart(`${CANCELLED_ERROR.code}: ${CANCELLED_ERROR.message}`)])
      : waitingCancelMessage(taskId, record.contextId);
    // Saving this status (the SDK's result manager does) cancels the execution: see A2AStore.save.
    bus.publish(AgentEvent.statusUpdate({
      taskId, contextId: record.contextId, metadata: undefined,
      status: { state: TaskState.TASK_STATE_CANCELED, message, timestamp: new Date().toISOString() },
    }));
  };

  /** Publishes the execution's state changes until it finishes. */
  private async follow(taskId: string, contextId: string, executionId: string, published: TaskState | undefined, bus: ExecutionEventBus): Promise<void> {
    let last = published;
    for (;;) {
      const changed = this.nextChange(executionId);
      const row = this.host.store.execution(executionId);
      if (!row && !this.host.store.agentRow()) throw agentDeleted(taskId);
      if (!row) throw new Error(`execution ${executionId} vanished`);
      const state = stateOf(row);
      const finished = TERMINAL.has(row.status);
      // A cancel through A2A has published its own CANCELED event already.
      const announced = row.status === 'cancelled' && this.canceled.has(executionId);
      if (state !== last && !announced) {
        const agentId = this.host.tasks.agentId();
        for (const artifact of artifactsOf(row, agentId)) {
          bus.publish(AgentEvent.artifactUpdate({ taskId, contextId, artifact, append: false, lastChunk: true, metadata: undefined }));
        }
        bus.publish(AgentEvent.statusUpdate({
          taskId, contextId, metadata: undefined,
          status: { state, message: statusMessage(row, taskId, contextId, state, agentId), timestamp: new Date(row.finished_at ?? row.started_at ?? row.created_at).toISOString() },
        }));
        last = state;
      }
      if (finished) {
        this.canceled.delete(executionId);
        return;
      }
      if (row.status === 'queued' && this.host.store.agentRow()?.paused) {
        this.announcePaused(taskId, contextId, executionId, bus);
        return;
      }
      await changed;
    }
  }

  /**
   * Nobody waits on a paused agent: REST refuses sync work (409 agent_paused) and queues async
   * work. A2A has no such error, so a blocking send and a stream both end with the task still
   * SUBMITTED, and this status says why, so that a client can tell it from a broken stream.
   */
  private announcePaused(taskId: string, contextId: string, executionId: string, bus: ExecutionEventBus): void {
    bus.publish(AgentEvent.statusUpdate({
      taskId, contextId, metadata: undefined,
      status: { state: TaskState.TASK_STATE_SUBMITTED, message: agentMessage(pausedNoteId(executionId), taskId, contextId, [textPart(PAUSED_NOTE)]), timestamp: new Date().toISOString() },
    }));
  }

  private nextChange(executionId: string): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, RECHECK_MS);
      const unwatch = this.host.watch(executionId, done);
      function done() {
        clearTimeout(timer);
        unwatch();
        resolve();
      }
    });
  }
}
