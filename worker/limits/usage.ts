import { concatBytes } from '../lib/bytes';
import type { ChatCompletionRequest } from '../schemas/openai';

/** Completion tokens reserved for a chat that does not say (no max_tokens). */
export const DEFAULT_COMPLETION_TOKENS = 256;
/** Most of a response read for its `usage`; larger bodies settle at the reservation. */
const MAX_USAGE_BODY = 256 * 1024;

/** An OpenAI `usage` object. */
export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

const tokensOf = (chars: number): number => Math.ceil(chars / 4);

/** The prompt's tokens at ~4 characters per token: what the reservation counts for it. */
export function promptTokens(messages: unknown): number {
  let chars = 0;
  for (const message of Array.isArray(messages) ? messages : []) {
    const content: unknown = (message as { content?: unknown } | null)?.content;
    chars += typeof content === 'string' ? content.length : content == null ? 0 : JSON.stringify(content).length;
  }
  return tokensOf(chars);
}

/**
 * The usage of an answer the gateway wrote itself (the built-in responder), which no model
 * counted: the same ~4 characters per token as the reservation, for the prompt and the answer.
 */
export function estimatedUsage(messages: unknown, content: string): ChatUsage {
  const prompt = promptTokens(messages);
  const completion = tokensOf(content.length);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * What a target that reports no usage is charged: the prompt as the reservation counted it and
 * the answer text the gateway saw, at the same ~4 characters a token, never more than was
 * reserved (the estimate may not cost the key more than the reservation would have).
 */
export const estimatedTokens = (prompt: number, completionChars: number, reserved: number): number => Math.min(reserved, prompt + tokensOf(completionChars));

const textLength = (value: unknown): number => (typeof value === 'string' ? value.length : 0);

/**
 * Characters of the text a model generated in a completion's `choices`: of each choice's
 * `message` (a whole answer) or `delta` (a stream chunk), its content, refusal, reasoning
 * (`reasoning_content`, `reasoning`) and tool calls' names and arguments. What its completion
 * tokens went into, for an answer whose target did not count them.
 */
export function completionChars(choices: unknown, part: 'message' | 'delta'): number {
  if (!Array.isArray(choices)) return 0;
  let chars = 0;
  for (const choice of choices as unknown[]) {
    const said: unknown = (choice as Record<string, unknown> | null)?.[part];
    if (typeof said !== 'object' || said === null) continue;
    const { content, refusal, reasoning, reasoning_content: reasoningContent, tool_calls: calls, function_call: legacy } = said as Record<string, unknown>;
    chars += typeof content === 'string' || content == null ? textLength(content) : JSON.stringify(content).length;
    chars += textLength(refusal) + textLength(reasoning) + textLength(reasoningContent);
    const functions = Array.isArray(calls) ? (calls as unknown[]).map((call) => (call as { function?: unknown } | null)?.function) : [];
    for (const fn of [...functions, legacy]) {
      if (typeof fn === 'object' && fn !== null) chars += textLength((fn as { name?: unknown }).name) + textLength((fn as { arguments?: unknown }).arguments);
    }
  }
  return chars;
}

/** `value` as a usage object when it is one (whole, non-negative counts), else null. */
export function usageOf(value: unknown): ChatUsage | null {
  if (typeof value !== 'object' || value === null) return null;
  const { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total } = value as Record<string, unknown>;
  const count = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  return count(prompt) && count(completion) && count(total) ? { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total } : null;
}

/** Whether a chat request asks for a stream's usage chunk (`stream_options.include_usage`). */
export function wantsStreamUsage(body: unknown): boolean {
  const options: unknown = (body as { stream_options?: unknown } | null)?.stream_options;
  return typeof options === 'object' && options !== null && (options as { include_usage?: unknown }).include_usage === true;
}

/** What a chat completion may use, as the key's token budget sees it before the call. */
export interface ChatTokenEstimate {
  /** To reserve: the completion's cap (or a default) plus the prompt. */
  tokens: number;
  /**
   * The least it can run with: all of `tokens` when the client capped the completion; the
   * prompt and one token when the cap is only the gateway's default.
   */
  least: number;
  /** The prompt's part of `tokens`: an answer whose target reports no usage is charged it too. */
  prompt: number;
  /** The choices asked for (`n`), each of which may use the completion cap: 1 unless said. */
  choices?: number;
}

/** A chat's completion cap as asked: `max_completion_tokens`, else `max_tokens`; undefined when neither is a usable number. */
export function completionCap(chat: { max_completion_tokens?: unknown; max_tokens?: unknown }): number | undefined {
  return [chat.max_completion_tokens, chat.max_tokens].find((n): n is number => typeof n === 'number' && Number.isFinite(n) && n >= 0);
}

/**
 * Tokens to reserve for a chat completion before calling the upstream: the completion's cap
 * (max_completion_tokens, max_tokens, else a default) for each choice asked for (`n`), plus
 * the prompt at ~4 characters per token. It only needs to be an upper-ish bound: the
 * reservation is settled with the real `usage.total_tokens` afterwards.
 */
export function estimateChatTokens(body: unknown): ChatTokenEstimate {
  if (typeof body !== 'object' || body === null) return { tokens: DEFAULT_COMPLETION_TOKENS, least: 1, prompt: 0 };
  const chat = body as Partial<ChatCompletionRequest> & { max_tokens?: unknown; max_completion_tokens?: unknown; n?: unknown };
  const cap = completionCap(chat);
  const choices = typeof chat.n === 'number' && Number.isSafeInteger(chat.n) && chat.n > 1 ? chat.n : 1;
  const prompt = promptTokens(chat.messages);
  const tokens = Math.ceil(cap ?? DEFAULT_COMPLETION_TOKENS) * choices + prompt;
  return { tokens, least: cap === undefined ? prompt + choices : tokens, prompt, choices };
}

/**
 * Tokens to reserve for an execution (REST, an A2A send, an MCP `execute_intent`): its request
 * body at ~4 characters a token, for the input it carries, plus the answer allowance a chat
 * without max_tokens gets. It must fit whole: nothing can cap what an agent's upstream answers.
 */
export function estimateExecutionTokens(bodyText: string): ChatTokenEstimate {
  const prompt = tokensOf(bodyText.length);
  const tokens = prompt + DEFAULT_COMPLETION_TOKENS;
  return { tokens, least: tokens, prompt };
}

/**
 * What a finished execution used, for the key's token budget: the usage its upstream reported
 * (an openai-chat upstream keeps it in `output.usage`), else its input and output text at ~4
 * characters a token. Not capped at the reservation: nothing capped the answer either.
 */
export function executionTokens(input: string | null, output: unknown): number {
  return executionUsage(input, output).total_tokens;
}

/**
 * `executionTokens` as an OpenAI `usage`: what a chat through an agent reports, so its answer
 * says what its execution is charged. `input` is the execution's input as stored (its JSON).
 */
export function executionUsage(input: string | null, output: unknown): ChatUsage {
  const reported = typeof output === 'object' && output !== null && 'usage' in output ? usageOf(output.usage) : null;
  if (reported) return reported;
  const reply = typeof output === 'object' && output !== null && 'reply' in output && typeof output.reply === 'string' ? output.reply : output === undefined ? '' : JSON.stringify(output);
  const prompt = tokensOf((input ?? '').length);
  const completion = tokensOf(reply.length);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/**
 * What an OpenAI JSON response used: its `usage.total_tokens`; else, for a completion (it has
 * `choices`), the answer's `estimatedTokens` from `prompt`, capped at `reserved`; else null.
 */
export function totalTokens(text: string, prompt: number, reserved: number): number | null {
  let answer: { usage?: { total_tokens?: unknown } | null; choices?: unknown } | null;
  try {
    answer = JSON.parse(text) as typeof answer;
  } catch {
    return null;
  }
  const total = answer?.usage?.total_tokens;
  if (typeof total === 'number' && Number.isFinite(total) && total >= 0) return total;
  return Array.isArray(answer?.choices) ? estimatedTokens(prompt, completionChars(answer.choices, 'message'), reserved) : null;
}

/**
 * Passes `response` through unchanged and calls `done` once its body has been delivered
 * (with the text, when `collect` and it fit) or abandoned — the client went away, the stream
 * broke — with null. Lets a lease live exactly as long as the response does.
 */
export function onBodyEnd(response: Response, collect: boolean, done: (text: string | null) => Promise<void>, waitUntil: (p: Promise<unknown>) => void): Response {
  if (!response.body) {
    waitUntil(done(null));
    return response;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      if (collect && size <= MAX_USAGE_BODY) {
        chunks.push(chunk);
        size += chunk.byteLength;
      }
      controller.enqueue(chunk);
    },
  });
  const text = (): string | null => {
    if (!collect || size > MAX_USAGE_BODY) return null;
    return new TextDecoder().decode(concatBytes(chunks, size));
  };
  waitUntil(response.body.pipeTo(writable).then(text, () => null).then(done));
  return new Response(readable, response);
}
