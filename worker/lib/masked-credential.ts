/**
 * How every view shows a stored credential (a pool target's, an agent upstream's): an
 * ellipsis and its last four characters. A write that sends such a form back means "keep the
 * stored one"; one that matches nothing stored is refused with `maskedCredentialIssue`.
 */
const MASK = '…';

/**
 * The mask as a client or shell may send it back, its ellipsis turned into three ASCII dots:
 * followed by what the mask shows (one to four characters, the end of a credential of at least
 * one). Without this it would be stored, and sent upstream, as a credential of its own.
 */
const ASCII_MASK = /^\.\.\.([\s\S]{1,4})$/;

export const maskCredential = (last4: string): string => `${MASK}${last4}`;

/**
 * The masked form a written value is, spelt as views show it (`…ABCD`), or undefined when the
 * value is a credential. Every value starting with `…` is one; `...ABCD` is the same form.
 */
export function maskedForm(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.startsWith(MASK)) return value;
  const ascii = ASCII_MASK.exec(value);
  return ascii ? maskCredential(ascii[1] ?? '') : undefined;
}

/** The validation detail refusing a masked form that matches nothing stored at `where`. */
export function maskedCredentialIssue(path: string[], value: string, where: string): { path: string[]; message: string; code: 'masked_credential' } {
  return { path, message: `"${value}" is the masked form of a stored credential, and ${where} has none like it: send the credential itself`, code: 'masked_credential' };
}
