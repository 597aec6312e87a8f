import type { Env } from '../worker/env';
import { logs } from '../worker/middleware/request-log';
import type { ExecutionRow } from './agent-rows';
import type { AgentStore } from './agent-store';

/**
 * One JSON line for an execution a run finished while no request waited for it (async, started
 * by a hook or an A2A send, failed in its queue): a sync execution's outcome is in its request's
 * line, but these ended after their request was answered, so no line named their upstream, time
 * or error, and an operator could not find why background work failed. Succeeded at info, every
 * other end at warn; `LOG_LEVEL` drops lines below it, as for requests.
 */
export function logFinished(env: Pick<Env, 'LOG_LEVEL'>, store: AgentStore, row: ExecutionRow): void {
  const level = row.status === 'succeeded' ? 'info' : 'warn';
  if (!logs(env.LOG_LEVEL, level)) return;
  const agent = store.agentRow();
  if (!agent) return;
  const line = {
    level,
    msg: 'execution finished',
    tenant: agent.tenant_id,
    agent: store.config(agent).id,
    execution: row.id,
    intent: row.intent,
    status: row.status,
    attempts: row.attempts,
    ...(row.upstream !== null && { upstream: row.upstream }),
    ...(row.started_at !== null && row.finished_at !== null && { durationMs: row.finished_at - row.started_at }),
    ...(row.error !== null && { error: errorCode(row.error) }),
  };
  console.log(JSON.stringify(line));
}

/** The stored error's code (the message may quote an upstream's answer: not for logs). */
function errorCode(stored: string): string | undefined {
  try {
    const { code } = JSON.parse(stored) as { code?: unknown };
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}
