import type { Sql } from './sql';

/**
 * The highest seq the agent's event log ever gave: SQLite's AUTOINCREMENT mark, which outlives
 * the rows. `max(seq)` alone read 0 for an agent created again and deleted before it recorded
 * an event, so the mark was lost and the next agent under the id numbered its log from 1 again,
 * hiding its events from a client still holding an id of the first.
 */
export function highestSeqEver(sql: Sql): number {
  const mark = sql.one<{ seq: number | null }>("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?.seq ?? 0;
  const newest = sql.one<{ seq: number | null }>('SELECT max(seq) AS seq FROM events')?.seq ?? 0;
  return Math.max(mark, newest);
}

/** Has a fresh log (after deleteAll) go on after `seq`: AUTOINCREMENT keeps the highest seq ever used, so a placeholder row at it moves that on. */
export function carrySeqMark(sql: Sql, seq: number): void {
  if (seq <= 0) return;
  sql.run("INSERT INTO events (seq, type, data, created_at) VALUES (?, 'placeholder', 'null', 0)", seq);
  sql.run('DELETE FROM events WHERE seq = ?', seq);
}
