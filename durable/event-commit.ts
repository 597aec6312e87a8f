import type { AgentEvent } from '../worker/schemas/webhook';

/**
 * Holds the events a transaction recorded until it has ended, and lets go of those it
 * committed. An event is recorded inside its change's transaction, which can still roll back
 * after it (a statement the runtime refuses, an error later in the change): pushed at once, a
 * rolled-back event reached live streams as if it had happened, and the event that took its
 * seq next was dropped by every SSE client as a repeat (a socket got the seq twice).
 *
 * `transactionSync` ends before the next microtask, so that is when they are checked. Committed
 * seqs only grow (AUTOINCREMENT reuses only a rolled-back one), so an event is committed when
 * the log's newest seq has reached it and no event recorded after it took its seq again.
 */
export class AfterCommit<T> {
  private held: { events: AgentEvent[]; with: T }[] = [];
  private scheduled = false;

  /**
   * @param newestSeq the log's newest seq now (throws when the log is gone: nothing is sent)
   * @param release sends committed events, with what was captured when they were recorded
   */
  constructor(
    private readonly newestSeq: () => number,
    private readonly release: (events: AgentEvent[], captured: T) => void,
  ) {}

  hold(events: AgentEvent[], captured: T): void {
    const first = events[0]?.seq;
    if (first === undefined) return;
    // Held events at or past this seq were rolled back: their seq was given out again.
    this.held = this.held.filter((h) => (h.events.at(-1)?.seq ?? 0) < first);
    this.held.push({ events, with: captured });
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Forgets every held event (the log was deleted with its agent). */
  drop(): void {
    this.held = [];
  }

  private flush(): void {
    this.scheduled = false;
    const held = this.held;
    this.held = [];
    if (held.length === 0) return;
    let newest: number;
    try {
      newest = this.newestSeq();
    } catch {
      return;
    }
    for (const h of held) if ((h.events.at(-1)?.seq ?? Infinity) <= newest) this.release(h.events, h.with);
  }
}
