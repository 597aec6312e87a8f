import { REVOKED_RPC_ERROR, type KeyBoundOptions } from '../auth/key-watch';
import { sseEventData } from '../lib/sse-event';

type RequestId = string | number;
const isId = (id: unknown): id is RequestId => typeof id === 'string' || typeof id === 'number';

/** The ids of the requests in a body (one message or a batch); notifications and responses have none to answer. */
function requestIds(body: unknown): RequestId[] {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  return messages.flatMap((m) => (m && typeof m === 'object' && 'method' in m && 'id' in m && isId(m.id) ? [m.id] : []));
}

/**
 * How an MCP answer streamed as SSE ends when its key is revoked: one JSON-RPC error message per
 * request of the body still unanswered, in the SDK's own `event: message` frames, so the client's
 * pending calls fail with it rather than wait. The frames that passed are read for the responses
 * they carried (the answers of a stateless request are few and small).
 */
export function mcpRevokedEnding(body: unknown): Pick<KeyBoundOptions, 'lastFrame' | 'passed'> {
  const pending = new Set(requestIds(body));
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let buffered = '';
  return {
    passed(chunk) {
      if (pending.size === 0) return; // every request answered: nothing left to read for
      buffered += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const frame = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const message = sseEventData(frame);
        for (const answered of Array.isArray(message) ? message : [message]) {
          if (answered && typeof answered === 'object' && !('method' in answered) && 'id' in answered && isId(answered.id)) pending.delete(answered.id);
        }
      }
    },
    lastFrame() {
      const frames = [...pending].map((id) => `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id, error: REVOKED_RPC_ERROR })}\n\n`);
      return frames.length > 0 ? encoder.encode(frames.join('')) : undefined;
    },
  };
}
