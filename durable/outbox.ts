import type { Agent } from '../worker/schemas/agent';
import { isTransientStorageMessage } from '../worker/lib/storage-errors';
import { TERMINAL, type Execution } from '../worker/schemas/execution';
import type { OutboxRow } from './agent-rows';
import type { AgentStore } from './agent-store';

export interface AgentSnapshot {
  agent: Agent;
  contextVersion: number;
}

/** Rows per D1 batch: a flush that sent fewer has sent everything that was due. */
export const OUTBOX_BATCH = 50;
const MAX_BACKOFF_MS = 5 * 60_000;

/** Backoff for a row D1 refused: 1 s, 2 s, 4 s … capped at 5 minutes, with jitter. */
export function outboxBackoffMs(attempts: number, random = Math.random): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** attempts);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** An outbox row on its way to D1, with the agent it belongs to. */
export interface ProjectionRow {
  tenant_id: string;
  agent_id: string;
  /**
   * When that agent was created: its registry row's `created_at`, which tells it from an agent
   * created under the id after it was deleted. Absent from an object of an earlier release
   * (objects and projectors run side by side during a deploy): its rows land as they did.
   */
  agent_created_at?: number;
  key: string;
  kind: OutboxRow['kind'];
  rev: number;
  payload: string;
}

/** What the projection stage answers a hand-over: the rows D1 refused (the rest landed). */
export interface ProjectionOutcome {
  failed: { key: string; rev: number; error: string }[];
}

/** Where an agent's flush hands its rows: the projection stage (durable/projector.ts). */
export interface ProjectionSink {
  write(rows: readonly ProjectionRow[]): Promise<ProjectionOutcome>;
}

/** The revision rule of an execution row: D1 keeps the highest. */
const UPSERT_EXECUTION = `ON CONFLICT (tenant_id, agent_id, id) DO UPDATE SET status = excluded.status, record = excluded.record,
         rev = excluded.rev, updated_at = excluded.updated_at WHERE excluded.rev > executions.rev`;

/*
 * How rows land in D1. Rows carry a revision and D1 keeps the highest, so a late or repeated
 * delivery never rolls a record back. Agent rows only ever update the registry row that
 * creation wrote (never re-create a deleted agent), and execution rows land only while their
 * agent is registered: that agent, by its creation time. A deleted agent's last rows can land
 * after the DELETE answered and a create made the id's next agent (a flush that outlived its
 * 30 s, or one begun while the deletion settled): they wrote the old name and state over the
 * new agent's claim (revision 0) and put the old executions in its list.
 */

/** The columns an agent row sets, from its snapshot, in the order of `agentSetStatement`'s values. */
type AgentColumns = [tenantId: string, agentId: string, name: string | null, state: string, snapshot: string, rev: number, createdAt: number | null];

function agentColumns(row: ProjectionRow): AgentColumns {
  const { agent } = JSON.parse(row.payload) as AgentSnapshot;
  return [row.tenant_id, row.agent_id, agent.name ?? null, agent.state, row.payload, row.rev, row.agent_created_at ?? null];
}

function agentStatement(db: D1Database, [tenantId, agentId, name, state, snapshot, rev, createdAt]: AgentColumns, now: number): D1PreparedStatement {
  return db
    .prepare('UPDATE agents SET name = ?, state = ?, snapshot = ?, rev = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND rev < ? AND (?9 IS NULL OR created_at = ?9)')
    .bind(name, state, snapshot, rev, now, tenantId, agentId, rev, createdAt);
}

/**
 * The columns an execution row sets, from its record, in the order of the INSERTs below, then
 * its agent's creation time, which only matches the registry row, and when it finished (null
 * while it has not), which D1's retention judges it by.
 */
type ExecutionColumns = [tenantId: string, agentId: string, id: string, status: string, intent: string, record: string, rev: number, createdAt: number, agentCreatedAt: number | null, finishedAt: number | null];

function executionColumns(row: ProjectionRow): ExecutionColumns {
  const execution = JSON.parse(row.payload) as Execution;
  const finishedAt = TERMINAL.has(execution.status) ? Date.parse(execution.finishedAt ?? execution.createdAt) : null;
  return [row.tenant_id, row.agent_id, execution.id, execution.status, execution.intent, row.payload, row.rev, Date.parse(execution.createdAt), row.agent_created_at ?? null, Number.isNaN(finishedAt) ? null : finishedAt];
}

/*
 * D1's retention (worker/agents/execution-retention.ts) deletes finished rows last changed
 * before its cutoff. A delivery of such an execution arriving after that (an outbox row that
 * waited out D1's refusals, a hand-over answered too late and sent again) would insert it anew,
 * stamped with this moment: back in its agent's list, counted by /v1/stats as finished now, and
 * kept for the whole retention again. So a finished execution older than the cutoff only updates
 * a row D1 still has (a late end of one D1 shows queued or running, which retention never
 * deletes) and never inserts one; dropped, it is answered as landed, since retention would have
 * deleted it. `keepSince` is null while D1 keeps every execution.
 */
