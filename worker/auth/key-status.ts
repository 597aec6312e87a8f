/**
 * Whether API keys are still valid (present and not revoked), for the event streams a key
 * opened: the Worker authenticates a stream once, when it opens, and the stream itself (an SSE
 * response or a hibernating WebSocket held by the agent's object) then outlives every cache of
 * that check. An object holding streams asks here before it sends them events, and ends the
 * streams of a key found revoked.
 *
 * An answer from D1 is kept for `KEY_STATUS_TTL_MS` in the isolate, like a key lookup, so a busy
 * stream costs one D1 read per key every 30 s; revocation drops it where it runs.
 */
export const KEY_STATUS_TTL_MS = 30_000;
/** The header the Worker names a socket's API key in, on its internal upgrade request to the object. */
export const STREAM_KEY_HEADER = 'x-gateway-key-id';
const MAX_ENTRIES = 10_000;
const known = new Map<string, { valid: boolean; at: number }>();

/** The remembered status of `keyId`: true (valid), false (revoked or gone), undefined (ask D1). */
export function rememberedKeyStatus(keyId: string, now = Date.now()): boolean | undefined {
  const entry = known.get(keyId);
  return entry && now - entry.at < KEY_STATUS_TTL_MS ? entry.valid : undefined;
}

function remember(keyId: string, valid: boolean, now: number): void {
  if (known.size >= MAX_ENTRIES) known.clear();
  known.set(keyId, { valid, at: now });
}

/**
 * Notes a key the Worker has just admitted (a stream opening with it), unless this isolate
 * already knows it revoked.
 */
export function admittedKey(keyId: string): void {
  if (rememberedKeyStatus(keyId) !== false) remember(keyId, true, Date.now());
}

/** Forgets what this isolate knew of a key (it was revoked here). */
export function forgetKeyStatus(keyId: string): void {
  known.delete(keyId);
}

/**
 * Asks D1 about the keys not remembered and returns the ids found revoked or gone. A D1 that
 * cannot answer counts the keys valid for this round (streams go on through an outage, as
 * requests authenticated from the caches do) and is asked again on the next.
 */
export async function revokedKeys(db: D1Database, keyIds: Iterable<string>): Promise<Set<string>> {
  const now = Date.now();
  const unknown = [...new Set(keyIds)].filter((id) => rememberedKeyStatus(id, now) === undefined);
  if (unknown.length > 0) {
    try {
      const valid = new Set<string>();
      // D1 binds at most 100 parameters a statement.
      for (let i = 0; i < unknown.length; i += 100) {
        const ids = unknown.slice(i, i + 100);
        const { results } = await db.prepare(`SELECT id FROM api_keys WHERE id IN (${ids.map(() => '?').join(', ')}) AND revoked_at IS NULL`).bind(...ids).all<{ id: string }>();
        for (const row of results) valid.add(row.id);
      }
      for (const id of unknown) remember(id, valid.has(id), now);
    } catch (error) {
      console.warn(JSON.stringify({ level: 'warn', msg: 'key status check failed; streams go on until the next check', error: String(error) }));
    }
  }
  return new Set([...new Set(keyIds)].filter((id) => rememberedKeyStatus(id, now) === false));
}
