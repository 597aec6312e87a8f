import type { Message, Task } from '@a2a-js/sdk';
import { CANCELLED_ERROR } from '../worker/schemas/execution';
import { agentMessage, textPart } from './a2a-parts';

/** What every cancel says, through either API: the execution's cancel error, as REST shows it. */
const CANCEL_TEXT = `${CANCELLED_ERROR.code}: ${CANCELLED_ERROR.message}`;

/**
 * The status message of a task canceled while it waited for input (or auth): no execution was
 * left to stop, so none holds the error; the text is the one every cancel shows, under an id
 * of the task's own (a task is canceled once).
 */
export const waitingCancelMessage = (taskId: string, contextId: string): Message =>
  agentMessage(`${taskId}-cancel`, taskId, contextId, [textPart(CANCEL_TEXT)]);

/**
 * Gives a CANCELED task whose execution the save is about to cancel the status a cancel through
 * REST leaves (a2a-view.ts statusMessage): the execution's error under its status message id.
 * The executor's cancel publishes that already; the SDK cancels a task no send follows (queued
 * on a paused agent, made through REST, after a restart) itself, with a message of its own
 * ("Task cancellation requested by user.", a random id) that it also adds to the history.
 */
export function asExecutionCancel(task: Task, executionId: string): void {
  asStatus(task, agentMessage(`${executionId}-status`, task.id, task.contextId, [textPart(CANCEL_TEXT)]));
}

/**
 * Gives a CANCELED task that waited for input `waitingCancelMessage`, in place of the message
 * the SDK's own cancel gives it (a task waiting between turns has no event bus: the SDK cancels it).
 */
export function asWaitingCancel(task: Task): void {
  asStatus(task, waitingCancelMessage(task.id, task.contextId));
}

function asStatus(task: Task, message: Message): void {
  const said = task.status?.message;
  if (!task.status || said?.messageId === message.messageId) return;
  task.status = { ...task.status, message };
  task.history = task.history.filter((m) => m.messageId !== said?.messageId);
  task.history.push(message);
}
