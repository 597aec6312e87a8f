/**
 * Lets one request refresh an expired isolate-cache entry while the others keep using the value
 * they had, for the few milliseconds the refresh takes.
 *
 * Without it, when an entry every request uses (a busy client's API key, a pool) expired, each
 * request in flight missed at once and went to KV and D1 itself, and each arriving while those
 * were slow missed too: on the bench, a stampede that held every request up for 3–6 seconds.
 * Requests do not await another request's lookup (in Workers, I/O belongs to the request that
 * started it and dies with it); a refresh that has not finished within `staleForMs` (its
 * request was cancelled, or KV and D1 are that slow) lets the next request refresh instead.
 */
export class RefreshGate {
  private readonly started = new Map<string, number>();

  constructor(private readonly staleForMs = 2_000) {}

  /** True: another request is refreshing `key` right now, so serve the expired value. */
  serveStale(key: string, now: number): boolean {
    const since = this.started.get(key);
    return since !== undefined && now - since < this.staleForMs;
  }

  /** Runs the refresh of `key` as the one request doing it. */
  async refresh<T>(key: string, now: number, load: () => Promise<T>): Promise<T> {
    if (this.started.size >= 10_000) this.started.clear();
    this.started.set(key, now);
    try {
      return await load();
    } finally {
      this.started.delete(key);
    }
  }
}
