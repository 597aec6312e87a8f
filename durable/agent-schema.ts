import type { Sql } from './sql';

/**
 * The AgentDO's schema, as an ordered list of migrations. Never edit an entry that has
 * shipped: append a new one. Applied at start-up inside blockConcurrencyWhile, in one
 * transaction, with the applied count stored in `meta`.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE agent (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    tenant_id   TEXT NOT NULL,
    config      TEXT NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    rev         INTEGER NOT NULL DEFAULT 1
  );
  CREATE TABLE context (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    version     INTEGER NOT NULL,
    data        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
  );
  CREATE TABLE history (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id  TEXT NOT NULL,
    role          TEXT NOT NULL,
    content       TEXT NOT NULL,
    created_at    INTEGER NOT NULL
  );
  CREATE TABLE executions (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    intent           TEXT NOT NULL,
    input            TEXT,
    status           TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    upstream         TEXT,
    idempotency_key  TEXT,
    deadline_at      INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    rev              INTEGER NOT NULL DEFAULT 1
  );
  CREATE INDEX executions_by_status ON executions(status, seq);
  CREATE TABLE idempotency (
    key           TEXT PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    execution_id  TEXT NOT NULL,
    created_at    INTEGER NOT NULL
  );
  CREATE TABLE outbox (
    key         TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    rev         INTEGER NOT NULL,
    payload     TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_error  TEXT
  );
  CREATE INDEX outbox_due ON outbox(next_at);
  `,
  // Durable delivery: outgoing webhooks, their deliveries, and the event log for live streams.
  `
  CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
  );
  CREATE TABLE deliveries (
    id            TEXT PRIMARY KEY,
    webhook_id    TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER,
    last_status   INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    delivered_at  INTEGER
  );
  CREATE INDEX deliveries_due ON deliveries(status, next_at);
  CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    type        TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
  );
  `,
  // Two-phase commit participant: a prepared row is the agent's lock (at most one, enforced
  // in code); outcomes are tombstones so a late prepare or repeated commit/abort is answered.
  `
  CREATE TABLE tx_prepared (
    tx_id             TEXT PRIMARY KEY,
    coordinator_name  TEXT NOT NULL,
    data              TEXT NOT NULL,
    base_version      INTEGER NOT NULL,
    new_version       INTEGER NOT NULL,
    prepared_at       INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL
  );
  CREATE TABLE tx_outcomes (
    tx_id       TEXT PRIMARY KEY,
    outcome     TEXT NOT NULL,
    version     INTEGER,
    decided_at  INTEGER NOT NULL
  );
  CREATE INDEX tx_outcomes_by_age ON tx_outcomes(decided_at);
  `,
  // Agent2Agent: a task is an execution (its id is the id of the task's first execution);
  // these rows hold only what A2A adds: the context id, the message history and artifacts as
  // the SDK saved them, which execution runs the latest turn, and push-notification configs.
  `
  CREATE TABLE a2a_tasks (
    id            TEXT PRIMARY KEY,
    context_id    TEXT NOT NULL,
    execution_id  TEXT NOT NULL,
    task          TEXT NOT NULL,
    closed_state  INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
  );
  CREATE INDEX a2a_tasks_by_context ON a2a_tasks(context_id);
  CREATE TABLE a2a_turns (
    execution_id  TEXT PRIMARY KEY,
    task_id       TEXT NOT NULL,
    turn          INTEGER NOT NULL
  );
  CREATE INDEX a2a_turns_by_task ON a2a_turns(task_id);
  CREATE TABLE a2a_push_configs (
    task_id     TEXT NOT NULL,
    id          TEXT NOT NULL,
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (task_id, id)
  );
  `,
  // What executions owe their keys' token budgets until the key's limiter has it
  // (durable/agent-charges.ts): created by the first execution of a key with a token budget.
  `
  CREATE TABLE token_charges (
    execution_id  TEXT PRIMARY KEY,
    limiter       TEXT NOT NULL,
    charge_id     TEXT NOT NULL,
    reserved      INTEGER NOT NULL,
    used          INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       INTEGER
  );
  `,
  // An operator's view and override of a lock whose coordinator cannot answer
  // (durable/transaction-heuristics.ts): the transaction's deadline, how asking the coordinator
  // went, and whether an outcome was decided by the operator rather than the coordinator.
  `
  ALTER TABLE tx_prepared ADD COLUMN deadline_at INTEGER;
  ALTER TABLE tx_prepared ADD COLUMN inquiries INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE tx_prepared ADD COLUMN last_inquiry_at INTEGER;
  ALTER TABLE tx_prepared ADD COLUMN last_error TEXT;
  ALTER TABLE tx_outcomes ADD COLUMN heuristic INTEGER NOT NULL DEFAULT 0;
  `,
  // The A2A state a succeeded execution's output asks (its `a2a.state`; '' when it asks none),
  // kept when it finishes: ListTasks filters and orders every task of the agent by state, and
  // parsed each output (up to 1 MiB) on every call for it. Null on a row an older release
  // finished: the state is then read from its output (durable/a2a-store.ts).
  `
  ALTER TABLE executions ADD COLUMN a2a_state TEXT;
  `,
  // What an operator's resolve applied to a lock (the outcome it asked, whose decision was
  // applied, the context version then), so the same resolve retried after its answer was lost
  // says what it did (durable/transaction-heuristics.ts). Null for outcomes no resolve decided.
  `
  ALTER TABLE tx_outcomes ADD COLUMN resolved TEXT;
  `,
];

/**
 * Tables a new object creates on first use instead of at creation, by feature. DDL is most of
 * creating an agent (a CPU profile of creation: a third of the isolate's time in migrations;
 * SQLite re-parses the schema after every CREATE), and most agents never use A2A, outgoing
 * webhooks or multi-agent transactions. A new object skips every statement on these tables;
 * `DeferredSchema.ensure` runs them, from every entry in order, at the feature's first write.
 * Objects that existed before keep applying entries as usual; a later entry's statement on a
 * deferred table runs only where the table exists (and `ensure` runs it where it does not).
 */
