import type { Context, MiddlewareHandler } from 'hono';
import type { PolicyState } from '../../durable/key-limiter-policy';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import type { KeyLimits } from '../schemas/limits';
import { admit, limiter } from './limiter';
import { estimateChatTokens, onBodyEnd, totalTokens } from './usage';

/**
 * Requests that call an upstream: concurrency caps and budgets apply to these. Every other
 * tenant request counts only against the rate windows.
 */
export function callsUpstream(method: string, path: string): 'chat' | 'execution' | null {
  if (method !== 'POST') return null;
  if (path === '/v1/chat/completions') return 'chat';
  if (/^\/v1\/agents\/[^/]+\/executions$/.test(path)) return 'execution';
  return null;
}

export function rateLimitHeaders(policy: PolicyState): Record<string, string> {
  return { 'ratelimit-limit': String(policy.limit), 'ratelimit-remaining': String(Math.max(0, policy.remaining)), 'ratelimit-reset': String(policy.reset) };
}

async function tokensToReserve(c: Context<AppEnv>, kind: 'chat' | 'execution' | null, limits: KeyLimits): Promise<number> {
  // Executions do not report token usage, so they reserve (and are charged) none; they are
  // still refused once the token budget is used up.
  if (kind !== 'chat' || limits.budget?.tokens === undefined) return 0;
  // Hono caches the text, so the route's validator reads the same body again.
  const text = await c.req.text();
  try {
    return estimateChatTokens(JSON.parse(text));
  } catch {
    return estimateChatTokens(null);
  }
}

/**
 * Enforces the caller's key limits (see docs/ARCHITECTURE.md, "Rate limits and budgets").
 * A key without limits costs nothing here: no round trip, no header. If the limiter cannot be
 * reached, rate windows and concurrency fail open and budgets fail closed (503).
 *
 * @example app.use('/v1/*', keyLimits())
 */
export function keyLimits(): MiddlewareHandler<AppEnv> {
  return async function keyLimits(c, next) {
    const principal = c.get('principal');
    const limits = principal?.limits;
    if (!limits) return next();
    const kind = callsUpstream(c.req.method, c.req.path);
    const tokens = await tokensToReserve(c, kind, limits);

    let admitted: Awaited<ReturnType<typeof admit>>;
    try {
      admitted = await admit(c.env, principal.keyId, limits, kind !== null, tokens);
    } catch (error) {
      const closed = kind !== null && limits.budget !== undefined;
      console.error(JSON.stringify({ level: 'error', msg: 'key limiter unreachable', requestId: c.get('requestId'), key: principal.keyId, failClosed: closed, error: String(error) }));
      if (closed) throw new ApiError('unavailable', "the key's budget cannot be checked right now; retry later", undefined, { 'retry-after': '1' });
      return next();
    }
    if (!admitted.ok) {
      Object.assign(c.get('log'), { limited: admitted.limit });
      throw new ApiError(admitted.code, admitted.message, { limit: admitted.limit, retryAfter: admitted.retryAfter }, { ...rateLimitHeaders(admitted.policy), 'retry-after': String(admitted.retryAfter) });
    }

    const lease = admitted.lease;
    const release = (used: number | null) =>
      limiter(c.env, lease?.name ?? '')
        .release(lease?.id ?? '', used)
        .catch((error: unknown) => console.error(JSON.stringify({ level: 'error', msg: 'lease release failed; it expires', key: principal.keyId, error: String(error) })));
    try {
      await next();
    } catch (error) {
      if (lease) await release(0);
      throw error;
    }
    if (c.res.status === 101) return; // a WebSocket upgrade cannot be rewrapped
    let response = new Response(c.res.body, c.res);
    if (lease) {
      const status = response.status;
      const json = (response.headers.get('content-type') ?? '').includes('json');
      // Failed requests used no upstream tokens we can know of; successes settle with the
      // response's usage, or with the reservation when it has none (a stream, an agent chat).
      response = onBodyEnd(response, status < 300 && json && kind === 'chat', (text) => release(status >= 400 ? 0 : text === null ? null : totalTokens(text)), (p) => c.executionCtx.waitUntil(p));
    }
    if (admitted.policy) for (const [name, value] of Object.entries(rateLimitHeaders(admitted.policy))) response.headers.set(name, value);
    c.res = undefined;
    c.res = response;
  };
}
