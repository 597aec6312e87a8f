import { completionCap, type ChatUsage } from '../limits/usage';

/** Builders for OpenAI-shaped responses the gateway produces itself (builtin targets, agents). */

/**
 * Whether a target's parsed 200 is a chat completion at all: an object with a `choices` array.
 * No more than that is asked (extra fields, an empty array, a choice of an unknown shape all
 * pass): what a client makes of its choices is its own, but `{}`, `[]` or `{"choices": "x"}`
 * is a target answering wrong, to fail over like a 5xx.
 */
export const isChatCompletion = (value: unknown): boolean =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && Array.isArray((value as { choices?: unknown }).choices);

/** Why an answer the gateway wrote ended: whole, or cut at the request's token cap. */
export type FinishReason = 'stop' | 'length';

/**
 * An answer the gateway wrote (the built-in responder), held to the request's cap as a model
 * holds its own: `max_completion_tokens`, else `max_tokens`, at the ~4 characters a token its
 * usage is estimated with; a longer one is cut there, finished by `length`. The cap may be the
 * key's budget's (routes/openai.ts), which must not pay for more than it reserved.
 */
export function heldToCap(content: string, body: Readonly<Record<string, unknown>>): { content: string; finish: FinishReason } {
  const cap = completionCap(body);
  const most = cap === undefined ? Infinity : Math.floor(cap) * 4;
  return content.length > most ? { content: content.slice(0, most), finish: 'length' } : { content, finish: 'stop' };
}

export function completion(id: string, model: string, content: string, usage: ChatUsage, created = Math.floor(Date.now() / 1000), finish: FinishReason = 'stop') {
  return {
    id,
    object: 'chat.completion' as const,
    created,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: finish }],
    usage,
  };
}

const encoder = new TextEncoder();
export const sseEvent = (payload: unknown): Uint8Array => encoder.encode(`data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`);

/**
 * A finished answer as an OpenAI stream: role, content, stop, [DONE]. With `usage` (the request
 * asked for `stream_options.include_usage`), as OpenAI sends it: every chunk carries
 * `usage: null`, and one more chunk with no choices carries the usage before [DONE].
 */
export function completionStream(id: string, model: string, content: string, usage?: ChatUsage, finish: FinishReason = 'stop', created = Math.floor(Date.now() / 1000)): ReadableStream<Uint8Array> {
  const base = { id, object: 'chat.completion.chunk', created, model };
  const chunk = (delta: Record<string, string>, finish: string | null) => ({ ...base, choices: [{ index: 0, delta, finish_reason: finish }], ...(usage && { usage: null }) });
  const chunks: unknown[] = [chunk({ role: 'assistant', content: '' }, null), chunk({ content }, null), chunk({}, finish)];
  if (usage) chunks.push({ ...base, choices: [], usage });
  const events = [...chunks.map(sseEvent), sseEvent('[DONE]')];
  return new ReadableStream({
    start(controller) {
      for (const event of events) controller.enqueue(event);
      controller.close();
    },
  });
}

export const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
