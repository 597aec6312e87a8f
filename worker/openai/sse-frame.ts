import { concatBytes } from '../lib/bytes';

const LF = 0x0a;
const CR = 0x0d;
const NONE = new Uint8Array(0);
/**
 * Most bytes of one unended event held back. A chat chunk is a few hundred; a longer event is
 * passed on as it arrives, so an upstream that never ends its event costs no memory.
 */
const MAX_HELD = 8 * 1024;

/**
 * Keeps what a relayed event stream hands the client at event boundaries: the bytes after the
 * last blank line are held until their event ends. A target that breaks off inside an event
 * would otherwise have left half of it with the client, and the error event the relay then
 * sends would have joined that half (an SSE client joins the data lines of one event): one
 * line of broken JSON, which the official client throws as a SyntaxError, the error unread.
 * A chunk that ends an event (a server flushes each event) passes as it came, uncopied.
 */
export class EventFramer {
  private held: Uint8Array = NONE;
  /** Line endings in a row at the end of the bytes so far (the stream starts at a line's start). */
  private endings = 1;
  /** The bytes so far end in a CR, so a LF next is the same line ending. */
  private lastCR = false;
  /** Part of an event longer than MAX_HELD went on unended. */
  private open = false;

  /** What of `chunk` (after what was held) may go to the client now. */
  push(chunk: Uint8Array): Uint8Array {
    const wasOpen = this.open;
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
    if (wasOpen) {
      // The rest of an event that went on in part goes on too, up to its end.
      if (boundary < 0) return chunk;
      this.open = false;
    }
    const bytes = this.held.byteLength ? concatBytes([this.held, chunk], this.held.byteLength + chunk.byteLength) : chunk;
    // Held bytes start an event: with no boundary in this chunk, nothing has ended.
    const end = boundary < 0 ? 0 : this.held.byteLength + boundary;
    if (bytes.byteLength - end > MAX_HELD) {
      this.held = NONE;
      this.open = true;
      return bytes;
    }
    this.held = end === bytes.byteLength ? NONE : bytes.slice(end);
    return end === bytes.byteLength ? bytes : bytes.subarray(0, end);
  }

  /** The held bytes: the stream ended as it should (its [DONE]), so they go on as they came. */
  flush(): Uint8Array {
    const rest = this.held;
    this.held = NONE;
    return rest;
  }

  /**
   * The stream broke: the held half event is dropped, and what ends the one already passed on
   * in part (one longer than MAX_HELD) is returned, so an event sent next stands on its own.
   */
  drop(): Uint8Array {
    this.held = NONE;
    if (!this.open) return NONE;
    this.open = false;
    return new TextEncoder().encode('\n\n');
  }
}
