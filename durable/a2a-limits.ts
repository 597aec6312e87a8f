import { Message } from '@a2a-js/sdk';
import { jsonLimitProblem } from '../worker/lib/json-limits';
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

/** Why the message's ids are refused, or null. */
export function idProblem(message: Pick<Message, 'messageId' | 'contextId' | 'taskId'>): string | null {
  if (message.messageId.length > MAX_A2A_ID_CHARS) return `message.messageId is longer than ${MAX_A2A_ID_CHARS} characters`;
  if (message.contextId.length > MAX_A2A_ID_CHARS) return `message.contextId is longer than ${MAX_A2A_ID_CHARS} characters`;
  if (message.taskId.length > MAX_TASK_ID_CHARS) return `message.taskId is longer than ${MAX_TASK_ID_CHARS} characters`;
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
