import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env';
import { executionRetentionCutoff } from '../worker/agents/execution-retention-policy';
import { inJurisdiction } from '../worker/agents/registry';
import { isTransientStorageError } from '../worker/lib/storage-errors';
import type { Jurisdiction } from '../worker/schemas/agent';
import { d1Statements, MAX_HANDOVER_CHARS, type ProjectionOutcome, type ProjectionRow } from './outbox';

/** Shards of the projection stage: each a single thread, so they bound its throughput together. */
export const PROJECTOR_SHARDS = 4;
/** How long a hand-over waits for others to join its D1 batch. */
const GROUP_WINDOW_MS = 50;
/**
 * Rows per group: ten agents' full hand-overs. Rows are cheap in a batch (a set of them is one
 * statement) and batches are not: under load, groups grow while the batch before them is in
 * flight, instead of piling batches up in D1 (BENCHMARKS.md, eleventh pass).
 */
export const GROUP_MAX_ROWS = 500;
/** How long the next group waits for a batch in flight: a batch D1 never answers must not hold back the rest. */
const IN_FLIGHT_WAIT_MS = 5_000;

interface Waiting {
  rows: readonly ProjectionRow[];
  chars: number;
  done: (outcome: ProjectionOutcome) => void;
}

/**
 * The projector shard an agent's rows go through: by its tenant and id, so an agent always uses
 * the same one, and in the agent's jurisdiction, so its data in flight stays where it must.
 */
export function projectorFor(env: Pick<Env, 'PROJECTOR'>, tenantId: string, agentId: string, jurisdiction?: Jurisdiction | null): DurableObjectStub<ProjectorDO> {
  let hash = 0;
  for (const char of `${tenantId}/${agentId}`) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  const namespace = jurisdiction ? inJurisdiction(env.PROJECTOR, jurisdiction) : env.PROJECTOR;
  return namespace.get(namespace.idFromName(`projector-${hash % PROJECTOR_SHARDS}`));
}

/**
 * The projection stage between the agents' outboxes and D1 (docs/ARCHITECTURE.md, "Decision:
 * group commit of the outboxes into D1"). Agents flushing within the same few milliseconds
 * have their rows written to D1 in one batch, and each hears back which of its rows landed.
 * It holds nothing durable: an agent keeps its rows in its own outbox until this answers that
 * D1 has them, so a shard that goes away loses only the answer, and the agent sends again (D1
 * keeps the highest revision of every record, so a row written twice is harmless).
 */
export class ProjectorDO extends DurableObject<Env> {
  private group: Waiting[] = [];
  private groupRows = 0;
  private groupChars = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** Batches of this shard in D1, not answered yet and not past IN_FLIGHT_WAIT_MS. */
  private inFlight = 0;

  /**
   * Writes `rows` to D1 with whatever else arrives within the window, or, while a batch of
   * this shard is in flight, with whatever arrives until it ends; resolves with the rows D1
   * refused.
   */
  write(rows: readonly ProjectionRow[]): Promise<ProjectionOutcome> {
    const chars = rows.reduce((sum, row) => sum + row.payload.length, 0);
    // A group is bounded in rows and payload, so no D1 batch grows without limit.
    if (this.group.length > 0 && (this.groupRows + rows.length > GROUP_MAX_ROWS || this.groupChars + chars > MAX_HANDOVER_CHARS)) this.send();
    const outcome = new Promise<ProjectionOutcome>((done) => this.group.push({ rows, chars, done }));
    this.groupRows += rows.length;
    this.groupChars += chars;
    // A full group goes at once, even past one in flight; otherwise it waits for the window, or
    // for the batch in flight (whichever ends it is sent from there).
    if (this.groupRows >= GROUP_MAX_ROWS) this.send();
    else if (this.inFlight === 0) this.timer ??= setTimeout(() => this.send(), GROUP_WINDOW_MS);
    return outcome;
  }

  /** Sends the group as it stands (D1 keeps the newest revision, so batches may overlap). */
  private send(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const group = this.group;
    if (group.length === 0) return;
    this.group = [];
    this.groupRows = 0;
    this.groupChars = 0;
    this.inFlight++;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise<void>((resolve) => { timer = setTimeout(resolve, IN_FLIGHT_WAIT_MS); });
    void Promise.race([this.writeGroup(group), waited]).finally(() => {
      clearTimeout(timer);
      this.inFlight--;
      // What gathered meanwhile goes now: under load, one batch follows the other.
      if (this.inFlight === 0 && this.group.length > 0) this.send();
    });
  }

  /**
   * One D1 batch (atomic) for the whole group. If D1 refuses it, each hand-over is tried on its
   * own, and a refused one row by row, so one poison row holds back nothing but itself.
   */
  // A refusal of the platform's (D1 unreachable, overloaded, reset) is no poison row: every
  // statement would meet it alike, so the rows are answered refused at once and the agents
  // retry them with their backoff. Splitting cost a database that could not answer one call per
  // hand-over and one per row on top of the group's.
  private async writeGroup(group: readonly Waiting[]): Promise<void> {
    const now = Date.now();
    if (group.length > 1) {
      const error = await this.batchError(group.flatMap((w) => w.rows), now);
      if (error === null || error.transient) {
        for (const w of group) w.done({ failed: error === null ? [] : refusedAll(w.rows, error.message) });
        return;
      }
    }
    for (const w of group) w.done({ failed: await this.writeAlone(w.rows, now) });
  }

  /** One hand-over's rows in one batch, or if D1 refuses that (not for a transient reason), row by row; returns the rows it refused. */
  private async writeAlone(rows: readonly ProjectionRow[], now: number): Promise<ProjectionOutcome['failed']> {
    const error = await this.batchError(rows, now);
    if (error === null) return [];
    if (rows.length === 1 || error.transient) return refusedAll(rows, error.message);
    const failed: ProjectionOutcome['failed'] = [];
    for (const row of rows) {
      const rowError = await this.batchError([row], now);
      if (rowError !== null) failed.push({ key: row.key, rev: row.rev, error: rowError.message });
    }
    return failed;
  }

  /** Why D1 refused `rows` as one batch (and whether that was the platform's transient failure), or null if it took them. */
  private async batchError(rows: readonly ProjectionRow[], now: number): Promise<{ message: string; transient: boolean } | null> {
    try {
      await this.env.DB.batch(d1Statements(this.env.DB, rows, now, executionRetentionCutoff(this.env, now)));
      return null;
    } catch (error) {
      return { message: String(error), transient: isTransientStorageError(error) };
    }
  }
}

/** Every row of `rows` refused with one error. */
function refusedAll(rows: readonly ProjectionRow[], error: string): ProjectionOutcome['failed'] {
  return rows.map((row) => ({ key: row.key, rev: row.rev, error }));
}
