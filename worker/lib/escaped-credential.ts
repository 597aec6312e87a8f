import { concatBytes } from './bytes';

const NONE = new Uint8Array(0);
const BACKSLASH = 0x5c;
const PERCENT = 0x25;
const SLASH = 0x2f;
const LETTER_U = 0x75;
/** U+FFFD in UTF-8: what a lone surrogate escape stands for, as TextEncoder spells one. */
const REPLACEMENT = [0xef, 0xbf, 0xbd];

/** The character each short JSON escape (`\"`, `\/`, `\n`…) stands for, by the byte after the backslash; -1 for none. */
const SHORT_ESCAPES = new Int16Array(128).fill(-1);
for (const [letter, byte] of [['"', 0x22], ['\\', 0x5c], ['/', 0x2f], ['b', 0x08], ['f', 0x0c], ['n', 0x0a], ['r', 0x0d], ['t', 0x09]] as const) SHORT_ESCAPES[letter.charCodeAt(0)] = byte;

/** The value of a hex digit byte (either case), or -1. */
function hexDigit(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1;
}

/** The code unit `\uXXXX` at `at` spells, or -1 when `bytes` do not hold one there whole. */
function escapedUnit(bytes: Uint8Array, at: number): number {
  if (at + 6 > bytes.byteLength || bytes[at] !== BACKSLASH || bytes[at + 1] !== LETTER_U) return -1;
  let unit = 0;
  for (let i = at + 2; i < at + 6; i++) {
    const digit = hexDigit(bytes[i] ?? 0);
    if (digit < 0) return -1;
    unit = unit * 16 + digit;
  }
  return unit;
}

/** Where the next byte that may begin an escape (a backslash or `%`) is from `at`, or the length. */
function nextEscape(bytes: Uint8Array, at: number): number {
  const backslash = bytes.indexOf(BACKSLASH, at);
  const percent = bytes.indexOf(PERCENT, at);
  if (backslash === -1) return percent === -1 ? bytes.byteLength : percent;
  return percent === -1 ? backslash : Math.min(backslash, percent);
}

/** Whether the bytes from `at` to the end can still begin a `\uXXXX` escape (a chunk cut it). */
function beginsEscape(bytes: Uint8Array, at: number): boolean {
  for (let i = at; i < bytes.byteLength && i < at + 6; i++) {
    const byte = bytes[i] ?? 0;
    const fits = i === at ? byte === BACKSLASH : i === at + 1 ? byte === LETTER_U : hexDigit(byte) >= 0;
    if (!fits) return false;
  }
  return true;
}

/**
 * Finds a credential spelt with JSON escapes in a stream of bytes, and masks it: `sk-ab\/cd`,
 * `\u0073k-…`, each character of it as `\uXXXX` (hex of either case, a surrogate pair for one
 * beyond the BMP) or as its short escape; JSON text escaped twice, inside a JSON string
 * (`\\u0073k-…`, `\\/`); and each of its bytes as `%XX` (a URL in the error, either case). Such a
 * spelling parses (or decodes) to the credential itself, so a target's error showed it to
 * whoever read the error parsed. The bytes are read once as
 * the characters they spell, which are matched against the credential's UTF-8 bytes with
 * Knuth-Morris-Pratt: time linear in the body, however the credential repeats itself, and no
 * byte read twice but the held ones. A spelling with no escape is the literal masker's, which
 * runs first: so only the `key.length - 1` bytes before a backslash or `%` need reading, where a
 * spelling with an escape in it can begin, and a body without either costs two `indexOf`s.
 * Like the literal masker, the end of a chunk that may begin a spelling (or cuts an escape) is
 * held back until the next one shows whether it goes on, and `flush` releases it.
 */
