import type { ChatUsage } from '../limits/usage';
import { sseEvent } from './completions';
import { CredentialMasker } from './sse-credential';
import { DoneLine } from './sse-done';
import { EventFramer, MAX_EVENT_BYTES } from './sse-frame';
import { UsageStripper } from './sse-usage';

export type StreamEnd = 'finished' | 'failed' | 'cancelled';

/** Ends the [DONE] event, for a stream closed after its line without the blank line after it. */
const LINE_END = new TextEncoder().encode('\n');

export interface RelayOptions {
  /** Longest pause between upstream chunks before the stream is ended with an error. */
  idleMs: number;
  /** Epoch ms after which the stream is ended with an error. */
  deadlineAt: number;
  /** Aborts the upstream request (its fetch signal). */
  abort: (reason: Error) => void;
  /**
   * Called once when the relay ends: `finished` (the upstream's `[DONE]` event), `failed`
   * (it broke, stalled, ended without `[DONE]`, or sent an error event of its own before it), or `cancelled` (the client stopped reading
   * first, so how the upstream would have ended is unknown). An error event whose status is
   * the caller's (a 4xx other than 408 and 429, wherever it comes) is no failure of the target:
   * a stream that ends after one, with `[DONE]` or closed without it, is `finished`.
   */
  onEnd?: (end: StreamEnd) => void;
  /**
   * Where the usage the stream reports goes (a key's token budget settles with it); `strip`
   * when the gateway asked the target for a usage chunk the client did not ask for, which is
   * then removed from the stream. With `unreported`, the answer text the events carry is
   * counted as they pass, and the count handed to it when the upstream's stream ends (done,
   * broken or stalled) without a usage; a client that goes away first gets no count (the
   * target may have gone on answering what was never read).
   */
  usage?: { report: (usage: ChatUsage) => void; strip: boolean; unreported?: (completionChars: number) => void };
  /** The target's credential, masked wherever its events name it (an error event may). */
  credential?: string;
}

/**
 * Relays an upstream SSE body to the client after its first chunk has arrived. If the
 * upstream stalls, breaks, or ends without `[DONE]`, the client gets an explicit error event
 * instead of a silently truncated 200. The `[DONE]` event ends the relay, whether or not the
 * upstream closes its stream after it.
 */