const DEFERRED = {
  a2a: ['a2a_tasks', 'a2a_turns', 'a2a_push_configs'],
  webhooks: ['webhooks', 'deliveries'],
  transactions: ['tx_prepared', 'tx_outcomes'],
  charges: ['token_charges'],
} as const satisfies Record<string, readonly string[]>;
export type DeferredFeature = keyof typeof DEFERRED;

/** Each feature's first table: its presence stands for the feature's. */
const FIRST_TABLES: readonly string[] = Object.values(DEFERRED).map((tables) => tables[0]);

const statementsOf = (migration: string): string[] => migration.split(';').map((s) => s.trim()).filter(Boolean);

/** The table a statement creates, indexes or alters, if it is a deferred one. */
function deferredTable(statement: string): string | undefined {
  const table = /^(?:CREATE TABLE|CREATE INDEX \w+ ON|ALTER TABLE)\s+(\w+)/i.exec(statement)?.[1];
  return table && Object.values(DEFERRED).some((tables: readonly string[]) => tables.includes(table)) ? table : undefined;
}

const tableExists = (sql: Sql, table: string): boolean =>
  sql.one("SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = ?", table) !== undefined;

/**
 * Which deferred features this object has the tables of: asked once per instance (only
 * `ensure` creates them, only deleteAll drops them: `forget`), so the hot paths that look at
 * a feature's rows first ask `has` and treat "no tables" as "no rows".
 */
export class DeferredSchema {
  private readonly present = new Map<DeferredFeature, boolean>();

  constructor(
    private readonly sql: Sql,
    private readonly storage: DurableObjectStorage,
  ) {}

  has(feature: DeferredFeature): boolean {
    if (this.present.size === 0) this.seed(new Set(this.sql.all<{ name: string }>(`SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (${FIRST_TABLES.map(() => '?').join(', ')})`, ...FIRST_TABLES).map((r) => r.name)));
    return this.present.get(feature) ?? false;
  }

  /** Records which features' tables exist, from `tables` (which must include every feature's first table that does). */
  seed(tables: ReadonlySet<string>): void {
    for (const [name, list] of Object.entries(DEFERRED)) this.present.set(name as DeferredFeature, tables.has(list[0]));
  }

  /** Creates the feature's tables (every statement on them, in order) unless they exist. */
  ensure(feature: DeferredFeature): void {
    if (this.has(feature)) return;
    const tables: readonly string[] = DEFERRED[feature];
    this.storage.transactionSync(() => {
      for (const statement of MIGRATIONS.flatMap(statementsOf)) {
        const table = deferredTable(statement);
        if (table && tables.includes(table)) this.sql.run(statement);
      }
      markComplete(this.sql, feature, MIGRATIONS.length);
    });
    this.present.set(feature, true);
  }

  /** After deleteAll: the object starts over without them. */
  forget(): void {
    this.present.clear();
  }
}

/** What a starting instance reads once: its `meta` values, and which deferred features have tables. */
export interface StartState {
  meta: ReadonlyMap<string, string>;
  tables: ReadonlySet<string>;
}

/**
 * Brings the schema up to date and returns the start state. Every start of the object comes
 * here, and almost always the schema is current: one statement reads `meta` and the deferred
 * tables together (a cold instance compiles every statement it runs, so each read folded in
 * here is one compilation less per start), and only a new or older object pays for the
 * transaction below and a second read (and, once, one whose deferred tables are not yet
 * recorded complete: `completeDeferred`).
 */
export function migrate(sql: Sql, storage: DurableObjectStorage, migrations: readonly string[] = MIGRATIONS): StartState {
  const start = readStart(sql);
  // A version above ours is a newer release's (this one rolled back to): its steps are not ours
  // to run, and its tables and columns are only more than this release reads and writes.
  if (start && Number(start.meta.get('schema_version') ?? 0) >= migrations.length) return completeDeferred(sql, storage, migrations, start);
  // A new object's state after its migrations is known without reading it: the schema version
  // and no deferred tables (a new object skips them). Creating an agent reads nothing twice.
  if (runMigrations(sql, storage, migrations, deferredTable) === 0) {
    return { meta: new Map([['schema_version', String(migrations.length)]]), tables: new Set() };
  }
  const migrated = readStart(sql);
  if (!migrated) throw new Error('meta table missing after migrations');
  return completeDeferred(sql, storage, migrations, migrated);
}

