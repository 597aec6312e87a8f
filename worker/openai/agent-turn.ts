import { ApiError } from '../errors';
import { jsonLimitProblem } from '../lib/json-limits';
import { MAX_INPUT_BYTES } from '../schemas/common';
import { contentText, type ChatCompletionRequest } from '../schemas/openai';

/**
 * The execution input of a chat through an agent: the last user message, the new turn. It is
 * an execution like one made through REST, A2A or MCP, so it has their input bound (256 KiB of
 * JSON): a chat's message may be far longer (a pool's target takes it whole), and such a turn
 * used to be stored and sent past the bound every other way of starting work refuses.
 */
export function agentTurnInput(messages: ChatCompletionRequest['messages']): { message: string } {
  const index = messages.findLastIndex((m) => m.role === 'user');
  const last = messages[index];
  // Issues as validation's (with a `code`), so the envelope's `param` names the field, as README promises.
  if (!last) throw new ApiError('invalid_request', 'messages need a user message', [{ path: ['messages'], message: 'no message with role "user"', code: 'custom' }]);
  const input = { message: contentText(last.content) };
  const problem = jsonLimitProblem(input, { maxBytes: MAX_INPUT_BYTES });
  if (problem !== null) {
    const message = `the last user message is the agent's execution input, bounded as every execution's is: ${problem}`;
    throw new ApiError('invalid_request', message, [{ path: ['messages', index, 'content'], message, code: 'custom' }]);
  }
  return input;
}
