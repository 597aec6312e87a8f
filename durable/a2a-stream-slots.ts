import type { Failure, Result } from '../worker/errors';

/**
 * A2A streams hold slots of the agent's stream cap (durable/stream-slots.ts), beside its event
 * streams: `SendStreamingMessage` and `SubscribeToTask` answers are SSE streams this object
 * holds, as the events route's are, and were not counted, so one key could hold thousands of
 * them on one agent. One agent has one budget of open streams, whichever face opened them.
 */

/** The A2A methods, v1.0 and v0.3 names, whose answer is an SSE stream. */
const STREAMING: ReadonlySet<unknown> = new Set(['SendStreamingMessage', 'SubscribeToTask', 'message/stream', 'tasks/resubscribe']);

/** Whether a JSON-RPC request asks for one of the streaming methods. */
export const opensStream = (body: unknown): boolean => typeof body === 'object' && body !== null && STREAMING.has((body as { method?: unknown }).method);

/** One stream's slot: `release` gives it back, once, however often it is called. */
export interface StreamSlot {
  release(): void;
}

/**
 * The A2A streams the agent's object holds open now (in its memory: an object reset ends them and
 * their count), in all and by the API key that opened them: a key's limiter asks how many of its
 * streams are still open to check its leases (durable/key-stream-leases.ts).
 */
export class A2AStreamSlots {
  private held = 0;
  private readonly byKey = new Map<string, number>();

  /** Streams open now; of `keyId` only, when given. */
  open = (keyId?: string): number => (keyId === undefined ? this.held : (this.byKey.get(keyId) ?? 0));

  take(keyId?: string): StreamSlot {
    this.held++;
    if (keyId !== undefined) this.byKey.set(keyId, (this.byKey.get(keyId) ?? 0) + 1);
    let holding = true;
    return {
      release: () => {
        if (!holding) return;
        holding = false;
        this.held--;
        if (keyId === undefined) return;
        const left = (this.byKey.get(keyId) ?? 1) - 1;
        if (left > 0) this.byKey.set(keyId, left);
        else this.byKey.delete(keyId);
      },
    };
  }
}

/**
 * Serves an A2A request, a streaming one with a slot: refused by `refusal` (429
 * `too_many_streams`) when the agent holds its most streams, or else the slot taken in the same
 * turn as that check, so that concurrent requests cannot both take the last one. The refusal
 * comes before `serve`, so a refused send starts no task and charges no budget. The slot goes
 * to `serve` for the stream to give back when it ends; an answer that is no stream (an error
 * before the first event, a refusal of the send) gives it back at once.
 */
export async function withStreamSlot<T extends { kind: 'json' | 'stream' }>(
  slots: A2AStreamSlots,
  request: { body: unknown; keyId?: string },
  refusal: () => Failure | null,
  serve: (slot?: StreamSlot) => Promise<Result<T>>,
): Promise<Result<T>> {
  if (!opensStream(request.body)) return serve();
  const refused = refusal();
  if (refused) return refused;
  const slot = slots.take(request.keyId);
  try {
    const reply = await serve(slot);
    if (!reply.ok || reply.value.kind !== 'stream') slot.release();
    return reply;
  } catch (error) {
    slot.release();
    throw error;
  }
}
