import type { AgentEvent } from '../worker/schemas/webhook';
import { iso } from '../worker/lib/time';
import type { Sql } from './sql';

/** A replay is read from the log in pages of at most this many events… */
const REPLAY_PAGE_EVENTS = 64;
/**
 * …and this many bytes of their data (a page holds one event at least, whatever its size): UTF-8
 * bytes, since `length()` of TEXT counts characters, up to a third of them for text beyond ASCII.
 */
const REPLAY_PAGE_BYTES = 256 * 1024;

/**
 * The kept events after `after`, oldest first, as many as fit in REPLAY_PAGE_BYTES of their
 * data (at least one); `done` when none is left after them.
 */
export function replayPage(sql: Sql, after: number): { events: AgentEvent[]; done: boolean } {
  const sizes = sql.all<{ seq: number; bytes: number }>('SELECT seq, length(CAST(data AS BLOB)) AS bytes FROM events WHERE seq > ? ORDER BY seq LIMIT ?', after, REPLAY_PAGE_EVENTS);
  let upTo = after;
  let bytes = 0;
  for (const row of sizes) {
    if (upTo > after && bytes + row.bytes > REPLAY_PAGE_BYTES) break;
    upTo = row.seq;
    bytes += row.bytes;
  }
  const events = upTo === after ? [] : sql
    .all<{ seq: number; type: string; data: string; created_at: number }>('SELECT seq, type, data, created_at FROM events WHERE seq > ? AND seq <= ? ORDER BY seq', after, upTo)
    .map((r) => ({ seq: r.seq, type: r.type, timestamp: iso(r.created_at), data: JSON.parse(r.data) as unknown }));
  return { events, done: sizes.length < REPLAY_PAGE_EVENTS && events.length === sizes.length };
}
