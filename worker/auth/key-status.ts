/**
 * Whether API keys are still valid (present and not revoked), for the streams a key opened: the
 * Worker authenticates a request once, when it arrives, and a stream (an SSE response, a
 * hibernating WebSocket held by the agent's object, a streamed A2A, MCP or chat answer) then
 * outlives every cache of that check. What holds a stream asks here before it passes output
 * on, and ends the streams of a key found revoked.
 *
 * An answer from D1 is kept for `KEY_STATUS_TTL_MS` in the isolate, like a key lookup, so a busy
 * stream costs one D1 read per key every 30 s; revocation in this isolate records the key as
 * revoked at once, which its streams here see at their next check (worker/auth/key-watch.ts).
 */
export const KEY_STATUS_TTL_MS = 30_000;
/** The header the Worker names a socket's API key in, on its internal upgrade request to the object. */
export const STREAM_KEY_HEADER = 'x-gateway-key-id';
const MAX_ENTRIES = 10_000;
const known = new Map<string, { valid: boolean; at: number }>();
/** When a D1 read of each key started, while it runs: streams whose answer lapsed together read once. */
const reading = new Map<string, number>();
/**
 * A read older than this no longer stops others: the request that started it may have ended,
 * and its read with it (a request cannot await another's I/O, so none waits on it either).
 */
const READ_STALE_MS = 5_000;

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
 * Notes a key the Worker has just admitted (an answer opening with it), when this isolate knows
 * nothing of it yet: the first check waits for the answer to lapse instead of reading D1 at
 * once. A key already known keeps its answer's age, since the Worker admits from caches up to
 * 90 s old: renewing it with every request would keep a busy key's watches from reading D1.
 */
export function admittedKey(keyId: string): void {
  if (!known.has(keyId)) remember(keyId, true, Date.now());
}

/** Records that a key was revoked here (D1 says so already): the streams of this isolate see it at their next check. */
export function keyRevokedHere(keyId: string): void {
  remember(keyId, false, Date.now());
}

/** Whether a D1 read of `keyId` is under way (another stream's): its answer is remembered shortly. */
export function keyStatusBeingRead(keyId: string, now = Date.now()): boolean {
  const started = reading.get(keyId);
  return started !== undefined && now - started < READ_STALE_MS;
}

/**
 * Asks D1 about the keys not remembered and returns the ids found revoked or gone. A D1 that
 * cannot answer counts the keys valid for this round (streams go on through an outage, as
 * requests authenticated from the caches do) and is asked again on the next.
 */
export async function revokedKeys(db: Pick<D1Database, 'prepare'>, keyIds: Iterable<string>): Promise<Set<string>> {
  const ids = [...new Set(keyIds)];
  const now = Date.now();
  const unknown = ids.filter((id) => rememberedKeyStatus(id, now) === undefined);
  if (unknown.length > 0) {
    for (const id of unknown) reading.set(id, now);
    try {
      await readStatus(db, unknown, now);
    } finally {
      for (const id of unknown) if (reading.get(id) === now) reading.delete(id);
    }
  }
  return new Set(ids.filter((id) => rememberedKeyStatus(id) === false));
}

async function readStatus(db: Pick<D1Database, 'prepare'>, ids: string[], now: number): Promise<void> {
  try {
    const valid = new Set<string>();
    // D1 binds at most 100 parameters a statement.
    for (let i = 0; i < ids.length; i += 100) {
      const batch = ids.slice(i, i + 100);
      const { results } = await db.prepare(`SELECT id FROM api_keys WHERE id IN (${batch.map(() => '?').join(', ')}) AND revoked_at IS NULL`).bind(...batch).all<{ id: string }>();
      for (const row of results) valid.add(row.id);
    }
    for (const id of ids) {
      const current = known.get(id);
      // Revoked here while the read ran: newer than what the read saw.
      if (current && !current.valid && current.at >= now) continue;
      remember(id, valid.has(id), now);
    }
  } catch (error) {
    console.warn(JSON.stringify({ level: 'warn', msg: 'key status check failed; streams go on until the next check', error: String(error) }));
  }
}