const RETAINED = (finishedAt: string, keepSince: string, existing: string) => `(${keepSince} IS NULL OR ${finishedAt} IS NULL OR ${finishedAt} >= ${keepSince} OR EXISTS (${existing}))`;

function executionStatement(db: D1Database, columns: ExecutionColumns, now: number, keepSince: number | null): D1PreparedStatement {
  const [tenantId, agentId, id, status, intent, record, rev, createdAt, agentCreatedAt, finishedAt] = columns;
  return db
    .prepare(
      `INSERT INTO executions (tenant_id, agent_id, id, status, intent, record, rev, created_at, updated_at)
       SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
       WHERE EXISTS (SELECT 1 FROM agents WHERE tenant_id = ?1 AND id = ?2 AND (?10 IS NULL OR created_at = ?10))
         AND ${RETAINED('?11', '?12', 'SELECT 1 FROM executions WHERE tenant_id = ?1 AND agent_id = ?2 AND id = ?3')}
       ${UPSERT_EXECUTION}`,
    )
    .bind(tenantId, agentId, id, status, intent, record, rev, createdAt, now, agentCreatedAt, finishedAt, keepSince);
}

/**
 * Characters of the one value a set of rows is bound as: under D1's 2 MB per value even if
 * every character took 3 bytes in UTF-8. A row larger than this goes on its own.
 */
const MAX_SET_CHARS = 600_000;

/**
 * The statements that project `rows` into D1. Each kind goes in as few statements as fit: all
 * of a set in one, over `json_each` of one bound value (D1 binds at most 100 parameters). One
 * statement per row cost D1 about as much per row as the row's own write (BENCHMARKS.md,
 * eleventh pass), and with one execution per flush, as at 1,000 agents on the bench, the
 * agents' snapshots were half of a group's rows (thirteenth pass). `keepSince`: D1's retention
 * cutoff (null: it keeps every execution).
 */
export function d1Statements(db: D1Database, rows: readonly ProjectionRow[], now: number, keepSince: number | null = null): D1PreparedStatement[] {
  // One snapshot per agent, its newest: an UPDATE … FROM meeting an agent twice would apply an
  // arbitrary one of the two, and the older one changes nothing in D1 anyway.
  const snapshots = new Map<string, ProjectionRow>();
  for (const row of rows) {
    if (row.kind !== 'agent') continue;
    const key = `${row.tenant_id}/${row.agent_id}`;
    const seen = snapshots.get(key);
    if (!seen || seen.rev < row.rev) snapshots.set(key, row);
  }
  return [
    ...inSets([...snapshots.values()].map(agentColumns), (columns) => agentStatement(db, columns, now), (values) => agentSetStatement(db, values, now)),
    ...inSets(rows.filter((row) => row.kind === 'execution').map(executionColumns), (columns) => executionStatement(db, columns, now, keepSince), (values) => executionSetStatement(db, values, now, keepSince)),
  ];
}

/** Statements for `list`: sets of at most MAX_SET_CHARS (each row's columns as one JSON value), a larger row alone. */
function inSets<C>(list: readonly C[], alone: (columns: C) => D1PreparedStatement, set: (values: readonly string[]) => D1PreparedStatement): D1PreparedStatement[] {
  const statements: D1PreparedStatement[] = [];
  let values: string[] = [];
  let chars = 0;
  for (const columns of list) {
    // A record travels as a string inside the set's JSON: its own value, escaped.
    const value = JSON.stringify(columns);
    if (value.length > MAX_SET_CHARS) {
      statements.push(alone(columns));
      continue;
    }
    if (chars + value.length > MAX_SET_CHARS) {
      statements.push(set(values));
      values = [];
      chars = 0;
    }
    values.push(value);
    chars += value.length;
  }
  if (values.length > 0) statements.push(set(values));
  return statements;
}

