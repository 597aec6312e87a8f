import type { Agent, AgentConfig, AgentContext, AgentState, AgentStatus, Region } from '../worker/schemas/agent';
import { TERMINAL, type Execution, type ExecutionError, type ExecutionStatus } from '../worker/schemas/execution';
import { iso } from '../worker/lib/time';
import { truncateText } from '../worker/lib/json-limits';
import { maskUpstream } from '../worker/upstream/resolve';
import type { HistoryEntry } from '../worker/upstream/types';
import type { DeferredSchema, StartState } from './agent-schema';
import { toExecution, type AgentRow, type ExecutionRow, type OutboxRow } from './agent-rows';
import { askedState } from './a2a-view';
import type { Sql } from './sql';

/** Conversation turns kept per agent; older ones are trimmed (the D1 history keeps everything). */
export const HISTORY_LIMIT = 50;
/** Longest stored turn (characters): a single huge reply cannot approach the 2 MB row limit. */
export const MAX_TURN_CHARS = 32_000;
const HISTORY_TRIM_EVERY = 16;

const IDEMPOTENCY_TTL_MS = 24 * 60 * 60_000;
const KEEP_FINISHED = 1_000;
/** Values of a counter reserved with one write (see `nextCounter`). */
const COUNTER_BLOCK = 1_000;

/** Rows of one agent's SQLite storage, and the outbox entries that mirror them to D1. */
export class AgentStore {
  /**
   * The agent row and its parsed config, cached: this object is the agent's only writer, so
   * the copy stays right as long as every write goes through here (which drops it).
   */
  private cachedRow: AgentRow | null | undefined;
  private cachedConfig: { row: AgentRow; config: AgentConfig } | undefined;
  /** Read by every execution (placement tags for pools), written once at creation. */
  private cachedHint: Region | null | undefined;
  private cachedHistory: readonly HistoryEntry[] | undefined;
  private cachedContext: AgentContext | undefined;
  /**
   * `meta` as the instance's start read found it (`seed`; null before it or after
   * `invalidate`), and the keys written since, which are read from storage again: a
   * rolled-back write cannot leave a value here that storage lacks.
   */
  private startMeta: ReadonlyMap<string, string> | null = null;
  private readonly writtenMeta = new Set<string>();
  /** Counters kept in `meta`: the next value this instance hands out, and the last it reserved (see `nextCounter`). */
  private readonly counters = new Map<string, { next: number; reserved: number }>();

  constructor(
    private readonly sql: Sql,
    private readonly schema: DeferredSchema,
  ) {}

  agentRow(): AgentRow | undefined {
    if (this.cachedRow === undefined) {
      this.cachedRow = this.sql.one<AgentRow>('SELECT tenant_id, config, paused, created_at, updated_at, rev FROM agent WHERE singleton = 1') ?? null;
    }
    return this.cachedRow ?? undefined;
  }

  /**
   * Takes the instance's start read (see `migrate`): the `meta` values and the deferred
   * features' tables, which would otherwise cost a statement each on first use.
   */
  seed(start: StartState): void {
    this.startMeta = start.meta;
    this.writtenMeta.clear();
    this.schema.seed(start.tables);
  }

  /** Forgets cached rows (after a write, a rollback or deleteAll). */
  invalidate(): void {
    this.startMeta = null;
    this.counters.clear();
    this.cachedRow = undefined;
    this.cachedConfig = undefined;
    this.cachedHint = undefined;
    this.cachedHistory = undefined;
    this.cachedContext = undefined;
  }

  config(row: AgentRow): AgentConfig {
    if (this.cachedConfig?.row !== row) this.cachedConfig = { row, config: JSON.parse(row.config) as AgentConfig };
    return this.cachedConfig.config;
  }

  contextVersion(): number {
    return this.context().version;
  }

  insertAgent(tenantId: string, config: AgentConfig, now: number): void {
    this.invalidate();
    this.sql.run('INSERT INTO agent (singleton, tenant_id, config, paused, created_at, updated_at, rev) VALUES (1, ?, ?, 0, ?, ?, 1)', tenantId, JSON.stringify(config), now, now);
    this.sql.run('INSERT INTO context (singleton, version, data, updated_at) VALUES (1, 0, ?, ?)', '{}', now);
    this.setMeta('retained_at', String(now)); // a new agent has nothing to retain for a while
  }

