/**
 * Bounds for free-form JSON (execution input, context documents, metadata): nesting depth
 * and serialized size in UTF-8 bytes. Storage limits are in bytes (a Durable Object SQLite
 * row holds at most 2 MB), and a string's `length` counts UTF-16 units, which undercounts
 * non-ASCII text by up to three times.
 */

export const MAX_JSON_DEPTH = 32;

const encoder = new TextEncoder();

/**
 * Whether the value's JSON takes more than `maxBytes` in UTF-8. UTF-8 takes at most 3 bytes
 * per UTF-16 unit, so most values are clearly within the limit without being encoded.
 */
export function exceedsJsonBytes(value: unknown, maxBytes: number): boolean {
  return jsonBytesOver(value, maxBytes) !== null;
}

/** The value's JSON size in UTF-8 bytes when it is over `maxBytes`, else null. */
function jsonBytesOver(value: unknown, maxBytes: number): number | null {
  return utf8BytesOver(JSON.stringify(value) ?? '', maxBytes);
}

/**
 * The UTF-8 size of text already serialized, when it is over `maxBytes`, else null: encoded
 * only when its length cannot settle it (a UTF-16 unit takes 1 to 3 bytes).
 */
export function utf8BytesOver(text: string, maxBytes: number): number | null {
  if (text.length * 3 <= maxBytes) return null;
  const bytes = encoder.encode(text).byteLength;
  return bytes > maxBytes ? bytes : null;
}

/** Deepest nesting of arrays and objects (a scalar is 0), walked without recursion. */
export function jsonDepth(value: unknown, stopAbove = Infinity): number {
  return walk(value, stopAbove).depth;
}

/**
 * One walk for both checks: the depth, and whether a number is not finite. JSON.parse reads a
 * literal beyond a double's range (1e400) as Infinity, which JSON.stringify then writes as
 * null: stored, the client's number would become null (in a context, a member a merge patch
 * could never have set).
 */
function walk(value: unknown, stopAbove: number): { depth: number; nonFinite: boolean } {
  let deepest = 0;
  let nonFinite = false;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (typeof node === 'number' && !Number.isFinite(node)) nonFinite = true;
    if (node === null || typeof node !== 'object') continue;
    const level = depth + 1;
    if (level > deepest) deepest = level;
    if (deepest > stopAbove) return { depth: deepest, nonFinite };
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, level]);
  }
  return { depth: deepest, nonFinite };
}

/** Why `value` is too deep or holds a number JSON cannot carry (`nonFinite`, the message), or null. */
export function jsonShapeProblem(value: unknown, maxDepth: number, nonFinite: string): string | null {
  const shape = walk(value, maxDepth);
  if (shape.depth > maxDepth) return `nested deeper than ${maxDepth} levels`;
  return shape.nonFinite ? nonFinite : null;
}

/** Why `value` is out of bounds (too deep, a number JSON cannot carry, too large), or null. */
export function jsonLimitProblem(value: unknown, limits: { maxBytes: number; maxDepth?: number }): string | null {
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  const problem = jsonShapeProblem(value, maxDepth, NON_FINITE);
  if (problem) return problem;
  const bytes = jsonBytesOver(value, limits.maxBytes);
  return bytes === null ? null : `${bytes} bytes of JSON exceed the limit of ${limits.maxBytes}`;
}

/** Why a value with a number beyond a double's range (such as 1e400) is refused. */
export const NON_FINITE = 'a number is beyond the range of a double (such as 1e400): it would be stored as null';

/** Cuts text to at most `maxChars`, saying how much was dropped. */
export function truncateText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const marker = `… [truncated ${text.length - maxChars} characters]`;
  return text.slice(0, Math.max(0, maxChars - marker.length)) + marker;
}
