/**
 * How every view shows a stored credential (a pool target's, an agent upstream's): an
 * ellipsis and its last four characters. A write that sends such a form back means "keep the
 * stored one"; one that matches nothing stored is refused with `maskedCredentialIssue`.
 */
const MASK = '…';

export const maskCredential = (last4: string): string => `${MASK}${last4}`;

export const isMaskedCredential = (value: string | undefined): boolean => value?.startsWith(MASK) === true;

/** The validation detail refusing a masked form that matches nothing stored at `where`. */
export function maskedCredentialIssue(path: string[], value: string, where: string): { path: string[]; message: string; code: 'masked_credential' } {
  return { path, message: `"${value}" is the masked form of a stored credential, and ${where} has none like it: send the credential itself`, code: 'masked_credential' };
}
