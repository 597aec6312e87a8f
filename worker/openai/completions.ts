/** Builders for OpenAI-shaped responses the gateway produces itself (builtin targets, agents). */

export function completion(id: string, model: string, content: string, created = Math.floor(Date.now() / 1000)) {
  return {
    id,
    object: 'chat.completion' as const,
    created,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  };
}

const encoder = new TextEncoder();
export const sseEvent = (payload: unknown): Uint8Array => encoder.encode(`data: ${typeof payload === 'string' ? payload : JSON.stringify(payload)}\n\n`);

/** A finished answer as an OpenAI stream: role, content, stop, [DONE]. */
export function completionStream(id: string, model: string, content: string): ReadableStream<Uint8Array> {
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: Record<string, string>, finish: string | null) => ({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }] });
  const events = [sseEvent(chunk({ role: 'assistant', content: '' }, null)), sseEvent(chunk({ content }, null)), sseEvent(chunk({}, 'stop')), sseEvent('[DONE]')];
  return new ReadableStream({
    start(controller) {
      for (const event of events) controller.enqueue(event);
      controller.close();
    },
  });
}

export const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };
