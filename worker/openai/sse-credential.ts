import { base64Spellings } from '../lib/base64-credential';
import { concatBytes } from '../lib/bytes';
import type { EscapedCredentialScanner } from '../lib/escaped-credential';
import { credentialMask, escapedCredentialScanner, jsonMask, REDACTED_FROM_LENGTH } from '../lib/masked-credential';

const NONE = new Uint8Array(0);
const encoder = new TextEncoder();

/**
 * Masks a target's credential in the bytes of its event stream, as `withoutCredential` does in
 * its error bodies: a target may name the credential it refused in an error event mid-stream.
 * It works on bytes (UTF-8 finds a credential's bytes only where the credential is), and
 * looks only where a chunk has the credential's first byte. A chunk that ends with a start of
 * the credential holds that end back until the next chunk shows whether the credential goes
 * on; a client cannot act on half an event anyway, and the end of the stream releases it.
 * What it passes on then goes through an `EscapedCredentialScanner`, which masks the credential
 * spelt with JSON escapes (an event's JSON parses those back into it) the same way. Its base64
 * spellings (a Basic credential a target echoes, `base64(user:key)`) are masked in whole
 * events (`events`), where none is cut, so none needs holding back.
 */
export class CredentialMasker {
  private readonly key: Uint8Array;
  private readonly mask: Uint8Array;
  /** The credential's first byte: only where a chunk has it is there anything to compare. */
  private readonly first: number;
  /** The end of the bytes so far that may begin the credential, not yet passed on. */
  private held: Uint8Array = NONE;
  private readonly escaped: EscapedCredentialScanner;
  /** The runs of base64 characters only the credential's bits decide (`base64Spellings`), and their bytes. */
  private readonly base64: readonly string[];
  private readonly base64Bytes: readonly Uint8Array[];
  /** What replaces such a run: the mask escaped as a JSON string's content, as `withoutCredential` writes it. */
  private readonly base64Mask: Uint8Array;
  private readonly decoder = new TextDecoder();

  private constructor(credential: string) {
    this.key = encoder.encode(credential);
    this.mask = encoder.encode(credentialMask(credential));
    this.first = this.key[0] ?? 0;
    this.escaped = escapedCredentialScanner(credential);
    this.base64 = base64Spellings(credential);
    this.base64Bytes = this.base64.map((run) => encoder.encode(run));
    this.base64Mask = encoder.encode(jsonMask(credential));
  }

  /** A masker for `credential`, or null when there is none or it is too short to be looked for in text. */
  static for(credential: string | undefined): CredentialMasker | null {
    return credential && credential.length >= REDACTED_FROM_LENGTH ? new CredentialMasker(credential) : null;
  }

  /** The bytes of `chunk` (after what was held) to pass on, the credential masked in them. */
  push(chunk: Uint8Array): Uint8Array {
    return this.escaped.push(this.literal(chunk));
  }

  /** What was held: the stream ended, so it never became the credential. */
  flush(): Uint8Array {
    const rest = this.escaped.push(this.held);
    this.held = NONE;
    const last = this.escaped.flush();
    return last.byteLength ? concatBytes([rest, last], rest.byteLength + last.byteLength) : rest;
  }

  /**
   * `events` (whole events, as the relay hands them to the client, after `push`) with the
   * credential's base64 spellings masked. Whole events hold a spelling whole however the
   * network cut it, so nothing is held back. Looked for with native searches in the decoded
   * text (a decode and a few `includes`, a fraction of a microsecond an event); the bytes are
   * rewritten only where one is found (UTF-8 never spells an ASCII byte but as itself).
   */
  events(events: Uint8Array): Uint8Array {
    const text = this.decoder.decode(events);
    if (!this.base64.some((run) => text.includes(run))) return events;
    const parts: Uint8Array[] = [];
    let size = 0;
    let from = 0;
    for (;;) {
      // The leftmost run found; at the same place the longest (the alignments differ by a character).
      let at = -1;
      let length = 0;
      for (const run of this.base64Bytes) {
        const found = indexOfBytes(events, run, from);
        if (found !== -1 && (at === -1 || found < at || (found === at && run.byteLength > length))) {
          at = found;
          length = run.byteLength;
        }
      }
      if (at === -1) break;
      parts.push(events.subarray(from, at), this.base64Mask);
      size += at - from + this.base64Mask.byteLength;
      from = at + length;
    }
    parts.push(events.subarray(from));
    return concatBytes(parts, size + events.byteLength - from);
  }

  /** `chunk` (after what was held) with the credential, spelt as it is, masked. */
  private literal(chunk: Uint8Array): Uint8Array {
    const bytes = this.held.byteLength ? concatBytes([this.held, chunk], this.held.byteLength + chunk.byteLength) : chunk;
    const parts: Uint8Array[] = [];
    let size = 0;
    let from = 0;
    for (let at = indexOfBytes(bytes, this.key, from); at !== -1; at = indexOfBytes(bytes, this.key, from)) {
      parts.push(bytes.subarray(from, at), this.mask);
      size += at - from + this.mask.byteLength;
      from = at + this.key.byteLength;
    }
    const hold = this.partialAt(bytes, from);
    this.held = hold === bytes.byteLength ? NONE : bytes.slice(hold);
    if (parts.length === 0) return hold === bytes.byteLength ? bytes : bytes.subarray(0, hold);
    parts.push(bytes.subarray(from, hold));
    return concatBytes(parts, size + hold - from);
  }

  /** Where the longest end of `bytes` (after `from`) that begins the credential starts; their length when none does. */
  private partialAt(bytes: Uint8Array, from: number): number {
    const start = Math.max(from, bytes.byteLength - this.key.byteLength + 1);
    for (let at = bytes.indexOf(this.first, start); at !== -1; at = bytes.indexOf(this.first, at + 1)) {
      if (this.startsAt(bytes, at, bytes.byteLength - at)) return at;
    }
    return bytes.byteLength;
  }

  /** Whether `bytes` at `at` are the credential's first `length` bytes. */
  private startsAt(bytes: Uint8Array, at: number, length: number): boolean {
    for (let i = 0; i < length; i++) if (bytes[at + i] !== this.key[i]) return false;
    return true;
  }
}

/** Where `needle` is whole in `bytes` from `from`, or -1. */
function indexOfBytes(bytes: Uint8Array, needle: Uint8Array, from: number): number {
  const last = bytes.byteLength - needle.byteLength;
  for (let at = bytes.indexOf(needle[0] ?? 0, from); at !== -1 && at <= last; at = bytes.indexOf(needle[0] ?? 0, at + 1)) {
    let i = 1;
    while (i < needle.byteLength && bytes[at + i] === needle[i]) i++;
    if (i === needle.byteLength) return at;
  }
  return -1;
}
