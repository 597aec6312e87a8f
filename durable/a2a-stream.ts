import { STREAM_STALL_MS } from './agent-events';
import { StreamProgress, waitingBytes } from './event-progress';
import type { StreamSlot } from './a2a-stream-slots';

/**
 * The stream's timings, settings rather than constants so that the tests can wait less.
 * `heartbeatMs`: a stream sends an SSE comment after this long without an event, as the event
 * stream does: a turn may run 5 minutes between its WORKING and its end, and proxies that close
 * idle connections (60 s is a common default) would cut the client off. `stallMs`: how long
 * frames may wait untaken before the stream is ended, as an event stream's are (STREAM_STALL_MS).
 */
export const A2A_STREAMS = { heartbeatMs: 15_000, stallMs: STREAM_STALL_MS };
const HEARTBEAT_FRAME = new TextEncoder().encode(': heartbeat\n\n');
/** Counts the backlog in bytes, and asks for none ahead: the next event is read when the client reads. */
const byteBacklog: QueuingStrategy<Uint8Array> = { highWaterMark: 0, size: (chunk) => chunk.byteLength };

export interface A2AStreamSource {
  first: IteratorResult<unknown>;
  iterator: AsyncIterator<unknown>;
  /** An SDK event as an SSE frame. */
  encode(event: unknown): Uint8Array;
  /** The last frame of a stream whose events failed: a JSON-RPC error event. */
  errorFrame(error: unknown): Uint8Array;
}

/**
 * The SSE answer of a streaming A2A method: the first event, the rest as the client reads, and
 * heartbeat comments, ended after the last event or an error event. It holds `slot` (the
 * agent's stream cap) until it ends, however that is: its turn's end, an error, its client's
 * cancel, or its client's silence. The runtime does not always pass a client's cancel on to
 * the object (the events' streams met it first), and a stream it never reached held its slot
 * until the object was reset, its frames untaken. A heartbeat that finds frames waiting and
 * none taken for `stallMs` ends it, as an event stream's does.
 */
export function a2aStream(source: A2AStreamSource, slot: StreamSlot | undefined): ReadableStream<Uint8Array> {
  const { first, iterator } = source;
  let heartbeat: ReturnType<typeof setInterval> | undefined;
  let quiet = true;
  let done = false;
  let tookAt = Date.now();
  const progress = new StreamProgress();
  const ended = () => {
    done = true;
    clearInterval(heartbeat);
    slot?.release();
  };
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.done) {
        ended();
        return controller.close();
      }
      progress.enqueue(controller, source.encode(first.value));
      // Frames are enqueued whole, so a comment never lands inside an event.
      heartbeat = setInterval(() => {
        const now = Date.now();
        if (progress.tookSinceLastAsked(controller)) tookAt = now;
        try {
          if (waitingBytes(controller) > 0 && now - tookAt > A2A_STREAMS.stallMs) throw new Error('the client took nothing for a minute');
          if (!quiet) return void (quiet = true);
          progress.enqueue(controller, HEARTBEAT_FRAME);
        } catch (error) {
          ended();
          try {
            controller.error(error);
          } catch {
            /* already ended */
          }
          // The turn goes on: only this request stops following it.
          void Promise.resolve(iterator.return?.(undefined)).catch(() => undefined);
        }
      }, A2A_STREAMS.heartbeatMs);
    },
    async pull(controller) {
      tookAt = Date.now();
      if (done) return;
      try {
        const next = await iterator.next();
        quiet = false;
        if (done) return;
        if (next.done) {
          ended();
          controller.close();
        } else progress.enqueue(controller, source.encode(next.value));
      } catch (error) {
        if (done) return;
        ended();
        controller.enqueue(source.errorFrame(error));
        controller.close();
      }
    },
    async cancel() {
      ended();
      await iterator.return?.(undefined);
    },
  }, byteBacklog);
}
