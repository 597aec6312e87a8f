export type JsonObject = Record<string, unknown>;

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Applies a JSON Merge Patch (RFC 7396): objects merge recursively, `null` deletes a member,
 * anything else replaces. Pure: the target is not modified.
 */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return patch;
  const result: JsonObject = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete result[key];
      continue;
    }
    // defineProperty, not assignment: a member named "__proto__" is data, not a prototype.
    const current = Object.hasOwn(result, key) ? result[key] : undefined;
    Object.defineProperty(result, key, { value: mergePatch(current, value), enumerable: true, writable: true, configurable: true });
  }
  return result;
}
