import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { keyLimits } from '../limits/middleware';
import type { ResolvedHook } from './store';

const limits = keyLimits(() => 'execution');

/**
 * Answers a verified delivery within the limits of the key that registered its hook. Senders
 * have no key, but the hook is that key's: without this a key over its budget could start
 * executions without end by signing deliveries to a hook of its own, or by pointing an agent's
 * outgoing webhook at one (one budgeted execution then starts the next). A delivery counts
 * as an execution (rate windows, concurrency cap, request and token budgets); one that starts
 * nothing (a repeated delivery id, a refusal) is given back, and while the budget is used up
 * only a repeated delivery id is still answered (`replayOnly`), as a repeated Idempotency-Key
 * is. A hook without a key (logged), or whose key has no limits, costs nothing here.
 */
export async function withinHookKeyLimits<R extends Response>(c: Context<AppEnv>, hook: ResolvedHook, answer: () => Promise<R>): Promise<R> {
  if (hook.keyId === null) {
    // Registered before hooks recorded their key, and not named by the audit log (migration 0011).
    console.warn(JSON.stringify({ level: 'warn', msg: 'incoming hook without a key: its deliveries count against no limits until it is PUT again', hook: c.req.param('id'), tenant: hook.tenantId, requestId: c.get('requestId') }));
    return answer();
  }
  if (hook.limits === null) return answer();
  c.set('principal', { tenantId: hook.tenantId, keyId: hook.keyId, limits: hook.limits });
  await limits(c, async () => {
    c.res = await answer();
  });
  // The answer itself, re-wrapped by the middleware only to carry the RateLimit-* headers.
  return c.res as R;
}
