import { concatBytes } from './bytes';
import { base64Spellings } from './base64-credential';
import { EscapedCredentialScanner } from './escaped-credential';

/**
 * How every view shows a stored credential (a pool target's, an agent upstream's): an
 * ellipsis and its last four characters, or the ellipsis alone when the credential is shorter
 * than `SHOWN_FROM_LENGTH`. A write that sends such a form back means "keep the stored one";
 * one that matches nothing stored is refused with `maskedCredentialIssue`.
 */
const MASK = '…';
const encoder = new TextEncoder();

/**
 * Below this length four characters are too large a part of a credential to show (all of a
 * 4-character one): such credentials are shown as the bare ellipsis.
 */
export const SHOWN_FROM_LENGTH = 12;

/**
 * The mask as a client or shell may send it back, its ellipsis turned into three ASCII dots:
 * followed by what the mask shows (nothing, or the last four characters). Without this it
 * would be stored, and sent upstream, as a credential of its own.
 */
const ASCII_MASK = /^\.\.\.([\s\S]{0,4})$/;

/** The mask showing `last4`, or the bare ellipsis. */
export const maskShowing = (last4: string | undefined): string => `${MASK}${last4 ?? ''}`;

/** The masked form of a credential: its last four characters only when it is long enough. */
export const credentialMask = (credential: string): string => maskShowing(credential.length >= SHOWN_FROM_LENGTH ? credential.slice(-4) : undefined);

/**
 * Shorter credentials are not looked for in text: replacing every `abc` of a message would
 * garble it, and hide next to nothing of a credential that short.
 */
export const REDACTED_FROM_LENGTH = 8;

/**
 * `text` with every occurrence of `credential` replaced by its mask: a target's error may name
 * the credential it refused, whole, and that error reaches views (an execution's error, a
 * relayed chat answer) that otherwise never show it. Spelt with JSON escapes too (`sk-ab\/cd`,
 * `\u0073k-…`, escaped twice), which a JSON error parses back into the credential itself, or
 * percent-encoded, or in base64 (see `base64Spellings`). An event stream's masker
 * (`CredentialMasker`) finds them all, the base64 ones in whole events (see its `events`).
 */
export function withoutCredential(text: string, credential: string | undefined): string {
  if (!credential || credential.length < REDACTED_FROM_LENGTH) return text;
  let literal = text.includes(credential) ? text.replaceAll(credential, credentialMask(credential)) : text;
  for (const run of base64Spellings(credential)) if (literal.includes(run)) literal = literal.replaceAll(run, jsonMask(credential));
  // No escape without a backslash or `%`: the common error body costs these looks.
  if (!literal.includes('\\') && !literal.includes('%')) return literal;
  const scanner = escapedCredentialScanner(credential);
  const first = scanner.push(encoder.encode(literal));
  const rest = scanner.flush();
  return scanner.found ? new TextDecoder().decode(concatBytes([first, rest], first.byteLength + rest.byteLength)) : literal;
}

/**
 * What finds `credential` spelt with JSON escapes (run after the literal masking, whose matches
 * it does not look for). Its mask is escaped as a JSON string's content, since it replaces text
 * inside one: a `"` or `\` among the last four characters would otherwise end or break it.
 */
export function escapedCredentialScanner(credential: string): EscapedCredentialScanner {
  return new EscapedCredentialScanner(encoder.encode(credential), encoder.encode(jsonMask(credential)));
}

/** The mask escaped as a JSON string's content: what replaces a spelling found inside one (a base64 one too). */
export const jsonMask = (credential: string): string => JSON.stringify(credentialMask(credential)).slice(1, -1);

/**
 * The masked form a written value is, spelt as views show it (`…ABCD`), or undefined when the
 * value is a credential. Every value starting with `…` is one; `...ABCD` is the same form.
 */
export function maskedForm(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.startsWith(MASK)) return value;
  const ascii = ASCII_MASK.exec(value);
  return ascii ? maskShowing(ascii[1]) : undefined;
}

/** The validation detail refusing a masked form that matches nothing stored at `where`. */
export function maskedCredentialIssue(path: string[], value: string, where: string): { path: string[]; message: string; code: 'masked_credential' } {
  return { path, message: `"${value}" is the masked form of a stored credential, and ${where} has none like it: send the credential itself`, code: 'masked_credential' };
}
