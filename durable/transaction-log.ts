import type { AgentRoute } from '../worker/agents/registry';
import { iso } from '../worker/lib/time';
import type { AbortReason, ParticipantOperation, Transaction, TransactionStatus } from '../worker/schemas/transaction';
import { runMigrations } from './agent-schema';
import type { Sql } from './sql';

/**
 * The coordinator's schema: an ordered, append-only list like the AgentDO's. `tx` is the
 * durable log of one transaction (`preparing → committed | aborted`, then `completed_at` once
 * every participant acknowledged); `participants` holds each agent's operation, vote and ack.
 */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE tx (
    singleton         INTEGER PRIMARY KEY CHECK (singleton = 1),
    id                TEXT NOT NULL,
    tenant_id         TEXT NOT NULL,
    coordinator_name  TEXT NOT NULL,
    fingerprint       TEXT,
    status            TEXT NOT NULL,
    reason            TEXT,
    reason_agent      TEXT,
    message           TEXT,
    created_at        INTEGER NOT NULL,
    deadline_at       INTEGER NOT NULL,
    decided_at        INTEGER,
    completed_at      INTEGER,
    phase_two_tries   INTEGER NOT NULL DEFAULT 0,
    indexed_status    TEXT
  );
  CREATE TABLE participants (
    seq           INTEGER PRIMARY KEY,
    agent_id      TEXT NOT NULL UNIQUE,
    jurisdiction  TEXT,
    location_hint TEXT,
    operation     TEXT NOT NULL,
    vote          TEXT,
    version       INTEGER,
    acked         INTEGER NOT NULL DEFAULT 0
  );
  `,
  // A participant whose operator resolved its lock the other way while this coordinator could
  // not answer: it acknowledged the decision without applying it (durable/transaction-heuristics.ts).
  `
  ALTER TABLE participants ADD COLUMN heuristic_mismatch INTEGER NOT NULL DEFAULT 0;
  `,
  // Kept by the object named from a keyed transaction's id when D1 refused the index row:
  // where the coordinator named from the key is (durable/transaction-alias.ts).
  `
  CREATE TABLE alias (
    singleton         INTEGER PRIMARY KEY CHECK (singleton = 1),
    tx_id             TEXT NOT NULL,
    tenant_id         TEXT NOT NULL,
    coordinator_name  TEXT NOT NULL,
    created_at        INTEGER NOT NULL
  );
  `,
];

export interface TxRow extends Record<string, string | number | null> {
  id: string;
  tenant_id: string;
  coordinator_name: string;
  fingerprint: string | null;
  status: TransactionStatus;
  reason: AbortReason | null;
  reason_agent: string | null;
  message: string | null;
  created_at: number;
  deadline_at: number;
  decided_at: number | null;
  completed_at: number | null;
  phase_two_tries: number;
  indexed_status: string | null;
}

export interface ParticipantRow extends Record<string, string | number | null> {
  seq: number;
  agent_id: string;
  jurisdiction: string | null;
  location_hint: string | null;
  operation: string;
  vote: 'yes' | 'no' | null;
  version: number | null;
  acked: number;
  heuristic_mismatch: number;
}

export interface AliasRow extends Record<string, string | number | null> {
  tx_id: string;
  tenant_id: string;
  coordinator_name: string;
  created_at: number;
}

export interface NewParticipant {
  agentId: string;
  route: AgentRoute;
  operation: ParticipantOperation;
}

/** Rows of one coordinator's SQLite storage. Every method is one statement or one transaction. */
export class TransactionLog {
  constructor(
    private readonly sql: Sql,
    private readonly storage: DurableObjectStorage,
  ) {}

  /** No schema yet: this coordinator has never begun a transaction. */
  private empty = false;

  /**
   * Run at start-up inside blockConcurrencyWhile: brings an existing schema up to date, and
   * creates none yet for a new coordinator. Coordinators are named from ids and keys a caller
   * sends (a GET of an unknown id, an Idempotency-Key checked for a replay), and one only ever
   * read must keep no storage; `begin` creates the schema with the first row.
   */
  open(): void {
    this.empty = this.sql.one("SELECT 1 AS one FROM sqlite_master WHERE type = 'table' AND name = 'meta'") === undefined;
    if (!this.empty) runMigrations(this.sql, this.storage, MIGRATIONS);
  }

  /**
   * The coordinator's storage is being deleted (retention): reads answer "no transaction" from
   * now on, and a new transaction under this name creates the schema again. `open()` undoes it
   * if the deletion fails.
   */
  forget(): void {
    this.empty = true;
  }

  tx(): TxRow | undefined {
    if (this.empty) return undefined;
    return this.sql.one<TxRow>('SELECT * FROM tx WHERE singleton = 1');
  }

  participants(): ParticipantRow[] {
    if (this.empty) return [];
    return this.sql.all<ParticipantRow>('SELECT * FROM participants ORDER BY seq');
  }

  alias(): AliasRow | undefined {
    if (this.empty) return undefined;
    return this.sql.one<AliasRow>('SELECT * FROM alias WHERE singleton = 1');
  }

  /** Writes the pointer once; a repeat (the keyed coordinator retrying) changes nothing. */
  writeAlias(a: { txId: string; tenantId: string; coordinatorName: string; now: number }): void {
    this.ensureSchema();
    this.sql.run(
      'INSERT INTO alias (singleton, tx_id, tenant_id, coordinator_name, created_at) VALUES (1, ?, ?, ?, ?) ON CONFLICT (singleton) DO NOTHING',
      a.txId, a.tenantId, a.coordinatorName, a.now,
    );
  }

  private ensureSchema(): void {
    if (!this.empty) return;
    runMigrations(this.sql, this.storage, MIGRATIONS);
    this.empty = false;
  }

  begin(t: { id: string; tenantId: string; coordinatorName: string; fingerprint: string | null; deadlineAt: number; now: number }, participants: NewParticipant[]): void {
    this.ensureSchema();
    this.storage.transactionSync(() => {
      this.sql.run(
        "INSERT INTO tx (singleton, id, tenant_id, coordinator_name, fingerprint, status, created_at, deadline_at) VALUES (1, ?, ?, ?, ?, 'preparing', ?, ?)",
        t.id, t.tenantId, t.coordinatorName, t.fingerprint, t.now, t.deadlineAt,
      );
      for (const p of participants) {
        this.sql.run(
          'INSERT INTO participants (agent_id, jurisdiction, location_hint, operation) VALUES (?, ?, ?, ?)',
          p.agentId, p.route.jurisdiction, p.route.locationHint, JSON.stringify(p.operation),
        );
      }
    });
  }

  recordVote(agentId: string, vote: 'yes' | 'no', version: number | null): void {
    this.sql.run('UPDATE participants SET vote = ?, version = ? WHERE agent_id = ? AND vote IS NULL', vote, version, agentId);
  }

  /** Writes the decision once; a later call finds it taken and changes nothing. Returns the status. */
  decide(status: 'committed' | 'aborted', why: { reason?: AbortReason; agentId?: string; message?: string }, now: number): TransactionStatus {
    this.sql.run(
      "UPDATE tx SET status = ?, reason = ?, reason_agent = ?, message = ?, decided_at = ? WHERE singleton = 1 AND status = 'preparing'",
      status, why.reason ?? null, why.agentId ?? null, why.message?.slice(0, 500) ?? null, now,
    );
    return this.tx()?.status ?? status;
  }

  /**
   * `mismatch`: the participant acknowledged without applying, having applied an operator's other outcome.
   * `version` is kept only where the vote left none: a yes vote names the version the commit
   * writes, and a repeated commit acknowledged by an agent deleted and created since (or past
   * its tombstone's day) answers its current version, which this transaction never wrote.
   */
  ack(agentId: string, version: number | null, mismatch = false): void {
    this.sql.run('UPDATE participants SET acked = 1, version = coalesce(version, ?), heuristic_mismatch = ? WHERE agent_id = ?', version, mismatch ? 1 : 0, agentId);
  }

  complete(now: number): void {
    this.sql.run('UPDATE tx SET completed_at = ? WHERE singleton = 1 AND completed_at IS NULL', now);
  }

  phaseTwoFailed(): number {
    this.sql.run('UPDATE tx SET phase_two_tries = phase_two_tries + 1 WHERE singleton = 1');
    return this.tx()?.phase_two_tries ?? 0;
  }

  indexed(status: string): void {
    this.sql.run('UPDATE tx SET indexed_status = ? WHERE singleton = 1', status);
  }
}

/** The API view of a transaction's log. */
export function toTransaction(tx: TxRow, participants: ParticipantRow[]): Transaction {
  const view: Transaction = {
    id: tx.id,
    status: tx.status,
    completed: tx.completed_at !== null,
    participants: participants.map((p) => ({ agentId: p.agent_id, vote: p.vote, acknowledged: p.acked === 1, ...(p.heuristic_mismatch === 1 && { heuristicMismatch: true as const }) })),
    createdAt: iso(tx.created_at),
  };
  if (tx.status === 'committed') view.versions = Object.fromEntries(participants.map((p) => [p.agent_id, p.version ?? 0]));
  if (tx.reason !== null) view.reason = tx.reason;
  if (tx.reason_agent !== null) view.agentId = tx.reason_agent;
  if (tx.message !== null) view.message = tx.message;
  if (tx.decided_at !== null) view.decidedAt = iso(tx.decided_at);
  if (tx.completed_at !== null) view.completedAt = iso(tx.completed_at);
  return view;
}
