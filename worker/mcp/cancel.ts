import type { MiddlewareHandler } from 'hono';
import type { AppEnv, Env, Principal } from '../env';
import { limiter, limiterName } from '../limits/limiter';
import { onTenantAgent } from '../agents/operations';

/**
 * Cancelling a waiting `execute_intent` from MCP. A `notifications/cancelled` names only a
 * JSON-RPC request id, and the endpoint serves each POST with a fresh server (several isolates
 * serve /mcp), so the call is found in the key's limiter object (durable/key-limiter-calls.ts),
 * where every waiting call of the key is registered under its client's session and its id.
 */

type RequestId = string | number;

/**
 * The session a 2025-era client was given at `initialize` (`Mcp-Session-Id`, which it sends
 * with every later request: visible ASCII, spec 2025-03-26), or '' without one. It holds no
 * state: it only tells the calls of one client from another's, as both number theirs from 0.
 */
export function sessionScope(headers: Headers): string {
  const session = headers.get('mcp-session-id') ?? '';
  return /^[\x21-\x7e]{1,128}$/.test(session) ? session : '';
}

/**
 * Whether a body is, or (2025-03-26) a batch carrying, a 2025-era `initialize` request, whose
 * answer gives the client its session: the SDK serves one in a batch too.
 */
export function isInitialize(body: unknown): boolean {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  return messages.some((m) => typeof m === 'object' && m !== null && !Array.isArray(m) && (m as { method?: unknown }).method === 'initialize' && 'id' in m);
}

/** The answer of an `initialize`, with a new session for the client to send back (see `sessionScope`). */
export function withSession(answer: Response): Response {
  const headers = new Headers(answer.headers);
  headers.set('mcp-session-id', crypto.randomUUID());
  return new Response(answer.body, { status: answer.status, statusText: answer.statusText, headers });
}

/**
 * Whether a body is one `notifications/cancelled` (alone, or a batch of one). Such a body stops
 * work and starts none, so the key's rate windows neither count nor refuse it (`exceptCancel`):
 * refused 429, it left running the execution its client asked to stop. One only: it costs one
 * look-up on the key's limiter object, as an admission does, so a flood of them costs what
 * refusing it would; a batch of many would cost a look-up each, unbounded by the windows.
 */
export function loneCancel(body: unknown): boolean {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  const [only] = messages;
  return messages.length === 1 && typeof only === 'object' && only !== null && !Array.isArray(only) && !('id' in only) && (only as { method?: unknown }).method === 'notifications/cancelled';
}

/** `limits`, skipped for a body of one cancel (`loneCancel`); Hono caches the text the route reads again. */
export function exceptCancel(limits: MiddlewareHandler<AppEnv>): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const text = await c.req.text();
    // Most bodies carry no cancel: not parsed here a second time (the SDK parses each body).
    if (!text.includes('notifications/cancelled')) return limits(c, next);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return limits(c, next); // the route answers its parse error
    }
    return loneCancel(body) ? next() : limits(c, next);
  };
}

/** The request ids a body's `notifications/cancelled` messages name (params already checked). */
export function cancelledIds(body: unknown): RequestId[] {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  return messages.flatMap((m) => {
    if (typeof m !== 'object' || m === null || 'id' in m || (m as { method?: unknown }).method !== 'notifications/cancelled') return [];
    const id = (m as { params?: { requestId?: unknown } }).params?.requestId;
    return typeof id === 'string' || typeof id === 'number' ? [id] : [];
  });
}

/** The waiting calls of one key and client, as the MCP server's tool sees them. */
export interface WaitingCalls {
  /** Registers a call; true when its cancel came first, so it must not run. */
  started(requestId: RequestId, agentId: string, executionId: string): Promise<boolean>;
  /** Forgets a call that ended (after the answer, not awaited). */
  ended(executionId: string): void;
  /** Cancels a call's execution whose client went away (2026-07-28), outliving the request. */
  cancel(agentId: string, executionId: string): void;
}

const warn = (msg: string, fields: Record<string, unknown>) => console.warn(JSON.stringify({ level: 'warn', msg, ...fields }));

/** The waiting calls of `principal`'s key under `scope`, registered in its limiter object. */
export function waitingCalls(env: Env, principal: Principal, scope: string, waitUntil: (promise: Promise<unknown>) => void): WaitingCalls {
  const stub = () => limiter(env, limiterName(principal.keyId));
  return {
    async started(requestId, agentId, executionId) {
      try {
        return await stub().mcpCallStarted({ scope, requestId: JSON.stringify(requestId), agentId, executionId });
      } catch (error) {
        // Cancelling is a courtesy of the protocol: a limiter that cannot answer does not hold the call up.
        warn('mcp call not registered for cancellation', { keyId: principal.keyId, executionId, error: String(error) });
        return false;
      }
    },
    ended(executionId) {
      waitUntil(stub().mcpCallEnded(executionId).catch(() => undefined));
    },
    cancel(agentId, executionId) {
      // The platform ends a request's own work once its client is gone: this outlives it.
      waitUntil(onTenantAgent(env, principal.tenantId, agentId, (agent) => agent.cancel(executionId)).catch(() => undefined));
    },
  };
}

/**
 * Cancels the waiting call each id names for this key and session, through the agent's own
 * cancel (the execution ends `cancelled`, its budget settled as every cancel settles it). An id
 * that names no call, or two (clients of the key without sessions, both numbering from 0), is
 * ignored, as the protocol lets a receiver ignore a cancel it cannot act on.
 */
export async function cancelWaitingCalls(env: Env, principal: Principal, scope: string, ids: RequestId[], requestId: string): Promise<void> {
  await Promise.all(ids.map(async (id) => {
    try {
      const match = await limiter(env, limiterName(principal.keyId)).mcpCancel(scope, JSON.stringify(id));
      if (match.found === null) {
        if (match.why === 'ambiguous') warn('mcp cancel ignored: two calls of the key wait under that id', { requestId, keyId: principal.keyId, cancelled: id });
        return;
      }
      const { agentId, executionId } = match.found;
      await onTenantAgent(env, principal.tenantId, agentId, (stub) => stub.cancel(executionId)).catch(() => undefined); // ended meanwhile, or its agent is gone
    } catch (error) {
      warn('mcp cancel failed', { requestId, keyId: principal.keyId, cancelled: id, error: String(error) });
    }
  }));
}