  updateAgent(config: AgentConfig, paused: boolean, now: number): void {
    this.invalidate();
    this.sql.run('UPDATE agent SET config = ?, paused = ?, updated_at = ?, rev = rev + 1 WHERE singleton = 1', JSON.stringify(config), paused ? 1 : 0, now);
  }

  counts(): { running: number; queued: number } {
    const rows = this.sql.all<{ status: string; n: number }>("SELECT status, count(*) AS n FROM executions WHERE status IN ('running', 'queued') GROUP BY status");
    return {
      running: rows.find((r) => r.status === 'running')?.n ?? 0,
      queued: rows.find((r) => r.status === 'queued')?.n ?? 0,
    };
  }

  /** `running`: how many executions run, if the caller knows (it spares the count). */
  state(row: AgentRow, running?: number): AgentState {
    if (row.paused) return 'paused';
    return (running ?? this.counts().running) > 0 ? 'running' : 'idle';
  }

  /** An execution as the API shows it (`known`: its row, if the caller has it), or null if it or the agent is gone. */
  executionOrNull(id: string, known?: ExecutionRow): Execution | null {
    const row = this.agentRow();
    const execution = known ?? this.execution(id);
    return row && execution ? toExecution(execution, this.config(row).id) : null;
  }

  /** An execution the caller has just written: its absence is a bug, not a state. */
  executionView(id: string): Execution {
    const execution = this.executionOrNull(id);
    if (!execution) throw new Error(`execution ${id} vanished`);
    return execution;
  }

  statusView(row: AgentRow): AgentStatus {
    const last = this.lastExecution();
    const counts = this.counts();
    return {
      state: this.state(row, counts.running),
      ...counts,
      contextVersion: this.contextVersion(),
      lastExecution: last ? { id: last.id, status: last.status, finishedAt: last.finished_at === null ? null : new Date(last.finished_at).toISOString() } : null,
    };
  }

  agentView(row: AgentRow, running?: number): Agent {
    const config = this.config(row);
    return { ...config, upstream: maskUpstream(config.upstream), state: this.state(row, running), createdAt: iso(row.created_at), updatedAt: iso(row.updated_at) };
  }

  // --- context and history ---

  /**
   * The context, cached as the history is (every execution reads it, this object is its only
   * writer). Shared: callers must not modify it (mergePatch returns a new object).
   */
  context(): AgentContext {
    if (!this.cachedContext) {
      const row = this.sql.one<{ version: number; data: string }>('SELECT version, data FROM context WHERE singleton = 1');
      this.cachedContext = row ? { version: row.version, data: JSON.parse(row.data) as Record<string, unknown> } : { version: 0, data: {} };
    }
    return this.cachedContext;
  }

  /**
   * Writes the context inside the caller's transaction. Returns its version, and what to call
   * once that transaction has committed to bring the cache along (a rollback leaves it dropped).
   */
  writeContext(data: Record<string, unknown>, now: number): { version: number; committed: () => void } {
    this.cachedContext = undefined;
    const version = this.sql.one<{ version: number }>('UPDATE context SET version = version + 1, data = ?, updated_at = ? WHERE singleton = 1 RETURNING version', JSON.stringify(data), now)?.version ?? 0;
    return { version, committed: () => { this.cachedContext = { version, data }; } };
  }

  /**
   * The last turns, oldest first. Cached: every execution reads them and this object is their
   * only writer; the copy follows an append only once the append's transaction has committed.
   */
  history(): readonly HistoryEntry[] {
    this.cachedHistory ??= this.sql
      .all<{ role: string; content: string }>('SELECT role, content FROM history ORDER BY seq DESC LIMIT ?', HISTORY_LIMIT)
      .reverse()
      .map((r) => ({ role: r.role === 'assistant' ? 'assistant' : 'user', content: r.content }));
    return this.cachedHistory;
  }

