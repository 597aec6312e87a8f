import { concatBytes } from '../lib/bytes';
import type { EscapedCredentialScanner } from '../lib/escaped-credential';
import { credentialMask, escapedCredentialScanner, REDACTED_FROM_LENGTH } from '../lib/masked-credential';

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
 * spelt with JSON escapes (an event's JSON parses those back into it) the same way.
 */
export class CredentialMasker {
  private readonly key: Uint8Array;
  private readonly mask: Uint8Array;
  /** The credential's first byte: only where a chunk has it is there anything to compare. */
  private readonly first: number;
  /** The end of the bytes so far that may begin the credential, not yet passed on. */
  private held: Uint8Array = NONE;
  private readonly escaped: EscapedCredentialScanner;

  private constructor(credential: string) {
    this.key = encoder.encode(credential);
    this.mask = encoder.encode(credentialMask(credential));
    this.first = this.key[0] ?? 0;
    this.escaped = escapedCredentialScanner(credential);
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

  /** `chunk` (after what was held) with the credential, spelt as it is, masked. */
  private literal(chunk: Uint8Array): Uint8Array {
    const bytes = this.held.byteLength ? concatBytes([this.held, chunk], this.held.byteLength + chunk.byteLength) : chunk;
    const parts: Uint8Array[] = [];
    let size = 0;
    let from = 0;
    for (let at = this.find(bytes, from); at !== -1; at = this.find(bytes, from)) {
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

  /** Where the credential is whole in `bytes` from `from`, or -1. */
  private find(bytes: Uint8Array, from: number): number {
    const last = bytes.byteLength - this.key.byteLength;
    for (let at = bytes.indexOf(this.first, from); at !== -1 && at <= last; at = bytes.indexOf(this.first, at + 1)) {
      if (this.startsAt(bytes, at, this.key.byteLength)) return at;
    }
    return -1;
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
