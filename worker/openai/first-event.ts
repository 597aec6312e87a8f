import { concatBytes } from '../lib/bytes';
import { sseEventData } from '../lib/sse-event';
import { ERROR_NAME, errorMember } from './sse-done';
import { errorStatus } from './stream-error';

/**
 * Most bytes read ahead for a stream's first event. A first event is a role chunk or an error
 * of a few hundred bytes; a stream whose first event is longer is relayed without the look.
 * Its data line must start within them: past them with none, the stream is no answer.
 */
export const MAX_FIRST_EVENT = 64 * 1024;
/** The field a data line starts with. */
const DATA = 'data:';
/** A line ending's first character, looked for from `lastIndex` on. */
const LINE_END = /[\r\n]/g;
/**
 * Longest message of a target's error event repeated in the gateway's own error: cut once the
 * target's credential is masked in it (chat-proxy), since a credential cut first is no longer
 * found, and what the cut left of it was shown.
 */
export const MAX_ERROR_MESSAGE = 500;

/** An error event a target began its stream with: its message, and the HTTP status its code names, when it names one. */
export interface StreamError {
  message: string;
  status?: number;
}

export interface FirstEvent {
  /** Every byte read so far, the first chunk's included: the relay starts with them. */
  bytes: Uint8Array;
  /** The first event was an error event. */
  error?: StreamError;
  /**
   * MAX_FIRST_EVENT bytes came and no data line began in them (comments, such as `: ping`
   * keep-alives, or bare fields only): no event was sent, so nothing is to be relayed.
   */
  noEvent?: true;
}

/**
 * Reads a stream on from its first chunk until its first event can be judged (`judgedAt`; or
 * the stream has ended, or MAX_FIRST_EVENT bytes came first, the events without data before it
 * counted), and says whether that event was an error event, or whether no data line began
 * within those bytes (`noEvent`).
 * Nothing has reached the client yet, so a target whose stream starts with an error (vLLM and
 * LiteLLM answer a failure that way, with a 200) can still be failed over like a 5xx. A read
 * that throws is the caller's to judge, as the first chunk's is.
 */
export async function readFirstEvent(first: Uint8Array, reader: ReadableStreamDefaultReader<Uint8Array>): Promise<FirstEvent> {
  const decoder = new TextDecoder();
  const chunks = [first];
  let size = first.byteLength;
  const lines = new FirstLines();
  let text = decoder.decode(first, { stream: true });
  let end = lines.judgedAt(text);
  // Past the bound, a line that may still become a data line (`da`, or none begun) is read on to tell.
  while (end < 0 && (size <= MAX_FIRST_EVENT || lines.mayStartData(text))) {
    const next = await reader.read();
    if (next.done) break;
    chunks.push(next.value);
    size += next.value.byteLength;
    text += decoder.decode(next.value, { stream: true });
    end = lines.judgedAt(text);
  }
  const bytes = chunks.length === 1 ? first : concatBytes(chunks, size);
  // Over the bound without an end: a data line begun is relayed as every long event is; none
  // begun is no event within the bound, as a first event that never comes within the first-byte
  // limit is none (a target that sends keep-alives alone, endlessly, used to be relayed as they came).
  if (end < 0 && size > MAX_FIRST_EVENT) return lines.inData(text) ? { bytes } : { bytes, noEvent: true };
  // Ended with the stream, it is judged whole.
  const error = streamError(text.slice(lines.eventStart, end < 0 ? text.length : end));
  return error ? { bytes, error } : { bytes };
}

/**
 * Where the first event of a stream's text can be judged: the end of its first data line. A
 * server that holds back the blank line (until its next event) is not waited for to the
 * first-byte limit; an event of several data lines is then judged by its first, which is no
 * JSON alone, and relayed. An event without a data line (comments only, such as a `: ping`
 * keep-alive, or only `event:`/`id:`/`retry:` fields) is no event a client is given (the SSE
 * spec dispatches none): it is read past, so an error event after it is still the first
 * (a stream that began with a comment used to be relayed whatever came next). Each line is
 * looked at once, however the text arrives (a target that sends a byte at a time included).
 */
class FirstLines {
  /** Where the line not yet ended starts. */
  private lineStart = 0;
  /** Where the event being read starts: after the events without data read past. */
  eventStart = 0;

  /** Whether the line not yet ended in `text` (as `judgedAt` left it) is a data line. */
  inData(text: string): boolean {
    return text.startsWith(DATA, this.lineStart);
  }

  /** Whether the line not yet ended in `text` is too short to say whether it is a data line. */
  mayStartData(text: string): boolean {
    return text.length - this.lineStart < DATA.length && DATA.startsWith(text.slice(this.lineStart));
  }

  /** Where in `text` (the text so far: the last call's, and more) the first event can be judged, or -1. */
  judgedAt(text: string): number {
    for (;;) {
      LINE_END.lastIndex = this.lineStart;
      const at = LINE_END.exec(text)?.index ?? -1;
      if (at < 0) return -1;
      if (text.startsWith(DATA, this.lineStart)) return at + 1;
      // A CR that ends the text may be the first half of a CRLF: the LF after it is no blank line.
      if (text[at] === '\r' && at === text.length - 1) return -1;
      const blank = at === this.lineStart;
      this.lineStart = at + (text[at] === '\r' && text[at + 1] === '\n' ? 2 : 1);
      // A blank line ends an event that had no data line (one with a data line was judged at it).
      if (blank) this.eventStart = this.lineStart;
    }
  }
}

/**
 * The error of an event whose data is JSON with an `error` member that is a message or an
 * object (`null` is none, as the official client reads it); its status as `errorStatus` reads
 * it, the rule an error event later in the stream is judged by too.
 */
function streamError(event: string): StreamError | undefined {
  // A first event is most often a role chunk: parsed only when it could be an error.
  if (!event.includes(ERROR_NAME)) return undefined;
  const error = errorMember(sseEventData(event));
  if (error === undefined) return undefined;
  // Whole (the event's size bounds it): cut to MAX_ERROR_MESSAGE once its credential is masked.
  if (typeof error === 'string') return { message: error };
  const { message } = error as { message?: unknown };
  const text = typeof message === 'string' ? message : JSON.stringify(error);
  const status = errorStatus(error);
  return { message: text, ...(status !== undefined && { status }) };
}
