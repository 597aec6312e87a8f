import { concatBytes } from '../lib/bytes';
import { sseEventData } from '../lib/sse-event';
import { completionChars, usageOf, type ChatUsage } from '../limits/usage';

const LF = 0x0a;
const CR = 0x0d;
/** A usage object, not the `"usage": null` OpenAI puts on every other chunk once asked. */
const USAGE_OBJECT = /"usage"\s*:\s*\{/;
/**
 * Most bytes of one event held back; a usage chunk is a few hundred. A longer event cannot be
 * one and is passed on as it arrives, so an upstream that never ends its event costs no memory.
 */
const MAX_HELD = 8 * 1024;
/**
 * Most bytes of one long event (passed on as it arrives) also kept to count its text once it
 * has ended: far more than a reservation covers (~4 bytes a token). A longer one counts at its
 * length in bytes.
 */
const MAX_COUNTED = 256 * 1024;

/**
 * Reports the usage of an OpenAI event stream's events (the last one that carries one wins, as
 * OpenAI's usage chunk comes last), to settle the key's token budget, and with `strip` removes
 * the usage chunk: the client did not ask for it, the gateway asked the target on its behalf. The usage chunk is the event with empty `choices` and a `usage`
 * object: what OpenAI sends when asked, and what a client that did not ask may crash on.
 * Every other byte passes unchanged; an event split across chunks is held until its blank
 * line arrives (a client cannot act on half an event anyway). Azure's empty-choices chunk of
 * `prompt_filter_results` has no usage and passes.
 * With `count`, it also counts the answer text of the events as they pass (`completionChars`),
 * for a target that sends no usage chunk: the key is charged an estimate of what it answered.
 * Every event is then parsed whole, in the same pass: one longer than MAX_HELD still goes on
 * as it arrives, and a copy (up to MAX_COUNTED) is parsed once it has ended; past that, or
 * never ended, it counts at its length in bytes, more than its text, so the estimate errs
 * towards the charge.
 */
export class UsageStripper {
  /** Bytes of the event not yet ended by its blank line. */
  private pending: Uint8Array = new Uint8Array(0);
  /**
   * The last chunk ended an event on a CR: a LF that starts the next one ends the same line.
   * 'strip' when that event was removed, so its LF goes too.
   */
  private endedOnCR: false | 'keep' | 'strip' = false;
  /** Set while an event longer than MAX_HELD is passed on: where its bytes have got to. */
  private passing: { lineEnded: boolean; lastCR: boolean } | null = null;
  private readonly decoder = new TextDecoder();
  /** Characters of answer text in the events so far (with `count`). */
  completionChars = 0;
  /** Whether an event carried a usage object. */
  sawUsage = false;

  constructor(
    private readonly onUsage: (usage: ChatUsage) => void,
    private readonly strip = true,
    private readonly count = false,
  ) {}

  /** With `count`, the long event being passed on so far: its bytes while they fit MAX_COUNTED. */
  private long: { parts: Uint8Array[]; size: number } | null = null;

  /** What of `chunk` (and the bytes held before it) may go to the client now, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    if (chunk.byteLength === 0) return [];
    if (this.passing) {
      const end = this.passOn(chunk);
      if (this.count) this.countLong(end < 0 ? chunk : chunk.subarray(0, end), end >= 0);
      return end < 0 ? [chunk] : [chunk.subarray(0, end), ...this.push(chunk.subarray(end))];
    }
    let bytes = chunk;
    if (this.pending.byteLength > 0) {
      bytes = new Uint8Array(this.pending.byteLength + chunk.byteLength);
      bytes.set(this.pending);
      bytes.set(chunk, this.pending.byteLength);
    }
    const out: Uint8Array[] = [];
    const carried = this.endedOnCR !== false && bytes[0] === LF ? 1 : 0;
    let emitFrom = this.endedOnCR === 'strip' ? carried : 0; // start of the bytes not yet handed out
    let eventStart = carried;
    let lineStart = carried;
    this.endedOnCR = false;
    // From one line ending to the next by native searches (each kept until passed): the bytes
    // between them are never looked at in JavaScript.
    let lf = bytes.indexOf(LF, carried);
    let cr = bytes.indexOf(CR, carried);
    const nextEnding = () => (lf < 0 || (cr >= 0 && cr < lf) ? cr : lf);
    for (let i = nextEnding(); i >= 0; i = nextEnding()) {
      const byte = bytes[i];
      const end = byte === CR && bytes[i + 1] === LF ? i + 2 : i + 1; // CRLF is one line ending
      if (lf >= 0 && lf < end) lf = bytes.indexOf(LF, end);
      if (cr >= 0 && cr < end) cr = bytes.indexOf(CR, end);
      const empty = i === lineStart;
      lineStart = end;
      if (!empty) continue;
      const usage = this.inspect(bytes.subarray(eventStart, end));
      if (usage) {
        if (eventStart > emitFrom) out.push(bytes.subarray(emitFrom, eventStart));
        emitFrom = end;
      }
      if (end === bytes.byteLength && byte === CR) this.endedOnCR = usage ? 'strip' : 'keep';
      eventStart = end;
    }
    if (eventStart > emitFrom) out.push(bytes.subarray(emitFrom, eventStart));
    if (bytes.byteLength - eventStart > MAX_HELD) {
      const last = bytes[bytes.byteLength - 1];
      this.passing = { lineEnded: last === LF || last === CR, lastCR: last === CR };
      if (this.count) {
        this.long = { parts: [], size: 0 };
        this.countLong(bytes.subarray(eventStart), false);
      }
      out.push(bytes.subarray(eventStart));
      this.pending = new Uint8Array(0);
    } else {
      this.pending = bytes.slice(eventStart);
    }
    return out;
  }

  /** Where in `chunk` the event being passed on ends (after its blank line), or -1. */
  private passOn(chunk: Uint8Array): number {
    const state = this.passing;
    if (!state) return 0;
    for (let i = 0; i < chunk.byteLength; i++) {
      const byte = chunk[i];
      if (byte === LF && state.lastCR) {
        state.lastCR = false; // the second half of a CRLF
        continue;
      }
      state.lastCR = false;
      if (byte !== LF && byte !== CR) {
        state.lineEnded = false;
        continue;
      }
      if (state.lineEnded) {
        const end = byte === CR && chunk[i + 1] === LF ? i + 2 : i + 1;
        if (byte === CR && end === chunk.byteLength) this.endedOnCR = 'keep';
        this.passing = null;
        return end;
      }
      state.lineEnded = true;
      state.lastCR = byte === CR;
    }
    return -1;
  }

  /**
   * Keeps `part` of the long event being passed on (a copy: the original goes to the client);
   * once it has `ended`, counts its text, or its bytes when it was too long to keep.
   */
  private countLong(part: Uint8Array, ended: boolean): void {
    const long = this.long;
    if (!long) return;
    long.size += part.byteLength;
    if (long.size <= MAX_COUNTED) long.parts.push(part.slice());
    else long.parts = [];
    if (!ended) return;
    this.long = null;
    if (long.size > MAX_COUNTED) {
      this.completionChars += long.size;
      return;
    }
    this.inspect(concatBytes(long.parts, long.size)); // gone to the client already: counted (and a usage reported), not removed
  }

  /** The bytes still held (an event the stream never ended), to hand out as they came. */
  flush(): Uint8Array | null {
    const rest = this.pending;
    this.pending = new Uint8Array(0);
    if (this.long) {
      this.completionChars += this.long.size; // a long event never ended: unparsed
      this.long = null;
    }
    if (rest.byteLength === 0) return null;
    if (this.count) {
      // An event without its blank line, perhaps whole (a server that ends on one line break).
      const text = this.decoder.decode(rest);
      const data = sseEventData(text);
      if (typeof data === 'object' && data !== null) this.completionChars += completionChars((data as { choices?: unknown }).choices, 'delta');
      else if (!/^data: ?\[DONE\]\s*$/.test(text)) this.completionChars += rest.byteLength;
    }
    return rest;
  }

  /** Reports (and counts) what one whole event carries; whether it is the usage chunk to remove. */
  private inspect(event: Uint8Array): boolean {
    const text = this.decoder.decode(event);
    // Without counting, only an event that may carry a usage object is worth parsing.
    if (!this.count && !USAGE_OBJECT.test(text)) return false;
    const data = sseEventData(text);
    if (typeof data !== 'object' || data === null) return false;
    const { usage: raw, choices } = data as { usage?: unknown; choices?: unknown };
    if (this.count) this.completionChars += completionChars(choices, 'delta');
    const usage = usageOf(raw);
    if (usage) {
      this.sawUsage = true;
      this.onUsage(usage);
    }
    return this.strip && raw !== null && typeof raw === 'object' && Array.isArray(choices) && choices.length === 0;
  }
}
