import type { Env } from '../env';
import type { Execution, ExecutionStatus } from '../schemas/execution';
import { decodeExecutionCursor, encodeExecutionCursor } from './list-cursor';

/**
 * Most bytes of records one page of an agent's executions reads (always at least one record).
 * A record holds up to a 1 MiB output and a 256 KiB input: 100 of them, a page at the largest
 * `limit`, were over 100 MB read into the Worker at once, whose isolate has 128 MB.
 */
export const PAGE_BYTES = 4 * 1024 * 1024;

export interface ExecutionPage {
  data: Execution[];
  nextCursor: string | null;
}

/**
 * A page of the agent's executions from D1, newest first: at most `limit` of them, and fewer when
 * their records would exceed PAGE_BYTES; `nextCursor` pages on in either case. Records past the
 * budget come back as their ids alone (D1 sends no more), which is how the page knows more follow.
 */
export async function listExecutions(env: Env, tenantId: string, agentId: string, query: { status?: ExecutionStatus; limit: number; cursor?: string }): Promise<ExecutionPage> {
  const before = await decodeExecutionCursor(tenantId, agentId, query.cursor, query.status);
  const where = ['tenant_id = ?', 'agent_id = ?'];
  const params: (string | number)[] = [tenantId, agentId];
  if (query.status) { where.push('status = ?'); params.push(query.status); }
  if (before) { where.push('id < ?'); params.push(before); }
  // The window runs over the limited rows only: the inner query reads limit + 1 rows by the key, as before.
  const { results } = await env.DB.prepare(
    `SELECT id, CASE WHEN sum(bytes) OVER (ORDER BY id DESC) - bytes < ? THEN record END AS record
     FROM (SELECT id, record, length(CAST(record AS BLOB)) AS bytes FROM executions WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?)
     ORDER BY id DESC`,
  )
    .bind(PAGE_BYTES, ...params, query.limit + 1)
    .all<{ id: string; record: string | null }>();
  const shown: { id: string; record: string }[] = [];
  for (const row of results) {
    if (shown.length === query.limit || row.record === null) break;
    shown.push({ id: row.id, record: row.record });
  }
  const last = shown.at(-1);
  return {
    data: shown.map((row) => JSON.parse(row.record) as Execution),
    nextCursor: results.length > shown.length && last ? await encodeExecutionCursor(tenantId, agentId, last.id, query.status) : null,
  };
}
