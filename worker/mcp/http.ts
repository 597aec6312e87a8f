import { countCalls, type CallTest } from '../lib/json-rpc-calls';
import { mediaType } from '../lib/media-type';

/**
 * A JSON-RPC call of the MCP endpoint that starts an execution (budgets and concurrency apply):
 * a `tools/call` of `execute_intent` with an id. Without one it is a notification, which the
 * SDK accepts (202) and answers by running nothing, so it must not take a budget unit.
 */
export const startsExecution: CallTest = (method, params, id) =>
  method === 'tools/call' &&
  (typeof id === 'string' || typeof id === 'number') &&
  typeof params === 'object' && params !== null && (params as { name?: unknown }).name === 'execute_intent';

/** How many `execute_intent` calls a request body (one message or a batch) carries. */
export const executeIntentCalls = (body: unknown): number => countCalls(body, startsExecution);

/** The body as JSON, or undefined when it is not (the MCP SDK answers that parse error). */
export function parseBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * The refusal of a batch carrying more than one `execute_intent`: the key's limits admit one
 * HTTP request as one execution (one budget unit, one concurrency slot), so a batch of them
 * would run several executions for the price of one. Worded and shaped like the SDK's own
 * batch refusals (-32600, id null), as the batch as a whole is refused.
 */
export function batchRefusal(): Response {
  return Response.json(
    { jsonrpc: '2.0', error: { code: -32600, message: 'Invalid Request: a batch may carry at most one execute_intent call; send each in its own request' }, id: null },
    { status: 400 },
  );
}

/** Whether a single message's `id` is a number JSON-RPC cannot echo: not an integer, or past 2^53 − 1. */
function hasUnsafeNumericId(body: unknown): boolean {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return false;
  const id: unknown = (body as { id?: unknown }).id;
  return typeof id === 'number' && !Number.isSafeInteger(id);
}

/**
 * The SDK's 400 refusal of a message whose id is a number but no safe integer, with id null.
 * It refuses such ids (MCP ids are strings or integers) but echoes them, and JSON-RPC answers
 * an id it could not take with null: 1.5 is no id of the protocol, and 12345678901234567890 has
 * lost digits once parsed, so its echo names a request the client never sent. The A2A endpoint
 * answers these so too.
 */
export async function withUnsafeIdNulled(answer: Response, body: unknown): Promise<Response> {
  if (answer.status !== 400 || !hasUnsafeNumericId(body) || mediaType(answer.headers.get('content-type') ?? undefined) !== 'application/json') return answer;
  const reply: unknown = JSON.parse(await answer.text());
  if (typeof reply === 'object' && reply !== null && 'id' in reply) (reply as { id: unknown }).id = null;
  const headers = new Headers(answer.headers);
  headers.delete('content-length');
  return new Response(JSON.stringify(reply), { status: answer.status, headers });
}