function agentSetStatement(db: D1Database, values: readonly string[], now: number): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE agents SET name = r.value ->> 2, state = r.value ->> 3, snapshot = r.value ->> 4, rev = r.value ->> 5, updated_at = ?2
       FROM json_each(?1) AS r
       WHERE agents.tenant_id = r.value ->> 0 AND agents.id = r.value ->> 1 AND agents.rev < r.value ->> 5
         AND (r.value ->> 6 IS NULL OR agents.created_at = r.value ->> 6)`,
    )
    .bind(`[${values.join(',')}]`, now);
}

function executionSetStatement(db: D1Database, values: readonly string[], now: number, keepSince: number | null): D1PreparedStatement {
  // The WHERE also keeps SQLite from reading ON CONFLICT as a join's ON.
  return db
    .prepare(
      `INSERT INTO executions (tenant_id, agent_id, id, status, intent, record, rev, created_at, updated_at)
       SELECT r.value ->> 0, r.value ->> 1, r.value ->> 2, r.value ->> 3, r.value ->> 4, r.value ->> 5, r.value ->> 6, r.value ->> 7, ?2
       FROM json_each(?1) AS r
       WHERE EXISTS (SELECT 1 FROM agents AS a WHERE a.tenant_id = r.value ->> 0 AND a.id = r.value ->> 1
         AND (r.value ->> 8 IS NULL OR a.created_at = r.value ->> 8))
         AND ${RETAINED('r.value ->> 9', '?3', 'SELECT 1 FROM executions AS e WHERE e.tenant_id = r.value ->> 0 AND e.agent_id = r.value ->> 1 AND e.id = r.value ->> 2')}
       ${UPSERT_EXECUTION}`,
    )
    .bind(`[${values.join(',')}]`, now, keepSince);
}

/**
 * Payload characters per hand-over: at most 3 bytes each in UTF-8, so one call stays well under
 * the 32 MiB RPC limit however large the rows (an execution's is at most about 1.3 MB).
 */
export const MAX_HANDOVER_CHARS = 8_000_000;
/**
 * How long a flush waits for the projection stage's answer. An RPC has no deadline of its own,
 * and a flush that never ends would hold every later one (and the agent's deletion) behind it.
 * Rows not answered for are retried: D1 may have them already, which its revision rule makes
 * harmless.
 */
export const HANDOVER_TIMEOUT_MS = 30_000;

/**
 * What one drain did: `more` when more rows may be due (a full batch went, or one cut short by
 * size); `held` when rows stay in the outbox for a retry (refused, or not answered for).
 */
export interface Drained {
  more: boolean;
  held: boolean;
  /** Rows landed in D1: it answers. */
  landed: boolean;
  /** Every row held was refused by an outage (D1 or the stage unreachable, overloaded, reset), not for itself. */
  outage: boolean;
}

/**
 * Sends due outbox rows to D1 through the projection stage and removes those that landed
 * (unless rewritten meanwhile: the ack is by revision). Rows D1 refused, or all of them if the
 * stage cannot be reached or does not answer in time, are retried later with backoff.
 *
 * `pending` is a row not in the table (the agent's snapshot, built at the flush): it goes
 * first, and a durable row of its key, an older revision left by an earlier refusal, is
 * removed once it has landed instead. If it is refused it is written to the outbox as every
 * refused row is, so a refusal loses nothing and the alarm retries it.
 */
export async function drainOutbox(sink: ProjectionSink, store: AgentStore, tenantId: string, agentId: string, { pending, timeoutMs = HANDOVER_TIMEOUT_MS }: { pending?: OutboxRow; timeoutMs?: number } = {}): Promise<Drained> {
  // The rows are the agent's that holds the object now, read with it (a flush's next drain may
  // come after a deletion and a new create): named by its creation time, they land only in its registry row.
  const owner = store.agentRow();
  if (!owner) return { more: false, held: false, landed: false, outage: false };
  const due = store.dueOutbox(Date.now(), OUTBOX_BATCH);
  const superseded = pending && due.find((row) => row.key === pending.key);
  const candidates = pending ? [pending, ...due.filter((row) => row !== superseded)] : due;
  let chars = 0;
  const rows = candidates.filter((row, i) => (chars += row.payload.length) <= MAX_HANDOVER_CHARS || i === 0);
  if (rows.length === 0) return { more: false, held: false, landed: false, outage: false };
  let outcome: ProjectionOutcome;
  let unreached = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const unanswered = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the projection stage did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    outcome = await Promise.race([sink.write(rows.map((row) => ({ tenant_id: tenantId, agent_id: agentId, agent_created_at: owner.created_at, key: row.key, kind: row.kind, rev: row.rev, payload: row.payload }))), unanswered]);
  } catch (error) {
    unreached = true;
    outcome = { failed: rows.map((row) => ({ key: row.key, rev: row.rev, error: String(error) })) };
  } finally {
    clearTimeout(timer);
  }
  const refused = new Map(outcome.failed.map((f) => [f.key, f.error]));
  const stored = rows.filter((row) => row !== pending);
  const landed = stored.filter((row) => !refused.has(row.key));
  if (pending && !refused.has(pending.key) && superseded) landed.push(superseded);
  store.ackOutbox(landed);
  for (const row of stored) {
    const error = refused.get(row.key);
    if (error !== undefined) store.retryOutbox(row, Date.now() + outboxBackoffMs(row.attempts), error);
  }
  if (pending && refused.has(pending.key)) store.enqueueJson(pending.key, pending.kind, pending.rev, pending.payload, Date.now() + outboxBackoffMs(0));
  const more = refused.size < rows.length && (due.length === OUTBOX_BATCH || rows.length < candidates.length);
  const outage = refused.size > 0 && (unreached || outcome.failed.every((f) => isTransientStorageMessage(f.error)));
  return { more, held: refused.size > 0, landed: refused.size < rows.length, outage };
}
