import { sseEvent } from './completions';

const DONE = 'data: [DONE]';

export interface RelayOptions {
  /** Longest pause between upstream chunks before the stream is ended with an error. */
  idleMs: number;
  /** Epoch ms after which the stream is ended with an error. */
  deadlineAt: number;
  /** Aborts the upstream request (its fetch signal). */
  abort: (reason: Error) => void;
  /** Called once when the relay ends: whether the upstream finished cleanly. */
  onEnd?: (ok: boolean) => void;
}

/**
 * Relays an upstream SSE body to the client after its first chunk has arrived. If the
 * upstream stalls, breaks, or ends without `[DONE]`, the client gets an explicit error event
 * instead of a silently truncated 200.
 */
export function relayStream(first: Uint8Array, reader: ReadableStreamDefaultReader<Uint8Array>, options: RelayOptions): ReadableStream<Uint8Array> {
  const decoder = new TextDecoder();
  let tail = decoder.decode(first, { stream: true });
  let sawDone = tail.includes(DONE);
  let ended = false;
  const end = (ok: boolean) => {
    if (ended) return;
    ended = true;
    options.onEnd?.(ok);
  };

  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(first);
    },
    async pull(controller) {
      const wait = Math.min(options.idleMs, options.deadlineAt - Date.now());
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), Math.max(0, wait)); });
      try {
        const next = await Promise.race([reader.read(), timeout]);
        if (next === 'timeout') {
          options.abort(new Error('upstream stream stalled'));
          fail(controller, 'upstream_timeout', wait >= options.idleMs ? `no data from the upstream for ${options.idleMs} ms` : 'the request deadline passed mid-stream');
          return;
        }
        if (next.done) {
          if (sawDone) {
            end(true);
            controller.close();
          } else {
            fail(controller, 'stream_interrupted', 'the upstream ended the stream before it was complete');
          }
          return;
        }
        // Keep a short tail of text so a "[DONE]" split across chunks is still seen.
        tail = (tail + decoder.decode(next.value, { stream: true })).slice(-64);
        if (tail.includes(DONE)) sawDone = true;
        controller.enqueue(next.value);
      } catch (error) {
        fail(controller, 'stream_interrupted', `the upstream stream broke: ${error instanceof Error ? error.message : String(error)}`);
      } finally {
        clearTimeout(timer);
      }
    },
    cancel(reason) {
      end(true);
      void reader.cancel(reason).catch(() => undefined);
    },
  });

  function fail(controller: ReadableStreamDefaultController<Uint8Array>, code: string, message: string) {
    end(false);
    controller.enqueue(sseEvent({ error: { message, type: 'upstream_error', code } }));
    controller.close();
    void reader.cancel().catch(() => undefined);
  }
}