export class EscapedCredentialScanner {
  /** Knuth-Morris-Pratt: the longest proper prefix of `key` that ends its first i + 1 bytes. */
  private readonly fallback: Int32Array;
  /** Where in the stream each of the last `key.length` characters read began (an escape's bytes all where it did). */
  private readonly starts: Float64Array;
  /** The bytes of the character read last (an escape's may be up to 4 in UTF-8), and how many bytes spelt it. */
  private readonly unit = new Uint8Array(4);
  private spelt = 0;
  /** The bytes not yet passed on, from stream offset `base`; read up to stream offset `read`. */
  private held: Uint8Array = NONE;
  private base = 0;
  private read = 0;
  /** How many bytes of `key` the characters read last match, and how many characters were read in all. */
  private matched = 0;
  private count = 0;
  /** Whether a spelling was masked: a caller without one keeps its text as it was. */
  found = false;

  /** `key`: the credential's UTF-8 bytes; `mask`: what replaces a spelling of it (valid inside a JSON string). */
  constructor(
    private readonly key: Uint8Array,
    private readonly mask: Uint8Array,
  ) {
    this.fallback = new Int32Array(key.byteLength);
    for (let i = 1, k = 0; i < key.byteLength; i++) {
      while (k > 0 && key[i] !== key[k]) k = this.fallback[k - 1] ?? 0;
      if (key[i] === key[k]) k++;
      this.fallback[i] = k;
    }
    this.starts = new Float64Array(key.byteLength);
  }

  /** The bytes of `chunk` (after what was held) to pass on, every escaped spelling of the key masked. */
  push(chunk: Uint8Array): Uint8Array {
    const bytes = this.held.byteLength ? concatBytes([this.held, chunk], this.held.byteLength + chunk.byteLength) : chunk;
    return this.scan(bytes, false);
  }

  /** What was held, masked where it spells the key: the stream ended, so a cut escape is text. */
  flush(): Uint8Array {
    const rest = this.scan(this.held, true);
    this.matched = 0;
    return rest;
  }

  private scan(bytes: Uint8Array, final: boolean): Uint8Array {
    const length = this.key.byteLength;
    const spans: number[] = [];
    let at = this.read - this.base;
    let escape = -1;
    while (at < bytes.byteLength) {
      if (this.matched === 0) {
        if (escape < at) escape = nextEscape(bytes, at);
        at = Math.max(at, escape - length + 1);
        if (at >= bytes.byteLength) break;
      }
      const units = this.decode(bytes, at, final);
      if (units === 0) break; // an escape the next chunk finishes
      const end = at + this.spelt;
      for (let i = 0; i < units; i++) {
        const byte = this.unit[i] ?? 0;
        this.starts[this.count++ % length] = this.base + at;
        let k = this.matched;
        while (k > 0 && this.key[k] !== byte) k = this.fallback[k - 1] ?? 0;
        if (this.key[k] === byte) k++;
        if (k === length) {
          spans.push((this.starts[(this.count - length) % length] ?? 0) - this.base, end);
          k = 0;
          this.matched = 0;
          break;
        }
        this.matched = k;
      }
      at = end;
    }
    this.read = this.base + at;
    // Held: from where a spelling may have begun, or the escape a chunk cut.
    let hold = final ? bytes.byteLength : at;
    if (!final && this.matched > 0) hold = Math.min(hold, (this.starts[(this.count - this.matched) % length] ?? 0) - this.base);
    this.held = hold === bytes.byteLength ? NONE : bytes.slice(hold);
    this.base += hold;
    if (spans.length === 0) return hold === bytes.byteLength ? bytes : bytes.subarray(0, hold);
    this.found = true;
    const parts: Uint8Array[] = [];
    let size = 0;
    let from = 0;
    for (let i = 0; i < spans.length; i += 2) {
      const start = spans[i] ?? 0;
      parts.push(bytes.subarray(from, start), this.mask);
      size += start - from + this.mask.byteLength;
      from = spans[i + 1] ?? start;
    }
    parts.push(bytes.subarray(from, hold));
    return concatBytes(parts, size + hold - from);
  }

