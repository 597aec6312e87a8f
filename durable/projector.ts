import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env';
import { inJurisdiction } from '../worker/agents/registry';
import type { Jurisdiction } from '../worker/schemas/agent';
import { runMigrations } from './agent-schema';
import { d1Statement, outboxBackoffMs, OUTBOX_BATCH, type ProjectionRow } from './outbox';
import { Sql } from './sql';

/** Shards of the projection stage: each a single writer, so they bound its throughput together. */
export const PROJECTOR_SHARDS = 4;
/** Rows wait this long for others to join their D1 batch. */
const FLUSH_DELAY_MS = 200;
/** The alarm's lead: it only covers an instance that goes away before its own flush. */
const FALLBACK_MS = 10_000;

const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE pending (
    tenant_id   TEXT NOT NULL,
    agent_id    TEXT NOT NULL,
    key         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    rev         INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_error  TEXT,
    PRIMARY KEY (tenant_id, agent_id, key)
  );
  CREATE INDEX pending_due ON pending(next_at);
  `,
];

interface PendingRow extends ProjectionRow, Record<string, string | number | null> {
  attempts: number;
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
 * The projection stage between the agents' outboxes and D1 (docs/ARCHITECTURE.md, "The
 * projection"). An agent flushing its outbox hands the rows here and forgets them once this
 * object has them in its own storage; rows of many agents then reach D1 together, one batch per
 * flush instead of one per agent flush, and an execution that changed several times while
 * waiting goes once, at its newest revision. D1 keeps the highest revision of every record, so
 * rows may arrive here (and leave) in any order and more than once.
 */
export class ProjectorDO extends DurableObject<Env> {
  private readonly sql: Sql;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private alarmAt: number | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = new Sql(ctx.storage.sql);
    void ctx.blockConcurrencyWhile(async () => {
      runMigrations(this.sql, ctx.storage, MIGRATIONS);
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  /** Takes rows for D1; durable here when this resolves. A row older than the one waiting for its key is dropped. */
  async append(rows: readonly ProjectionRow[]): Promise<void> {
    const now = Date.now();
    this.ctx.storage.transactionSync(() => {
      for (const row of rows) {
        this.sql.run(
          `INSERT INTO pending (tenant_id, agent_id, key, kind, rev, payload, attempts, next_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)
           ON CONFLICT (tenant_id, agent_id, key) DO UPDATE SET kind = excluded.kind, rev = excluded.rev, payload = excluded.payload,
             attempts = 0, next_at = excluded.next_at, last_error = NULL WHERE excluded.rev > pending.rev`,
          row.tenant_id, row.agent_id, row.key, row.kind, row.rev, row.payload, now,
        );
      }
    });
    this.flushSoon();
    if (this.alarmAt === null) {
      this.alarmAt = now + FALLBACK_MS;
      await this.ctx.storage.setAlarm(this.alarmAt);
    }
  }

  override async alarm(): Promise<void> {
    this.alarmAt = null;
    await this.flush();
    const next = this.sql.one<{ at: number | null }>('SELECT min(next_at) AS at FROM pending')?.at ?? null;
    if (next !== null) {
      this.alarmAt = Math.max(next, Date.now() + 1_000);
      await this.ctx.storage.setAlarm(this.alarmAt);
    }
  }

  private flushSoon(): void {
    if (this.flushTimer !== undefined) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush().then(() => this.settle());
    }, FLUSH_DELAY_MS);
  }

  /** Sends what is due, batch after batch, until a batch comes back short (or refused in part). */
  private flush(): Promise<void> {
    this.flushing = this.flushing
      .then(async () => {
        while ((await this.sendDue()) === OUTBOX_BATCH) { /* drain */ }
      })
      .catch((error: unknown) => console.error(JSON.stringify({ level: 'error', msg: 'projection flush failed', error: String(error) })));
    return this.flushing;
  }

  /** After a flush: nothing left, no alarm; rows left (refused, backing off), the alarm at the earliest. */
  private async settle(): Promise<void> {
    const next = this.sql.one<{ at: number | null }>('SELECT min(next_at) AS at FROM pending')?.at ?? null;
    if (next === null) {
      if (this.alarmAt !== null) {
        this.alarmAt = null;
        await this.ctx.storage.deleteAlarm();
      }
      return;
    }
    const at = Math.max(next, Date.now() + 1_000);
    if (this.alarmAt === null || this.alarmAt > at) {
      this.alarmAt = at;
      await this.ctx.storage.setAlarm(at);
    }
  }

  /**
   * One D1 batch of due rows (atomic); if it fails, row by row, so one poison row cannot hold
   * the others back. Rows are removed only at the revision sent: one rewritten meanwhile stays.
   */
  private async sendDue(): Promise<number> {
    const now = Date.now();
    const rows = this.sql.all<PendingRow>('SELECT tenant_id, agent_id, key, kind, rev, payload, attempts FROM pending WHERE next_at <= ? ORDER BY next_at LIMIT ?', now, OUTBOX_BATCH);
    if (rows.length === 0) return 0;
    try {
      await this.env.DB.batch(rows.map((row) => d1Statement(this.env.DB, row, now)));
      this.remove(rows);
      return rows.length;
    } catch (batchError) {
      if (rows.length === 1) {
        this.retry(rows[0] as PendingRow, String(batchError));
        return 0;
      }
    }
    let landed = 0;
    for (const row of rows) {
      try {
        await d1Statement(this.env.DB, row, now).run();
        this.remove([row]);
        landed++;
      } catch (error) {
        this.retry(row, String(error));
      }
    }
    return landed;
  }

  private remove(rows: readonly PendingRow[]): void {
    this.sql.run(
      "DELETE FROM pending WHERE rowid IN (SELECT p.rowid FROM json_each(?) AS j JOIN pending AS p ON p.tenant_id = j.value ->> '$[0]' AND p.agent_id = j.value ->> '$[1]' AND p.key = j.value ->> '$[2]' AND p.rev = j.value ->> '$[3]')",
      JSON.stringify(rows.map((row) => [row.tenant_id, row.agent_id, row.key, row.rev])),
    );
  }

  private retry(row: PendingRow, error: string): void {
    this.sql.run(
      'UPDATE pending SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE tenant_id = ? AND agent_id = ? AND key = ? AND rev = ?',
      Date.now() + outboxBackoffMs(row.attempts), error.slice(0, 500), row.tenant_id, row.agent_id, row.key, row.rev,
    );
  }
}