  /**
   * Appends turns inside the caller's transaction. Returns what to call once that transaction
   * has committed, to bring the cached history along (a rolled-back append leaves it dropped).
   */
  appendHistory(executionId: string, entries: HistoryEntry[], now: number): () => void {
    const before = this.cachedHistory;
    this.cachedHistory = undefined;
    const stored = entries.map((entry) => ({ role: entry.role, content: truncateText(entry.content, MAX_TURN_CHARS) }));
    if (stored.length === 0) return () => { this.cachedHistory = before; };
    const newest = Math.max(...this.sql
      .all<{ seq: number }>(
        `INSERT INTO history (execution_id, role, content, created_at) VALUES ${stored.map(() => '(?, ?, ?, ?)').join(', ')} RETURNING seq`,
        ...stored.flatMap((entry) => [executionId, entry.role, entry.content, now]),
      )
      .map((r) => r.seq));
    // Trimmed when the newest seq crosses a multiple of HISTORY_TRIM_EVERY: between 50 and 66
    // rows stay (only the newest 50 are read) for a fraction of the deletes.
    if (Math.floor(newest / HISTORY_TRIM_EVERY) !== Math.floor((newest - stored.length) / HISTORY_TRIM_EVERY)) {
      this.sql.run('DELETE FROM history WHERE seq <= ?', newest - HISTORY_LIMIT);
    }
    return () => {
      if (before) this.cachedHistory = [...before, ...stored].slice(-HISTORY_LIMIT);
    };
  }

  // --- executions ---

  execution(id: string): ExecutionRow | undefined {
    return this.sql.one<ExecutionRow>('SELECT * FROM executions WHERE id = ?', id);
  }

  lastExecution(): ExecutionRow | undefined {
    return this.sql.one<ExecutionRow>('SELECT * FROM executions ORDER BY seq DESC LIMIT 1');
  }

  // Writes return the row they wrote, built from what was written rather than with RETURNING
  // (which costs about as much again as the write) or a read back: the outbox, the event log
  // and the caller's view need it.

  /**
   * Inserts an execution queued, or (`running`) already started: the revision it would have
   * after queued (1) and marked running (2), in one statement instead of two.
   */
  insertExecution(e: { id: string; intent: string; input: unknown; idempotencyKey: string | null; deadlineAt: number; now: number; running: boolean }): ExecutionRow {
    const row: ExecutionRow = {
      id: e.id, intent: e.intent, input: JSON.stringify(e.input ?? null), status: e.running ? 'running' : 'queued', output: null, error: null, attempts: 0, upstream: null,
      idempotency_key: e.idempotencyKey, deadline_at: e.deadlineAt, created_at: e.now, started_at: e.running ? e.now : null, finished_at: null, rev: e.running ? 2 : 1, a2a_state: null,
    };
    this.sql.run(
      'INSERT INTO executions (id, intent, input, status, attempts, idempotency_key, deadline_at, created_at, started_at, rev) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)',
      row.id, row.intent, row.input, row.status, row.idempotency_key, row.deadline_at, row.created_at, row.started_at, row.rev,
    );
    return row;
  }

  nextQueued(): ExecutionRow | undefined {
    return this.sql.one<ExecutionRow>("SELECT * FROM executions WHERE status = 'queued' ORDER BY seq LIMIT 1");
  }

  byStatus(status: ExecutionStatus): ExecutionRow[] {
    return this.sql.all<ExecutionRow>('SELECT * FROM executions WHERE status = ? ORDER BY seq', status);
  }

  expiredQueued(now: number): { id: string }[] {
    return this.sql.all<{ id: string }>("SELECT id FROM executions WHERE status = 'queued' AND deadline_at <= ?", now);
  }

  /** The earliest deadline of a queued execution, or null with none queued. */
  firstQueuedDeadline(): number | null {
    return this.sql.one<{ at: number | null }>("SELECT min(deadline_at) AS at FROM executions WHERE status = 'queued'")?.at ?? null;
  }

  markRunning(id: string, now: number): ExecutionRow | undefined {
    return this.sql.one<ExecutionRow>("UPDATE executions SET status = 'running', started_at = ?, rev = rev + 1 WHERE id = ? AND status = 'queued' RETURNING *", now, id);
  }