  /**
   * Reads the character at `at` into `unit` (its UTF-8 bytes; `spelt`: how many bytes spell it)
   * and says how many bytes it has, or 0 when a chunk cut its escape (unless `final`). A
   * backslash that begins no JSON escape is itself.
   */
  private decode(bytes: Uint8Array, at: number, final: boolean): number {
    const byte = bytes[at] ?? 0;
    this.spelt = 1;
    this.unit[0] = byte;
    if (byte === PERCENT) return this.percent(bytes, at, final);
    if (byte !== BACKSLASH) return 1;
    if (at + 1 >= bytes.byteLength) return final ? 1 : 0;
    const next = bytes[at + 1] ?? 0;
    if (next === BACKSLASH) {
      // JSON text inside a JSON string, escaped twice: `\\uXXXX` and `\\/` parse twice into one character.
      const units = this.unicode(bytes, at, 1, final);
      if (units >= 0) return units;
      if (at + 2 >= bytes.byteLength && !final) return 0;
      if (bytes[at + 2] === SLASH) {
        this.unit[0] = SLASH;
        this.spelt = 3;
        return 1;
      }
    }
    const short = next < 128 ? (SHORT_ESCAPES[next] ?? -1) : -1;
    if (short >= 0) {
      this.unit[0] = short;
      this.spelt = 2;
      return 1;
    }
    const units = this.unicode(bytes, at, 0, final);
    return units >= 0 ? units : 1;
  }

  /** Reads a `%XX` at `at` (either case) as the byte it spells, as a URL's query or path reads it; a `%` that begins none is itself. */
  private percent(bytes: Uint8Array, at: number, final: boolean): number {
    const high = at + 1 < bytes.byteLength ? hexDigit(bytes[at + 1] ?? 0) : -2;
    const low = at + 2 < bytes.byteLength ? hexDigit(bytes[at + 2] ?? 0) : -2;
    if (high >= 0 && low >= 0) {
      this.unit[0] = high * 16 + low;
      this.spelt = 3;
      return 1;
    }
    // -2: cut by the chunk's end, which the next chunk may finish.
    return !final && high !== -1 && low === -2 ? 0 : 1;
  }

  /**
   * Reads a `\uXXXX` escape at `at` after `extra` more backslashes (one when escaped twice), a
   * high surrogate with its low one (escaped alike) as one character: how many UTF-8 bytes it
   * has, 0 when a chunk cut it (unless `final`), -1 when there is none.
   */
  private unicode(bytes: Uint8Array, at: number, extra: number, final: boolean): number {
    const first = at + extra;
    const code = escapedUnit(bytes, first);
    if (code < 0) return !final && beginsEscape(bytes, first) ? 0 : -1;
    this.spelt = extra + 6;
    if (code < 0xd800 || code > 0xdfff) return this.utf8(code);
    if (code >= 0xdc00) return this.utf8(-1);
    // A high surrogate: with the low one escaped after it, the two spell one character.
    const lowAt = first + 6 + extra;
    let prefixed = true;
    for (let i = first + 6; i < lowAt; i++) if (i < bytes.byteLength && bytes[i] !== BACKSLASH) prefixed = false;
    const low = prefixed ? escapedUnit(bytes, lowAt) : -1;
    if (low >= 0xdc00 && low <= 0xdfff) {
      this.spelt = lowAt + 6 - at;
      return this.utf8(0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00));
    }
    return !final && prefixed && low < 0 && beginsEscape(bytes, lowAt) && lowAt + 6 > bytes.byteLength ? 0 : this.utf8(-1);
  }

  /** Writes the UTF-8 bytes of `code` (-1: a lone surrogate, U+FFFD) into `unit`; how many. */
  private utf8(code: number): number {
    const unit = this.unit;
    if (code < 0) {
      unit.set(REPLACEMENT);
      return 3;
    }
    if (code < 0x80) {
      unit[0] = code;
      return 1;
    }
    if (code < 0x800) {
      unit[0] = 0xc0 | (code >> 6);
      unit[1] = 0x80 | (code & 0x3f);
      return 2;
    }
    if (code < 0x10000) {
      unit[0] = 0xe0 | (code >> 12);
      unit[1] = 0x80 | ((code >> 6) & 0x3f);
      unit[2] = 0x80 | (code & 0x3f);
      return 3;
    }
    unit[0] = 0xf0 | (code >> 18);
    unit[1] = 0x80 | ((code >> 12) & 0x3f);
    unit[2] = 0x80 | ((code >> 6) & 0x3f);
    unit[3] = 0x80 | (code & 0x3f);
    return 4;
  }
}