/** The entries this release applies, in order (a test plays a newer release with one more). */
export const currentMigrations = (): readonly string[] => MIGRATIONS;

/** `meta` key: the schema version a deferred feature's tables are known to be complete to. */
const completeKey = (feature: string): string => `deferred_complete:${feature}`;

function markComplete(sql: Sql, feature: string, version: number): void {
  sql.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value', completeKey(feature), String(version));
}

/**
 * Deferred tables are created by whichever release first uses the feature, from the entries
 * that release knows, while `schema_version` may already be higher: a release rolled back to
 * creates them without the later entries' columns, and once rolled forward no entry runs again
 * (every transaction on such an agent failed "no such column"). So each feature records the
 * version its tables are complete to; tables without that record, or with an older one, get
 * every statement on them whose effect is missing, once. Statements on deferred tables are
 * therefore only CREATE TABLE, CREATE INDEX and ALTER TABLE … ADD COLUMN.
 */
function completeDeferred(sql: Sql, storage: DurableObjectStorage, migrations: readonly string[], start: StartState): StartState {
  const stale = Object.entries(DEFERRED).filter(([feature, tables]) =>
    start.tables.has(tables[0]) && Number(start.meta.get(completeKey(feature)) ?? 0) < migrations.length);
  if (stale.length === 0) return start;
  const meta = new Map(start.meta);
  storage.transactionSync(() => {
    for (const [feature, tables] of stale) {
      for (const statement of migrations.flatMap(statementsOf)) {
        const table = deferredTable(statement);
        if (table && (tables as readonly string[]).includes(table) && !inEffect(sql, statement, table)) sql.run(statement);
      }
      markComplete(sql, feature, migrations.length);
      meta.set(completeKey(feature), String(migrations.length));
    }
  });
  return { meta, tables: start.tables };
}

/** Whether what `statement` makes on `table` is already there. */
function inEffect(sql: Sql, statement: string, table: string): boolean {
  const column = /^ALTER TABLE\s+\w+\s+ADD\s+(?:COLUMN\s+)?(\w+)/i.exec(statement)?.[1];
  if (column) return sql.one('SELECT 1 AS one FROM pragma_table_info(?) WHERE name = ?', table, column) !== undefined;
  const index = /^CREATE INDEX\s+(\w+)/i.exec(statement)?.[1];
  if (index) return sql.one("SELECT 1 AS one FROM sqlite_master WHERE type = 'index' AND name = ?", index) !== undefined;
  return /^CREATE TABLE/i.test(statement) && tableExists(sql, table);
}

/** The start state, or null for a new object (no `meta` table yet: the read fails). */
function readStart(sql: Sql): StartState | null {
  let rows: { key: string; value: string | null }[];
  try {
    rows = sql.all<{ key: string; value: string | null }>(
      `SELECT key, value FROM meta
       UNION ALL SELECT 'table:' || name, NULL FROM sqlite_master WHERE type = 'table' AND name IN (${FIRST_TABLES.map(() => '?').join(', ')})`,
      ...FIRST_TABLES,
    );
  } catch (error) {
    // A new object has no `meta` yet. Anything else (the runtime out of SQLite memory, with
    // thousands of objects in one process) is that failure: taken for a missing table, it
    // surfaced as "meta table missing after migrations", which no retry policy knows.
    if (error instanceof Error && /no such table: meta\b/.test(error.message)) return null;
    throw error;
  }
  const meta = new Map<string, string>();
  const tables = new Set<string>();
  for (const { key, value } of rows) {
    if (value === null) tables.add(key.slice('table:'.length));
    else meta.set(key, value);
  }
  return { meta, tables };
}

/**
 * Applies the entries of `migrations` not yet applied, in one transaction, and returns how many
 * were applied before. `deferred` names the deferred table a statement is on, if any: a new
 * object (none applied) skips those statements, and any object skips one whose table it does
 * not have.
 */
export function runMigrations(sql: Sql, storage: DurableObjectStorage, migrations: readonly string[], deferred: (statement: string) => string | undefined = () => undefined): number {
  return storage.transactionSync(() => {
    const hasMeta = sql.one<{ n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'meta'");
    const applied = hasMeta?.n ? Number(sql.one<{ value: string }>("SELECT value FROM meta WHERE key = 'schema_version'")?.value ?? 0) : 0;
    for (let i = applied; i < migrations.length; i++) {
      for (const statement of statementsOf(migrations[i] ?? '')) {
        const table = deferred(statement);
        const creates = table !== undefined && /^CREATE TABLE/i.test(statement);
        if (table !== undefined && (applied === 0 || (!creates && !tableExists(sql, table)))) continue;
        sql.run(statement);
      }
    }
    if (applied < migrations.length) {
      sql.run("INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", String(migrations.length));
    }
    return applied;
  });
}
