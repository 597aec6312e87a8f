/**
 * Whether an `If-None-Match` header matches the current representation's `etag` (a strong
 * tag, quoted), so that a GET answers 304. RFC 9110 §13.1.2: `*` matches any current
 * representation, and the list's tags compare weakly: `W/"x"` matches `"x"`, as a cache or
 * proxy that weakened the tag (compressing the body, say) sends it back.
 *
 * @example ifNoneMatch('W/"abc", "def"', '"abc"') // true
 */
export function ifNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const opaque = (tag: string) => tag.trim().replace(/^W\//, '');
  return header.trim() === '*' || header.split(',').some((tag) => opaque(tag) === opaque(etag));
}
