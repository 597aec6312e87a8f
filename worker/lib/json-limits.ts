/**
 * Bounds for free-form JSON (execution input, context documents, metadata): nesting depth
 * and serialized size in UTF-8 bytes. Storage limits are in bytes (a Durable Object SQLite
 * row holds at most 2 MB), and a string's `length` counts UTF-16 units, which undercounts
 * non-ASCII text by up to three times.
 */

export const MAX_JSON_DEPTH = 32;

const encoder = new TextEncoder();

/** Bytes of the value's JSON in UTF-8. */
export function jsonBytes(value: unknown): number {
  return encoder.encode(JSON.stringify(value) ?? '').byteLength;
}

/** Deepest nesting of arrays and objects (a scalar is 0), walked without recursion. */
export function jsonDepth(value: unknown, stopAbove = Infinity): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    const level = depth + 1;
    if (level > deepest) deepest = level;
    if (deepest > stopAbove) return deepest;
    for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push([child, level]);
  }
  return deepest;
}

/** Why `value` is out of bounds, or null. */
export function jsonLimitProblem(value: unknown, limits: { maxBytes: number; maxDepth?: number }): string | null {
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  if (jsonDepth(value, maxDepth) > maxDepth) return `nested deeper than ${maxDepth} levels`;
  const json = JSON.stringify(value) ?? '';
  // UTF-8 takes at most 3 bytes per UTF-16 unit: most values are clearly within the limit
  // without encoding them.
  if (json.length * 3 <= limits.maxBytes) return null;
  const bytes = encoder.encode(json).byteLength;
  if (bytes > limits.maxBytes) return `${bytes} bytes of JSON exceed the limit of ${limits.maxBytes}`;
  return null;
}

/** Cuts text to at most `maxChars`, saying how much was dropped. */
export function truncateText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const marker = `… [truncated ${text.length - maxChars} characters]`;
  return text.slice(0, Math.max(0, maxChars - marker.length)) + marker;
}
