import { ApiError } from '../errors';

/** A version as an entity tag: strong, quoted (`"3"`). */
export const versionETag = (version: number): string => `"${version}"`;

/**
 * Parses If-Match into the versions it names: `"3"` (or a bare `3`) names version 3, and a
 * list (RFC 9110 §13.1.1: `"3", "4"`) names each; `*` matches every version (undefined). If-Match
 * compares strongly (§13.1.1, §8.8.3.2), so a weak tag (`W/"3"`) is a valid tag that never
 * matches: it names no version, and a list of only weak tags (or none) names none (412 where it is checked).
 * `source` names where the client gets the tag, for the refusal of one that is not a tag.
 */
export function parseIfMatch(header: string | undefined, source: string): number[] | undefined {
  if (header === undefined || header.trim() === '*') return undefined;
  // Empty list elements are skipped (RFC 9110 §5.6.1): an empty If-Match names no tag, which no version matches.
  // Only the tags this API gives: strong comparison is character by character, so "01" is not
  // "1" (it used to be read as the number and matched), and a tag with one quote is no tag.
  const tags = header.split(',').filter((tag) => tag.trim() !== '').map((tag) => /^\s*(W\/)?(?:"(0|[1-9]\d{0,14})"|(0|[1-9]\d{0,14}))\s*$/.exec(tag));
  if (!tags.every((t): t is RegExpExecArray => t !== null)) {
    throw new ApiError('invalid_request', `If-Match must be an ETag from ${source}, like "3"`, [{ path: ['if-match'], message: 'not an ETag of this API', code: 'custom' }]);
  }
  return tags.filter(([, weak]) => weak === undefined).map(([, , quoted, bare]) => Number(quoted ?? bare));
}
