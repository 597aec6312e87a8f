import { Message, Task } from '@a2a-js/sdk';
import { jsonLimitProblem, utf8BytesOver } from '../worker/lib/json-limits';
import { MAX_INPUT_BYTES } from '../worker/schemas/common';

/**
 * Bounds of an incoming A2A message: the same as for an execution made through the REST API,
 * since each message becomes one. The limits are checked before the SDK stores anything (a
 * follow-up's history, a push config, the turn's execution).
 */

/** Client-chosen ids (messageId, contextId): as long as an intent, a JSON-RPC id or an Idempotency-Key. */
export const MAX_A2A_ID_CHARS = 256;
/** A task id is an execution id, which the gateway makes: at most 80 characters, as every id it makes. */
export const MAX_TASK_ID_CHARS = 80;

/**
 * Tasks a message may refer to, and extensions it may name. The SDK loads every referenced
 * task, one storage read and one log line each, before anything else: 20,000 of them (230 KB,
 * within the size limit) kept a local runtime busy for 14 s and then out of file handles.
 */
export const MAX_REFERENCE_TASKS = 16;
export const MAX_EXTENSIONS = 16;
const MAX_EXTENSION_CHARS = 2048;

/** Why the message's ids (its own, and the ones it refers to) are refused, or null. */
export function idProblem(message: Pick<Message, 'messageId' | 'contextId' | 'taskId' | 'referenceTaskIds' | 'extensions'>): string | null {
  if (message.messageId.length > MAX_A2A_ID_CHARS) return `message.messageId is longer than ${MAX_A2A_ID_CHARS} characters`;
  if (message.contextId.length > MAX_A2A_ID_CHARS) return `message.contextId is longer than ${MAX_A2A_ID_CHARS} characters`;
  if (message.taskId.length > MAX_TASK_ID_CHARS) return `message.taskId is longer than ${MAX_TASK_ID_CHARS} characters`;
  const references = message.referenceTaskIds ?? [];
  if (references.length > MAX_REFERENCE_TASKS) return `message.referenceTaskIds names more than ${MAX_REFERENCE_TASKS} tasks`;
  if (references.some((id) => id.length > MAX_TASK_ID_CHARS)) return `message.referenceTaskIds holds an id longer than ${MAX_TASK_ID_CHARS} characters`;
  const extensions = message.extensions ?? [];
  if (extensions.length > MAX_EXTENSIONS) return `message.extensions names more than ${MAX_EXTENSIONS} extensions`;
  if (extensions.some((uri) => uri.length > MAX_EXTENSION_CHARS)) return `message.extensions holds a URI longer than ${MAX_EXTENSION_CHARS} characters`;
  return null;
}

/**
 * Why the message is too large or too deep to run, or null. Both stored forms are bounded:
 * the message itself (the task's history keeps it, metadata included) and the execution input
 * made from it, which holds the text twice (`message`, read by text upstreams, and `parts`,
 * the message as A2A JSON): REST shows that input, and upstreams receive it.
 */
export function sizeProblem(message: Message, input: Record<string, unknown>): string | null {
  const limits = { maxBytes: MAX_INPUT_BYTES };
  const ofMessage = jsonLimitProblem(Message.toJSON(message), limits);
  if (ofMessage) return `message: ${ofMessage}`;
  const ofInput = jsonLimitProblem(input, limits);
  return ofInput ? `the execution input of this message (its text counts twice, as input.message and in input.parts): ${ofInput}` : null;
}

/**
 * Largest stored record of a task that a follow-up message may grow. The task's history and
 * artifacts are one JSON value in the agent's SQLite (a2a_tasks.task), which SQLite refuses
 * past 2 MB; each turn adds its message and the upstream's answer. The bound is checked
 * before a follow-up is stored, with the message, and leaves the turn's answer room under
 * SQLite's limit: a record at the bound is a long conversation (hundreds of turns of ordinary
 * text), which continues in a new task.
 */
export const MAX_TASK_RECORD_BYTES = 1024 * 1024;

/** Why `message` may not join `task` (the stored record would pass the bound), or null. */
export function recordProblem(task: Task, message: Message): string | null {
  const bytes = utf8BytesOver(JSON.stringify(Task.toJSON({ ...task, history: [...task.history, message] })), MAX_TASK_RECORD_BYTES);
  if (bytes === null) return null;
  return `task ${task.id} is full: with this message its stored record (history and artifacts) would take ${bytes} bytes, over the limit of ${MAX_TASK_RECORD_BYTES}; `
    + 'nothing was stored, the task stays readable and cancelable; continue in a new task (its message may name this one in referenceTaskIds)';
}
