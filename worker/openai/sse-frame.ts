import { concatBytes } from '../lib/bytes';

const LF = 0x0a;
const CR = 0x0d;
const NONE = new Uint8Array(0);
/**
 * Most bytes of one event held back until it ends. A chat chunk is a few hundred; a server
 * that sends a whole answer as one event stays far below it. A longer event ends the stream
 * with an error event instead of being relayed: SSE has no way to take back part of an event
 * once sent, so passing it on as it arrived (as the relay did past 8 KiB) left the client half
 * an event, joined to the error event that followed a break, when the target broke off inside it.
 */
export const MAX_EVENT_BYTES = 1024 * 1024;

/**
 * Keeps what a relayed event stream hands the client at event boundaries: the bytes after the
 * last blank line are held until their event ends. A target that breaks off inside an event
 * would otherwise have left half of it with the client, and the error event the relay then
 * sends would have joined that half (an SSE client joins the data lines of one event): one
 * line of broken JSON, which the official client throws as a SyntaxError, the error unread.
 * A chunk that ends an event (a server flushes each event) passes as it came, uncopied; the
 * parts of a long event are kept as they came and joined once, when it ends.
 */
const isLineEnd = (byte: number | undefined): boolean => byte === LF || byte === CR;

/** Line endings in `chunk` from `start` to `end`, all of them line-end bytes: a CRLF is one. */
function endingsIn(chunk: Uint8Array, start: number, end: number): number {
  let count = 0;
  for (let i = start; i < end; i++, count++) if (chunk[i] === CR && i + 1 < end && chunk[i + 1] === LF) i++;
  return count;
}

export class EventFramer {
  private held: Uint8Array[] = [];
  private size = 0;
  /** Line endings in a row at the end of the bytes so far (the stream starts at a line's start). */
  private endings = 1;
  /** The bytes so far end in a CR, so a LF next is the same line ending. */
  private lastCR = false;
  /** An event grew past MAX_EVENT_BYTES: it and whatever follows are dropped, and the relay ends the stream. */
  overflowed = false;

  /** What of `chunk` (after what was held) may go to the client now. */
  push(chunk: Uint8Array): Uint8Array {
    if (this.overflowed) return NONE;
    const boundary = this.lastBoundary(chunk);
    if (boundary < 0) {
      this.hold(chunk);
      return NONE;
    }
    const ended = boundary === chunk.byteLength ? chunk : chunk.subarray(0, boundary);
    const whole = this.size ? concatBytes([...this.held, ended], this.size + boundary) : ended;
    this.held = [];
    this.size = 0;
    // Copied: the rest of the chunk is all that is kept of it.
    if (boundary < chunk.byteLength) this.hold(chunk.slice(boundary));
    return whole;
  }

  /**
   * Where the last event that ends in `chunk` ends (after its blank line), or -1; keeps the
   * line endings at its end for the next chunk. Every relayed chunk comes through here, so it
   * does not look at each byte in JavaScript: native searches find the runs of line endings
   * from the chunk's end back, and a chunk that ends an event (the usual case) is settled by
   * its last run. Each search starts below the run just read, where the one before stopped.
   */
  private lastBoundary(chunk: Uint8Array): number {
    const length = chunk.byteLength;
    if (length === 0) return -1;
    // A LF that completes a CRLF begun by the last chunk is part of that line ending.
    const skip = this.lastCR && chunk[0] === LF ? 1 : 0;
    const before = this.endings;
    let boundary = -1;
    let endings = length === skip ? before : 0;
    let lf = chunk.lastIndexOf(LF);
    let cr = chunk.lastIndexOf(CR);
    for (;;) {
      const runEnd = Math.max(lf, cr);
      if (runEnd < skip) break;
      let runStart = runEnd;
      while (runStart > skip && isLineEnd(chunk[runStart - 1])) runStart--;
      // Line endings in a row up to the run's end, those the chunk began with included.
      const count = endingsIn(chunk, runStart, runEnd + 1) + (runStart === skip ? before : 0);
      if (runEnd === length - 1) endings = count;
      if (count >= 2) {
        boundary = runEnd + 1;
        break;
      }
      if (runStart === 0) break;
      if (lf >= runStart) lf = chunk.lastIndexOf(LF, runStart - 1);
      if (cr >= runStart) cr = chunk.lastIndexOf(CR, runStart - 1);
    }
    // The blank line ended on the last chunk's CR: its LF belongs with that event.
    if (boundary < 0 && skip === 1 && before >= 2) boundary = 1;
    this.endings = endings;
    this.lastCR = chunk[length - 1] === CR;
    return boundary;
  }

  /** The held bytes: the stream ended as it should (its [DONE]), so they go on as they came. */
  flush(): Uint8Array {
    const rest = this.size ? concatBytes(this.held, this.size) : NONE;
    this.held = [];
    this.size = 0;
    return rest;
  }

  /** The stream broke: the held half event is dropped (none of it went to the client). */
  drop(): void {
    this.held = [];
    this.size = 0;
  }

  private hold(part: Uint8Array): void {
    if (this.size + part.byteLength > MAX_EVENT_BYTES) {
      this.overflowed = true;
      this.drop();
      return;
    }
    this.held.push(part);
    this.size += part.byteLength;
  }
}