  /** Counts an attempt about to start; returns the row as written (`from`: the row before). */
  recordAttempt(from: ExecutionRow, upstream: string): ExecutionRow {
    this.sql.run('UPDATE executions SET attempts = attempts + 1, upstream = ?, rev = rev + 1 WHERE id = ?', upstream, from.id);
    return { ...from, attempts: from.attempts + 1, upstream, rev: from.rev + 1 };
  }

  /**
   * Moves an unfinished execution to a terminal state; returns undefined if it had already
   * finished. `from`: its row as the caller knows it. The update is guarded by that row's
   * revision, so a row that changed meanwhile is read again rather than overwritten blindly.
   */
  finishExecution(from: ExecutionRow, status: 'succeeded' | 'failed' | 'cancelled', result: { output?: unknown; error?: ExecutionError }, now: number): ExecutionRow | undefined {
    const output = result.output === undefined ? null : JSON.stringify(result.output);
    const error = result.error === undefined ? null : JSON.stringify(result.error);
    const written = this.sql.run(
      "UPDATE executions SET status = ?, output = ?, error = ?, a2a_state = ?, finished_at = ?, rev = rev + 1 WHERE id = ? AND rev = ? AND status IN ('queued', 'running')",
      status, output, error, askedState(status, result.output), now, from.id, from.rev,
    );
    // One that never started (cancelled or out of time while queued) keeps no start time.
    if (written > 0) return { ...from, status, output, error, a2a_state: askedState(status, result.output), finished_at: now, rev: from.rev + 1 };
    const current = this.execution(from.id);
    if (!current || current.rev === from.rev || TERMINAL.has(current.status)) return undefined;
    return this.finishExecution(current, status, result, now);
  }

  // --- idempotency ---

  idempotency(key: string): { fingerprint: string; execution_id: string } | undefined {
    return this.sql.one<{ fingerprint: string; execution_id: string }>('SELECT fingerprint, execution_id FROM idempotency WHERE key = ?', key);
  }

  /** Records a key; replaces a stale one whose execution was pruned. */
  putIdempotency(key: string, fingerprint: string, executionId: string, now: number): void {
    this.sql.run(
      `INSERT INTO idempotency (key, fingerprint, execution_id, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT(key) DO UPDATE SET fingerprint = excluded.fingerprint, execution_id = excluded.execution_id, created_at = excluded.created_at`,
      key, fingerprint, executionId, now,
    );
  }

  meta(key: string): string | undefined {
    if (this.startMeta && !this.writtenMeta.has(key)) return this.startMeta.get(key);
    return this.sql.one<{ value: string }>('SELECT value FROM meta WHERE key = ?', key)?.value;
  }

  setMeta(key: string, value: string): void {
    if (key === 'location_hint') this.cachedHint = undefined;
    this.writtenMeta.add(key);
    this.sql.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value', key, value);
  }

  locationHint(): Region | null {
    if (this.cachedHint === undefined) {
      this.cachedHint = (this.meta('location_hint') as Region | undefined) ?? null;
    }
    return this.cachedHint;
  }

  /**
   * Next value of a named counter that only grows, across instances too. `meta` keeps the
   * highest value reserved, not the last one handed out: an instance reserves COUNTER_BLOCK
   * values with one write and hands them out from memory, and the next instance starts above
   * its reservation. So most values cost no statement (a write per value was a third of the
   * flush's statements at 1,000 agents). A value goes out only in a message the output gate
   * holds until the reservation's write has committed. A reservation rolled back leaves this
   * instance ahead of storage, which revisions allow; `invalidate` reads it again.
   */
  nextCounter(name: string): number {
    let counter = this.counters.get(name);
    if (!counter) {
      const reserved = Number(this.meta(name) ?? 0);
      counter = { next: reserved + 1, reserved };
      this.counters.set(name, counter);
    }
    if (counter.next > counter.reserved) {
      counter.reserved = counter.next + COUNTER_BLOCK - 1;
      this.setMeta(name, String(counter.reserved));
    }
    return counter.next++;
  }