export function relayStream(first: Uint8Array, reader: ReadableStreamDefaultReader<Uint8Array>, options: RelayOptions): ReadableStream<Uint8Array> {
  const decoder = new TextDecoder();
  const done = new DoneLine();
  done.push(decoder.decode(first, { stream: true }));
  let ended = false;
  const stripper = options.usage ? new UsageStripper(options.usage.report, options.usage.strip, options.usage.unreported !== undefined) : null;
  const masker = CredentialMasker.for(options.credential);
  // Last: the client gets whole events, so an error event after a break is one of its own.
  const framer = new EventFramer();
  const out = (controller: ReadableStreamDefaultController<Uint8Array>, bytes: Uint8Array): boolean => {
    const whole = framer.push(bytes);
    if (whole.byteLength === 0) return false;
    controller.enqueue(masker ? masker.events(whole) : whole);
    return true;
  };
  /** Whether anything went to the client. */
  const send = (controller: ReadableStreamDefaultController<Uint8Array>, chunk: Uint8Array): boolean => pass(controller, masker ? masker.push(chunk) : chunk);
  const pass = (controller: ReadableStreamDefaultController<Uint8Array>, chunk: Uint8Array): boolean => {
    // Empty when the masker held all of it back (a start of the credential).
    if (!stripper) return out(controller, chunk);
    let sent = false;
    for (const part of stripper.push(chunk)) sent = out(controller, part) || sent;
    return sent;
  };
  /**
   * Hands out what the masker and stripper held; the upstream's stream has ended, `whole` (its
   * [DONE] came) or not, when an event it left unended is dropped: the error event follows.
   */
  const flush = (controller: ReadableStreamDefaultController<Uint8Array>, whole: boolean) => {
    // What the masker held was a start of the credential that the stream never finished.
    const held = masker?.flush();
    if (held?.byteLength) pass(controller, held);
    if (stripper) {
      const rest = stripper.flush();
      if (rest) out(controller, rest);
      // Not once the client went away (`ended` by cancel): a read it interrupted ends here too.
      if (!ended && !stripper.sawUsage) options.usage?.unreported?.(stripper.completionChars);
    }
    if (!whole) return framer.drop();
    const last = framer.flush();
    if (last.byteLength) controller.enqueue(masker ? masker.events(last) : last);
  };
  const end = (how: StreamEnd) => {
    if (ended) return;
    ended = true;
    options.onEnd?.(how);
  };

  return new ReadableStream<Uint8Array>({
    start(controller) {
      send(controller, first);
      if (framer.overflowed) tooLarge(controller);
      else if (done.complete) finish(controller); // the whole stream came in its first chunk
    },
    async pull(controller) {
      // A pull must enqueue something or end the stream, or the client's read waits forever:
      // a chunk that was all usage chunk, or part of an event, is followed by the next one.
      while (!(await relayNext(controller)));
    },
    cancel(reason) {
      end('cancelled');
      // Not only the body: the target stops generating what nobody reads (a stream cut for its key).
      options.abort(reason instanceof Error ? reason : new Error('the stream was cancelled'));
      void reader.cancel(reason).catch(() => undefined);
    },
  });

  /** Relays the upstream's next chunk; false when nothing went to the client and the stream goes on. */
  async function relayNext(controller: ReadableStreamDefaultController<Uint8Array>): Promise<boolean> {
    const wait = Math.min(options.idleMs, options.deadlineAt - Date.now());
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), Math.max(0, wait)); });
    try {
      const next = await Promise.race([reader.read(), timeout]);
      if (next === 'timeout') {
        options.abort(new Error('upstream stream stalled'));
        // Past its [DONE] line the answer is whole: only the blank line ending that event is missing.
        if (done.seen) finish(controller, LINE_END);
        else fail(controller, 'upstream_timeout', wait >= options.idleMs ? `no data from the upstream for ${options.idleMs} ms` : 'the request deadline passed mid-stream');
        return true;
      }
      if (next.done) {
        if (done.end()) finish(controller);
        // A target may close its stream after the caller's error instead of sending [DONE] (OpenAI does).
        else fail(controller, 'stream_interrupted', 'the upstream ended the stream before it was complete', done.callersError && !done.errored ? 'finished' : 'failed');
        return true;
      }
      done.push(decoder.decode(next.value, { stream: true }));
      const sent = send(controller, next.value);
      if (framer.overflowed) {
        tooLarge(controller);
        return true;
      }
      // A server may hold the connection open after [DONE] (keep-alive): the client would wait
      // for the idle timeout, get an error event after a whole answer, and the target be judged failed.
      if (done.complete) finish(controller);
      return sent || done.complete;
    } catch (error) {
      fail(controller, 'stream_interrupted', `the upstream stream broke: ${error instanceof Error ? error.message : String(error)}`);
      return true;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Ends a stream whose [DONE] event has come, with `tail` if it needs one, without waiting for the upstream to close it. */
  function finish(controller: ReadableStreamDefaultController<Uint8Array>, tail?: Uint8Array) {
    flush(controller, true);
    // What the masker held back, joined to the last event, took it past the bound.
    if (framer.overflowed) return tooLarge(controller);
    if (tail) controller.enqueue(tail);
    // A target's error event before its [DONE] is its answer failing, for its breaker too; the caller's is not.
    end(done.errored ? 'failed' : 'finished');
    controller.close();
    void reader.cancel().catch(() => undefined);
  }

  /** Ends the stream at an event too long to hold whole, none of it relayed; the target is asked no more. */
  function tooLarge(controller: ReadableStreamDefaultController<Uint8Array>) {
    options.abort(new Error('upstream event too large'));
    fail(controller, 'event_too_large', `the upstream sent an event longer than ${MAX_EVENT_BYTES} bytes, which is not relayed`);
  }

  function fail(controller: ReadableStreamDefaultController<Uint8Array>, code: string, message: string, how: StreamEnd = 'failed') {
    flush(controller, false);
    end(how);
    controller.enqueue(sseEvent({ error: { message, type: 'upstream_error', code } }));
    controller.close();
    void reader.cancel().catch(() => undefined);
  }
}
