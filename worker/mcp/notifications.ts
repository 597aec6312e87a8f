import { isLegacyRequest } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { paramsProblem, type MethodSchemas } from '../lib/json-rpc-params';
import type { McpEra } from './params';

/** A request id or a progress token: a string or an integer. */
const Token = z.union([z.string(), z.number().int()]);

const Progress = z.looseObject({ progressToken: Token, progress: z.number(), total: z.number().optional(), message: z.string().optional() });

/**
 * Notifications a client sends this server, and their params, per era: the SDK's own schemas
 * (2.4.0), unknown keys let through as it lets them. The SDK answers every notification 202
 * and drops one whose params do not fit; the Streamable HTTP transport says a server that
 * cannot accept a notification MUST answer an HTTP error status (e.g. 400), whose body MAY be
 * a JSON-RPC error without an id (spec 2025-03-26 and later, "Sending Messages to the Server").
 * Params that are not an object, and a `_meta` that does not fit, the SDK already answers 400
 * -32600 itself; a method not listed here is one the server may ignore, and stays 202.
 */
const NOTIFICATIONS: MethodSchemas<McpEra> = {
  legacy: {
    // 2025-11-25 keeps requestId optional (a task is cancelled with tasks/cancel there).
    'notifications/cancelled': z.looseObject({ requestId: Token.optional(), reason: z.string().optional() }),
    'notifications/progress': Progress,
    // notifications/initialized and roots/list_changed take only `_meta`, which the SDK checks.
  },
  modern: {
    'notifications/cancelled': z.looseObject({ requestId: Token, reason: z.string().optional() }),
    'notifications/progress': Progress,
  },
};

interface Notification {
  method: string;
  params?: unknown;
}

/** The notifications of a body (one message or a batch) that this server knows by method. */
function knownNotifications(body: unknown): Notification[] {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  return messages.filter((m): m is Notification => {
    if (typeof m !== 'object' || m === null || 'id' in m) return false;
    const { jsonrpc, method, params } = m as { jsonrpc?: unknown; method?: unknown; params?: unknown };
    // Params that are not an object make a malformed message, which the SDK answers (400, -32600).
    if (params !== undefined && (typeof params !== 'object' || params === null || Array.isArray(params))) return false;
    return jsonrpc === '2.0' && typeof method === 'string' && (Object.hasOwn(NOTIFICATIONS.legacy, method) || Object.hasOwn(NOTIFICATIONS.modern, method));
  });
}

/**
 * The refusal of a body carrying a known notification whose params do not fit it, or null:
 * HTTP 400 with a JSON-RPC error -32602 that has no id (a notification has none to answer).
 * The input is refused whole, a batch too, as the transport has one status for one POST:
 * nothing of it is served, as for a batch with more than one execute_intent.
 */
export async function notificationRefusal(request: Request, body: unknown, maxRequestBodySize: number): Promise<Response | null> {
  const notifications = knownNotifications(body);
  if (notifications.length === 0) return null;
  // Only a body with such a notification pays for knowing its era (the SDK's own routing rule).
  const era: McpEra = (await isLegacyRequest(request, body, { maxRequestBodySize })) ? 'legacy' : 'modern';
  for (const { method, params } of notifications) {
    const problem = paramsProblem(NOTIFICATIONS, era, method, params, 'params: not valid for this notification');
    if (problem !== null) {
      return Response.json({ jsonrpc: '2.0', error: { code: -32602, message: `Invalid params: ${method}: ${problem}` } }, { status: 400 });
    }
  }
  return null;
}
