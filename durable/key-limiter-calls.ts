import type { Sql } from './sql';

/** The limiter's fourth migration: the key's MCP calls in flight, and cancels that came first. */
export const MCP_CALLS_MIGRATION = `
  CREATE TABLE mcp_calls (
    execution_id  TEXT PRIMARY KEY,
    scope         TEXT NOT NULL,
    request_id    TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    expires_at    INTEGER NOT NULL
  );
  CREATE INDEX mcp_calls_by_request ON mcp_calls(scope, request_id);
  CREATE TABLE mcp_cancels (
    scope       TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, request_id)
  );
  `;

/**
 * How long a registered call is kept when its end is never reported (a crashed isolate): a
 * waiting `execute_intent` holds its request for at most 30 s, queue time included.
 */
export const MCP_CALL_MS = 90_000;
/** How long a cancel that found no call waits for a call of its session to register. */
export const MCP_EARLY_CANCEL_MS = 30_000;

/** One waiting MCP `execute_intent`: who asked (session scope, JSON-RPC id) and what it runs. */
export interface McpCall {
  /** The client's `Mcp-Session-Id`, or '' without one. */
  scope: string;
  /** The JSON-RPC request id as JSON (`1` and `"1"` are different ids). */
  requestId: string;
  agentId: string;
  executionId: string;
}

/** What a `notifications/cancelled` names: the call to cancel, or why none is. */
export type McpCancelMatch = { found: Pick<McpCall, 'agentId' | 'executionId'> } | { found: null; why: 'none' | 'ambiguous' };

/**
 * The MCP calls of one key that wait for their execution (`execute_intent` with `wait`), so a
 * `notifications/cancelled` (which names only a JSON-RPC id) can find the execution it means.
 * Held in the key's limiter object, as every isolate serving `/mcp` for the key reaches the
 * same one and it runs each step without an await. Runs inside the limiter's transactions.
 */
export class McpCalls {
  constructor(private readonly sql: Sql) {}

  /**
   * Registers a call, or answers true without registering it when its cancel came first (its
   * session's cancel found nothing yet): the caller then starts nothing.
   */
  started(call: McpCall, now: number): boolean {
    this.purge(now);
    if (call.scope !== '' && this.sql.one<{ n: number }>('DELETE FROM mcp_cancels WHERE scope = ? AND request_id = ? RETURNING 1 AS n', call.scope, call.requestId)) return true;
    this.sql.run(
      'INSERT OR REPLACE INTO mcp_calls (execution_id, scope, request_id, agent_id, expires_at) VALUES (?, ?, ?, ?, ?)',
      call.executionId, call.scope, call.requestId, call.agentId, now + MCP_CALL_MS,
    );
    return false;
  }

  /** Forgets a call that ended. Idempotent. */
  ended(executionId: string): void {
    this.sql.run('DELETE FROM mcp_calls WHERE execution_id = ?', executionId);
  }

  /**
   * The call a cancel names: the one call in flight under that scope and id. Two of them (two
   * clients of the key without sessions, both numbering from 0) are ambiguous and none is
   * named. A session's cancel that finds nothing is remembered for a while: its call may not
   * have registered yet, and within a session an id names one call only. Without a session it
   * is not, as another client's next call may well carry that id.
   */
  cancel(scope: string, requestId: string, now: number): McpCancelMatch {
    this.purge(now);
    const calls = this.sql.all<{ agent_id: string; execution_id: string }>('SELECT agent_id, execution_id FROM mcp_calls WHERE scope = ? AND request_id = ? LIMIT 2', scope, requestId);
    const [call] = calls;
    if (calls.length > 1) return { found: null, why: 'ambiguous' };
    if (call) {
      this.sql.run('DELETE FROM mcp_calls WHERE execution_id = ?', call.execution_id);
      return { found: { agentId: call.agent_id, executionId: call.execution_id } };
    }
    if (scope !== '') this.sql.run('INSERT OR REPLACE INTO mcp_cancels (scope, request_id, expires_at) VALUES (?, ?, ?)', scope, requestId, now + MCP_EARLY_CANCEL_MS);
    return { found: null, why: 'none' };
  }

  private purge(now: number): void {
    this.sql.run('DELETE FROM mcp_calls WHERE expires_at <= ?', now);
    this.sql.run('DELETE FROM mcp_cancels WHERE expires_at <= ?', now);
  }
}
