/**
 * Which cached things (API keys, hooks, by their cache key) were changed in this isolate, so
 * that a lookup can tell whether a change landed while it read. A lookup that read just before
 * a change and landed after it would put what it read back in the cache the change had just
 * emptied, and the old value (a revoked key, a deleted hook, an old secret) would serve for the
 * cache's life. Take a `mark()` before the read; `changedSince(key, mark)` after it.
 *
 * A sequence, not a count per key: when the map is cleared at its bound, every mark taken
 * before then reads as overtaken (a lookup not cached), never as unchanged.
 */
export class ChangeLog {
  private sequence = 0;
  /** The sequence number of each key's latest change. */
  private readonly latest = new Map<string, number>();
  /** The sequence number when the map was last cleared: every key counts as changed then. */
  private clearedAt = 0;

  constructor(private readonly maxEntries = 10_000) {}

  /** Records a change of `key` (made here, just now). */
  changed(key: string): void {
    this.sequence++;
    if (this.latest.size >= this.maxEntries) {
      this.latest.clear();
      this.clearedAt = this.sequence;
    }
    this.latest.set(key, this.sequence);
  }

  /** Where the log stands: pass it to `changedSince` once the read is done. */
  mark(): number {
    return this.sequence;
  }

  /** Whether `key` was changed here after `mark` was taken (a key known only once read may be asked too). */
  changedSince(key: string, mark: number): boolean {
    return Math.max(this.latest.get(key) ?? 0, this.clearedAt) > mark;
  }
}
