/**
 * A per-isolate cache of lookups (API keys, pools, agent routes, hooks): entries live `ttlMs`,
 * the map is cleared when it reaches `maxEntries`, and an expired entry is refreshed by one
 * request while the others keep the value they had, for the few milliseconds that takes.
 *
 * Without that last part, when an entry every request uses (a busy client's API key) expired,
 * each request in flight missed at once and went to KV and D1 itself, and each arriving while
 * those were slow missed too: on the bench, a stampede that held every request up for 3–6
 * seconds. Requests do not await another request's lookup (in Workers, I/O belongs to the
 * request that started it and dies with it); a refresh that has not landed within
 * `staleForMs` (its request was cancelled, or KV and D1 are that slow) lets the next request
 * refresh instead.
 */
export class IsolateCache<T> {
  private readonly entries = new Map<string, { value: T; expires: number; loadedAt: number }>();
  /** Keys being refreshed, with when the refresh started. */
  private readonly refreshing = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly options: { maxEntries?: number; staleForMs?: number } = {},
  ) {}

  /**
   * The cached value of `key`, or what `load` finds (kept if `keep` says so; a value not kept
   * also drops what was cached, as for a key revoked since).
   */
  async get(key: string, load: () => Promise<T>, keep: (value: T) => boolean = () => true): Promise<T> {
    const now = Date.now();
    const cached = this.entries.get(key);
    if (cached && (cached.expires > now || this.beingRefreshed(key, now))) return cached.value;
    if (this.refreshing.size >= this.max) this.refreshing.clear();
    this.refreshing.set(key, now);
    try {
      const value = await load();
      if (keep(value)) this.set(key, value);
      else this.entries.delete(key);
      return value;
    } finally {
      this.refreshing.delete(key);
    }
  }

  /** The cached value of `key` while it is fresh, else undefined; never loads. */
  peek(key: string): T | undefined {
    const cached = this.entries.get(key);
    return cached && cached.expires > Date.now() ? cached.value : undefined;
  }

  set(key: string, value: T): void {
    if (this.entries.size >= this.max) this.entries.clear();
    const now = Date.now();
    this.entries.set(key, { value, expires: now + this.ttlMs, loadedAt: now });
  }

  /**
   * The value of `key` past its time, if it was loaded at most `maxAgeMs` ago: for a caller whose
   * refresh failed because the source cannot answer now. It is then served for `retryInMs`
   * before a request tries the source again, so an outage costs the source one try per key per
   * `retryInMs`, not one per request; its age still counts from when it was loaded.
   */
  stale(key: string, maxAgeMs: number, retryInMs: number): T | undefined {
    const cached = this.entries.get(key);
    const now = Date.now();
    if (!cached || now - cached.loadedAt > maxAgeMs) return undefined;
    cached.expires = now + retryInMs;
    return cached.value;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Drops every entry whose value `matches` (a walk of the map: for rare changes, never per request). */
  deleteWhere(matches: (value: T) => boolean): void {
    for (const [key, entry] of this.entries) if (matches(entry.value)) this.entries.delete(key);
  }

  private get max(): number {
    return this.options.maxEntries ?? 10_000;
  }

  private beingRefreshed(key: string, now: number): boolean {
    const since = this.refreshing.get(key);
    return since !== undefined && now - since < (this.options.staleForMs ?? 2_000);
  }
}
