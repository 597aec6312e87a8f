import type { Context, MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';

const RANK: Record<string, number> = { debug: 0, info: 1, warn: 2, error: 3 };
/** A request answered later than this is logged at warn, with `slow: true`: the gateway's target is under 1 s. */
const SLOW_REQUEST_MS = 1_000;

/** The Hono path below which every route is about one agent: `id` names it, `eid` one of its executions. */
const AGENT_ROUTES = '/v1/agents/:id';

/**
 * Names the agent, and the execution, that a route below /v1/agents/:id is about in its
 * request's log line, from its validated path parameters (bounded ids, never the raw path). The
 * issue's logs carry the agent and execution, and only an execution's POST named them: a context
 * PATCH, a cancel or a DELETE could not be found by agent. A handler's own fields, added later,
 * win (the POST names the execution it started).
 */
export function logAgentParams(c: Context<AppEnv>, params: Record<string, unknown>): void {
  const path = c.req.routePath;
  if (path !== AGENT_ROUTES && !path.startsWith(`${AGENT_ROUTES}/`)) return;
  const log = c.get('log');
  if (typeof params.id === 'string') log.agent = params.id;
  if (typeof params.eid === 'string') log.execution = params.eid;
}

/** Whether a line at `level` passes the operator's `LOG_LEVEL` (default info). */
export const logs = (configured: string | undefined, level: string): boolean => (RANK[level] ?? 1) >= (RANK[configured ?? 'info'] ?? 1);

/**
 * One structured JSON log line per request (Workers Logs indexes the fields): request id,
 * method, path, status, latency, tenant, and whatever handlers add with `c.get('log')`
 * (agent, execution, upstream). Health checks are not logged; `LOG_LEVEL` (debug, info, warn,
 * error; default info) drops lines below it. A slow answer is a warning whatever its status, so
 * an operator who logs only warnings still sees the requests that missed the latency target.
 *
 * @example app.use(requestLog())
 */
export function requestLog(): MiddlewareHandler<AppEnv> {
  return async function requestLog(c, next) {
    const started = Date.now();
    c.set('log', {});
    await next();
    if (c.req.path === '/healthz') return;
    const latencyMs = Date.now() - started;
    const slow = latencyMs >= SLOW_REQUEST_MS;
    const level = c.res.status >= 500 ? 'error' : c.res.status >= 400 || slow ? 'warn' : 'info';
    if (!logs(c.env.LOG_LEVEL, level)) return;
    const line = {
      level,
      msg: 'request',
      requestId: c.get('requestId'),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      latencyMs,
      ...(slow && { slow: true }),
      tenant: c.get('principal')?.tenantId,
      ...c.get('log'),
    };
    console.log(JSON.stringify(line));
  };
}