  /** Retention: keys past their day; finished executions beyond the newest `keep` no kept key names (else the key would run it again). */
  prune(now: number, keep = KEEP_FINISHED): void {
    this.sql.run('DELETE FROM idempotency WHERE created_at < ?', now - IDEMPOTENCY_TTL_MS);
    this.sql.run(
      `DELETE FROM executions WHERE status IN ('succeeded', 'failed', 'cancelled') AND seq < (SELECT coalesce(min(seq), 0) FROM (SELECT seq FROM executions ORDER BY seq DESC LIMIT ?)) AND id NOT IN (SELECT execution_id FROM idempotency)`,
      keep,
    );
  }

  // --- outbox ---

  enqueue(key: string, kind: OutboxRow['kind'], rev: number, payload: unknown, now: number): void { this.enqueueJson(key, kind, rev, JSON.stringify(payload), now); }
  /** Every row backing off is due now: D1 answers again after an outage that refused them. */
  outboxDueNow(now: number): void { this.sql.run('UPDATE outbox SET next_at = ? WHERE next_at > ?', now, now); }

  /** `enqueue` with the payload already serialised. */
  enqueueJson(key: string, kind: OutboxRow['kind'], rev: number, payload: string, now: number): void {
    this.sql.run(
      `INSERT INTO outbox (key, kind, rev, payload, attempts, next_at) VALUES (?, ?, ?, ?, 0, ?)
       ON CONFLICT(key) DO UPDATE SET rev = excluded.rev, payload = excluded.payload, attempts = 0, next_at = excluded.next_at, last_error = NULL`,
      key, kind, rev, payload, now,
    );
  }

  dueOutbox(now: number, limit: number): OutboxRow[] {
    return this.sql.all<OutboxRow>('SELECT key, kind, rev, payload, attempts, next_at FROM outbox WHERE next_at <= ? ORDER BY next_at LIMIT ?', now, limit);
  }

  /** Removes delivered rows, unless they were rewritten (a newer rev) while in flight; one statement for the batch. */
  ackOutbox(rows: OutboxRow[]): void {
    if (rows.length === 0) return;
    this.sql.run(
      "DELETE FROM outbox WHERE rowid IN (SELECT o.rowid FROM json_each(?) AS j JOIN outbox AS o ON o.key = j.value ->> '$[0]' AND o.rev = j.value ->> '$[1]')",
      JSON.stringify(rows.map((row) => [row.key, row.rev])),
    );
  }

  retryOutbox(row: OutboxRow, nextAt: number, error: string): void {
    this.sql.run('UPDATE outbox SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE key = ? AND rev = ?', nextAt, error.slice(0, 500), row.key, row.rev);
  }

  /**
   * Whether this agent has webhook deliveries or prepared transactions: the alarm also serves
   * their retries and expiries, which only `alarmNeeds` knows of.
   */
  hasTimedFeatures(): boolean {
    return this.schema.has('webhooks') || this.schema.has('transactions');
  }

  /**
   * Everything the alarm may be needed for, in one read (it runs after every flush): unfinished
   * executions, the earliest outbox row, pending webhook delivery and prepared transaction.
   */
  alarmNeeds(): { active: number; outboxAt: number | null; deliveryAt: number | null; preparedExpiry: number | null } {
    // Tables created on first use are left out while this object has none of them.
    const row = this.sql.one<{ active: number; outbox_at: number | null; delivery_at: number | null; prepared_expiry: number | null }>(
      `SELECT (SELECT count(*) FROM executions WHERE status IN ('running', 'queued')) AS active,
              (SELECT min(next_at) FROM outbox) AS outbox_at,
              ${this.schema.has('webhooks') ? "(SELECT min(next_at) FROM deliveries WHERE status = 'pending')" : 'NULL'} AS delivery_at,
              ${this.schema.has('transactions') ? '(SELECT min(expires_at) FROM tx_prepared)' : 'NULL'} AS prepared_expiry`,
    );
    return { active: row?.active ?? 0, outboxAt: row?.outbox_at ?? null, deliveryAt: row?.delivery_at ?? null, preparedExpiry: row?.prepared_expiry ?? null };
  }
}
