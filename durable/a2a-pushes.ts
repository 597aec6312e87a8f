import { TaskState } from '@a2a-js/sdk';
import type { A2AStore } from './a2a-store';
import { pushBodies } from './a2a-push-wire';
import { stateOf } from './a2a-view';

/** Webhook id of the deliveries of a task's push notifications (they share the webhook machinery). */
export const pushDeliveryTarget = (taskId: string, configId: string): string => `a2a:${taskId}:${configId}`;

/** Queues one delivery; with `failure`, one recorded as failed for good (dead), with that error. */
export type QueueDelivery = (target: string, eventType: string, payload: string, now: number, failure?: string) => void;

/**
 * Queues a push of `executionId`'s task to each of its configs, inside the transaction of the
 * execution's change. A push reports the change and must never undo it: a throw while the task
 * or its body was built, or a delivery queued, propagated into the change's transaction, so an
 * execution's finish was not written (left running to the watchdog, or recorded failed,
 * internal_error, its output lost). What throws is logged, and each push it stopped is
 * recorded as a delivery that failed for good; reading the configs themselves failing is logged.
 */
export function queuePushes(tasks: A2AStore, queue: QueueDelivery, executionId: string, now: number): void {
  try {
    queueAll(tasks, queue, executionId, now);
  } catch (error) {
    console.error(JSON.stringify({ level: 'error', msg: 'a2a push notifications not queued', executionId, error: String(error) }));
  }
}

function queueAll(tasks: A2AStore, queue: QueueDelivery, executionId: string, now: number): void {
  if (!tasks.hasPushConfigs()) return;
  const taskId = tasks.taskIdOf(executionId);
  const configs = tasks.pushConfigs(taskId);
  if (configs.length === 0) return;
  const record = tasks.record(taskId);
  // Only the task's current turn speaks for it.
  if (!record || record.execution?.id !== executionId) return;
  const type = `a2a.task.${TaskState[record.closedState ?? stateOf(record.execution)]}`;
  let body: ReturnType<typeof pushBodies> | undefined;
  try {
    const task = tasks.view(taskId);
    if (!task) return;
    body = pushBodies(task);
  } catch (error) {
    return failAll(error);
  }
  for (const { config, wire } of configs) {
    const target = pushDeliveryTarget(taskId, config.id);
    try {
      queue(target, type, body(wire), now);
    } catch (error) {
      fail(target, error);
    }
  }

  function failAll(error: unknown): void {
    for (const { config } of configs) fail(pushDeliveryTarget(taskId, config.id), error);
  }

  function fail(target: string, error: unknown): void {
    const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    console.error(JSON.stringify({ level: 'error', msg: 'a2a push notification not built', taskId, executionId, target, error: detail }));
    try {
      queue(target, type, '', now, `the push notification could not be built (${detail}); the task is unchanged: read it with GetTask`);
    } catch (again) {
      console.error(JSON.stringify({ level: 'error', msg: 'a2a push failure not recorded', target, error: String(again) }));
    }
  }
}
