/**
 * Deletes a cached entry from KV after a change whose source of truth (D1, an agent's object)
 * already holds it. KV is a cache only: when it refuses the delete, the change still stands and
 * the entry expires by its TTL, so the failure is logged (by the entry's kind: a key's entry is
 * named by its hash, which no log line shows) rather than answered as a 500 for a change made.
 */
export async function dropCached(kv: KVNamespace, key: string, kind: string): Promise<void> {
  try {
    await kv.delete(key);
  } catch (error) {
    console.warn(JSON.stringify({ level: 'warn', msg: 'KV delete failed; the cached entry expires by its TTL', cache: kind, error: String(error) }));
  }
}
