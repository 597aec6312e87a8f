// Per-item reads a panel refreshes a few at a time (an agent's status, a pool's details).
import { ApiError } from './api.js';

/**
 * The last answer of each item and when it came, refreshed `perRound` items a round: the
 * `first` one, then those seen longest ago, none while a 429's Retry-After lasts. The dashboard
 * shares its key's limits with the key's real traffic, so it does not read every item every
 * round; an item keeps its last answer until a newer one comes, so a refused read never blanks
 * a row.
 */
export class Rounds {
  constructor(perRound) {
    this.perRound = perRound;
    this.seen = new Map();
    this.pausedUntil = 0;
  }

  last(key) {
    return this.seen.get(key)?.value;
  }

  /** Forgets items no longer listed, then reads the round's due ones with `read(key)`. */
  async refresh(keys, read, first) {
    const listed = new Set(keys);
    for (const key of this.seen.keys()) if (!listed.has(key)) this.seen.delete(key);
    if (Date.now() < this.pausedUntil) return;
    const seenAt = (key) => (key === first ? -1 : this.seen.get(key)?.at ?? 0);
    const due = [...keys].sort((a, b) => seenAt(a) - seenAt(b)).slice(0, this.perRound);
    await Promise.all(due.map(async (key) => {
      try {
        this.seen.set(key, { value: await read(key), at: Date.now() });
      } catch (error) {
        if (error instanceof ApiError && error.status === 429) this.pausedUntil = Math.max(this.pausedUntil, Date.now() + (error.retryAfterS ?? 1) * 1000);
      }
    }));
  }
}
