import type { Task } from '@a2a-js/sdk';
import { CANCELLED_ERROR } from '../worker/schemas/execution';
import { agentMessage, textPart } from './a2a-parts';

/**
 * Gives a CANCELED task whose execution the save is about to cancel the status a cancel through
 * REST leaves (a2a-view.ts statusMessage): the execution's error under its status message id.
 * The executor's cancel publishes that already; the SDK cancels a task no send follows (queued
 * on a paused agent, made through REST, after a restart) itself, with a message of its own
 * ("Task cancellation requested by user.", a random id) that it also adds to the history.
 */
export function asExecutionCancel(task: Task, executionId: string): void {
  const message = agentMessage(`${executionId}-status`, task.id, task.contextId, [textPart(`${CANCELLED_ERROR.code}: ${CANCELLED_ERROR.message}`)]);
  const said = task.status?.message;
  if (!task.status || said?.messageId === message.messageId) return;
  task.status = { ...task.status, message };
  task.history = task.history.filter((m) => m.messageId !== said?.messageId);
  task.history.push(message);
}
