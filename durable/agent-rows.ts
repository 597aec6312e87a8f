import { fail, type Failure } from '../worker/errors';
import type { AgentConfig, UpdateAgentBody } from '../worker/schemas/agent';
import type { Execution, ExecutionError, ExecutionStatus } from '../worker/schemas/execution';
import { iso, isoOrUndefined } from '../worker/lib/time';
import { maskedCredentialIssue } from '../worker/lib/masked-credential';

// The rows of an agent's tables as SQLite returns them, and the API views built from them.

export interface AgentRow extends Record<string, string | number> {
  tenant_id: string;
  config: string;
  paused: number;
  created_at: number;
  updated_at: number;
  rev: number;
}

/** An execution's row (its `seq`, the order of acceptance, is used in SQL only). */
export interface ExecutionRow extends Record<string, string | number | null> {
  id: string;
  intent: string;
  input: string | null;
  status: ExecutionStatus;
  output: string | null;
  error: string | null;
  attempts: number;
  upstream: string | null;
  idempotency_key: string | null;
  deadline_at: number;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  rev: number;
  /** The A2A state a succeeded execution's output asks ('' for none); null otherwise, or when an older release finished it. */
  a2a_state: string | null;
}

export interface OutboxRow extends Record<string, string | number | null> {
  key: string;
  kind: 'agent' | 'execution';
  rev: number;
  payload: string;
  attempts: number;
  next_at: number;
}

const parse = (text: string | null): unknown => (text === null ? undefined : (JSON.parse(text) as unknown));

/** The refusal of an upstream whose credential is a masked form matching nothing stored. */
export function maskedCredential(upstream: unknown): Failure {
  const issue = maskedCredentialIssue(['upstream', 'apiKey'], String((upstream as { apiKey?: string } | undefined)?.apiKey), 'this agent, at this base URL,');
  return fail('invalid_request', `upstream.apiKey: ${issue.message}`, [issue]);
}

/** An agent's config with an update applied: fields given replace, `a2a: null` removes. */
export function patchedConfig(current: AgentConfig, patch: UpdateAgentBody): AgentConfig {
  const next: AgentConfig = {
    ...current,
    ...(patch.name !== undefined && { name: patch.name }),
    ...(patch.instructions !== undefined && { instructions: patch.instructions }),
    ...(patch.upstream !== undefined && { upstream: patch.upstream }),
    ...(patch.concurrency !== undefined && { concurrency: patch.concurrency }),
    ...(patch.metadata !== undefined && { metadata: patch.metadata }),
  };
  if (patch.a2a === null) delete next.a2a;
  else if (patch.a2a !== undefined) next.a2a = patch.a2a;
  return next;
}

/** An execution inserted running as it was accepted, queued (revision 1): what async callers and the event log are told first. */
export function asAccepted(row: ExecutionRow): ExecutionRow {
  return row.status === 'running' && row.rev === 2 ? { ...row, status: 'queued', started_at: null, rev: 1 } : row;
}

export function toExecution(row: ExecutionRow, agentId: string): Execution {
  const execution: Execution = {
    id: row.id,
    agentId,
    intent: row.intent,
    input: parse(row.input) ?? null,
    status: row.status,
    attempts: row.attempts,
    createdAt: iso(row.created_at),
  };
  if (row.output !== null) execution.output = parse(row.output);
  if (row.error !== null) execution.error = parse(row.error) as ExecutionError;
  if (row.upstream !== null) execution.upstream = row.upstream;
  const startedAt = isoOrUndefined(row.started_at);
  if (startedAt) execution.startedAt = startedAt;
  const finishedAt = isoOrUndefined(row.finished_at);
  if (finishedAt) execution.finishedAt = finishedAt;
  if (row.finished_at !== null && row.started_at !== null) execution.durationMs = row.finished_at - row.started_at;
  return execution;
}
