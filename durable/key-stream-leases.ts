import type { Failure } from '../worker/errors';
import { rpcMethodMissing } from '../worker/lib/rpc-missing';
import { keyStreamRefusal } from './stream-slots';
import type { Sql } from './sql';

/**
 * The cap on one API key's open streams (event and A2A) across agents, held in the key's limiter object
 * as leases (README, "How many streams"; docs/ARCHITECTURE.md, "Decision: a key's event streams
 * are capped across agents by leases in its limiter object"). The agents each count only their
 * own streams, so the key's count lives here. A lease names the agent object holding its
 * stream, and is never trusted to be given back (the agent learns of every end, this object of
 * none, and a word sent from one to the other can be lost): once the key is at its cap, the
 * agents are asked how many of the key's streams they still hold, and leases beyond that go.
 */

/** The limiter's fifth migration: the key's stream leases. */
export const STREAM_LEASES_MIGRATION = `
  CREATE TABLE stream_leases (
    id          TEXT PRIMARY KEY,
    agent       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
  );
  CREATE INDEX stream_leases_by_agent ON stream_leases(agent, expires_at);
  `;

/**
 * How long a lease is trusted before its agent is asked again whether its stream is still
 * open (only while the key is at its cap): the `Retry-After` a refused client is given. A
 * lease younger than this is never dropped: its stream may not be open yet.
 */
export const STREAM_LEASE_CHECK_MS = 15_000;

/** What the edge asks for: a lease for one more stream of `keyId` on agent object `agent`, within `max`. */
export interface StreamLeaseRequest {
  keyId: string;
  max: number;
  agent: string;
  /** Only whether one more would fit (a HEAD): nothing is taken. */
  check?: boolean;
}

export type StreamLeaseAnswer = { ok: true; leaseId: string | null } | Failure;

/** How many streams of `keyId` (event and A2A) agent object `agent` holds open now. */
export type StreamCount = (agent: string, keyId: string) => Promise<number>;

export class StreamLeases {
  constructor(
    private readonly sql: Sql,
    private readonly storage: DurableObjectStorage,
    private readonly streamsOf: StreamCount,
  ) {}

  /**
   * A lease for one more stream, or the 429 that refuses it. The count and the insert are one
   * synchronous step after the last `await`, so concurrent takes never pass the cap together.
   */
  async take(request: StreamLeaseRequest, now: number): Promise<StreamLeaseAnswer> {
    if (this.count() >= request.max) await this.check(request.keyId, now);
    const refused = keyStreamRefusal(this.count(), request.max);
    if (refused || request.check) return refused ?? { ok: true, leaseId: null };
    const leaseId = crypto.randomUUID();
    this.sql.run('INSERT INTO stream_leases (id, agent, expires_at) VALUES (?, ?, ?)', leaseId, request.agent, now + STREAM_LEASE_CHECK_MS);
    return { ok: true, leaseId };
  }

  /** Gives a lease back (its agent refused the stream). Idempotent. */
  release(leaseId: string): void {
    this.sql.run('DELETE FROM stream_leases WHERE id = ?', leaseId);
  }

  /** Streams the key holds open, as far as its leases say. */
  count(): number {
    return this.sql.one<{ n: number }>('SELECT count(*) AS n FROM stream_leases')?.n ?? 0;
  }

  /**
   * Asks each agent holding leases due a check how many of the key's streams it still has open,
   * and drops the due leases beyond that count. An agent that does not answer keeps its leases
   * until the next check; one of a release before this question has its due leases dropped (that
   * release held a key's streams to no cap at all).
   */
  private async check(keyId: string, now: number): Promise<void> {
    const agents = this.sql.all<{ agent: string }>('SELECT DISTINCT agent FROM stream_leases WHERE expires_at <= ?', now);
    await Promise.all(agents.map(async ({ agent }) => {
      let open = 0;
      try {
        open = await this.streamsOf(agent, keyId);
      } catch (error) {
        if (!rpcMethodMissing(error)) {
          console.warn(JSON.stringify({ level: 'warn', msg: "could not ask an agent about a key's event streams; its leases stand until the next check", agent, error: String(error) }));
          return;
        }
      }
      this.storage.transactionSync(() => {
        const held = this.sql.one<{ n: number }>('SELECT count(*) AS n FROM stream_leases WHERE agent = ?', agent)?.n ?? 0;
        const due = this.sql.all<{ id: string }>('SELECT id FROM stream_leases WHERE agent = ? AND expires_at <= ? ORDER BY expires_at', agent, now);
        for (const { id } of due.slice(0, Math.max(0, held - open))) this.release(id);
        this.sql.run('UPDATE stream_leases SET expires_at = ? WHERE agent = ? AND expires_at <= ?', now + STREAM_LEASE_CHECK_MS, agent, now);
      });
    }));
  }
}
