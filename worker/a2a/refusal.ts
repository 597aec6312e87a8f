import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { AGENT_DELETED } from '../../durable/a2a-internal';
import { noteWork } from '../limits/work';

/**
 * JSON-RPC error codes that refuse a call as it was sent, before any work starts: those A2A's
 * HTTP+JSON binding answers with a 4xx (parse, invalid request, unknown method, invalid
 * params, task not found, not cancelable, unsupported push / operation / content type,
 * extended card, extension required, version). Left out: -32603 internal error and -32006
 * invalid agent response, the 5xx ones, which can follow work that started.
 */
const REFUSALS: ReadonlySet<number> = new Set([-32700, -32600, -32601, -32602, -32001, -32002, -32003, -32004, -32005, -32007, -32008, -32009]);

/**
 * Whether a JSON-RPC response refuses its call (see REFUSALS). A task not found because its
 * agent was deleted while the task ran is no refusal: that work had started.
 */
export function isRefusal(response: unknown): boolean {
  const error: unknown = typeof response === 'object' && response !== null ? (response as { error?: unknown }).error : undefined;
  const { code, message } = typeof error === 'object' && error !== null ? (error as { code?: unknown; message?: unknown }) : {};
  if (code === -32001 && typeof message === 'string' && message.endsWith(AGENT_DELETED)) return false;
  return typeof code === 'number' && REFUSALS.has(code);
}

/**
 * Answers one JSON-RPC response (HTTP 200). A refusal gives the key's budget back, as a REST
 * 4xx does (worker/limits/work.ts).
 *
 * @example return rpcAnswer(c, { jsonrpc: '2.0', id, error: { code: -32602, message } });
 */
export function rpcAnswer(c: Context<AppEnv>, response: Record<string, unknown>): Response {
  if (isRefusal(response)) noteWork(c, 'refused');
  return c.json(response, 200);
}
