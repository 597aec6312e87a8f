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
    let boundary = -1;
    for (let i = 0; i < chunk.byteLength; i++) {
      const byte = chunk[i];
      if (byte !== LF && byte !== CR) {
        this.endings = 0;
        this.lastCR = false;
        continue;
      }
      if (byte === LF && this.lastCR) {
        this.lastCR = false; // the second half of a CRLF
        continue;
      }
      this.lastCR = byte === CR;
      // A line ending right after another one is the blank line that ends an event.
      if (++this.endings >= 2) boundary = i + 1;
    }
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
