import { countCalls, type CallTest } from '../lib/json-rpc-calls';
import { MAX_JSON_DEPTH, jsonDepth } from '../lib/json-limits';
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

/**
 * Most messages a JSON-RPC batch carries. A request counts once against its key's rate
 * windows, whatever it carries, and each call in it is a call to an agent: a batch of 100
 * `get_context` calls under a limit of 5 a minute served them all for one unit.
 */
export const MAX_BATCH_MESSAGES = 32;

/** The refusal of a batch of more than MAX_BATCH_MESSAGES messages, or null; shaped as the other batch refusals. */
export function oversizedBatchRefusal(body: unknown): Response | null {
  if (!Array.isArray(body) || body.length <= MAX_BATCH_MESSAGES) return null;
  return Response.json(
    { jsonrpc: '2.0', error: { code: -32600, message: `Invalid Request: a batch carries at most ${MAX_BATCH_MESSAGES} messages (this one ${body.length}); it counts as one request against the key's rate windows` }, id: null },
    { status: 400 },
  );
}

/**
 * The refusal of a batch in which two requests carry the same id, or null. A response names
 * its request by id alone, and MCP forbids reusing one ("MUST NOT have been previously used by
 * the requestor within the same session"): the SDK answered the first of the pair to end, closed
 * the stream as if both were answered, and the other went unanswered (an `execute_intent`
 * among them was admitted and cut off, its budget unit spent for nothing). Ids are compared as
 * sent, so 1 and "1" are two. Refused whole, shaped as the other batch refusals.
 */
export function duplicateIdRefusal(body: unknown): Response | null {
  if (!Array.isArray(body)) return null;
  const seen = new Set<string>();
  for (const message of body) {
    if (typeof message !== 'object' || message === null) continue;
    const { method, id } = message as { method?: unknown; id?: unknown };
    if (typeof method !== 'string' || (typeof id !== 'string' && typeof id !== 'number')) continue;
    const key = JSON.stringify(id);
    if (!seen.has(key)) {
      seen.add(key);
      continue;
    }
    return Response.json(
      { jsonrpc: '2.0', error: { code: -32600, message: `Invalid Request: request id ${key.slice(0, 128)} appears more than once in the batch; give each request its own id` }, id: null },
      { status: 400 },
    );
  }
  return null;
}

/**
 * The 2025 protocol versions whose Streamable HTTP transport removed JSON-RPC batching (2025-06-18:
 * "the body of the POST request MUST be a single JSON-RPC request, notification, or response").
 * 2024-11-05 and 2025-03-26 (also what a request without `MCP-Protocol-Version` is taken for)
 * keep them; 2026-07-28 is refused by the SDK itself.
 */
const UNBATCHED_VERSIONS: ReadonlySet<string> = new Set(['2025-06-18', '2025-11-25']);

/**
 * The refusal of a batch sent under a protocol version without batches, or null. The SDK serves
 * them under every 2025 version; the spec's clients send none there, so a batch is a client
 * speaking another version than it names. Refused whole (one POST, one status), shaped as the
 * SDK's refusal of a 2026-07-28 batch.
 */
export function unbatchedVersionRefusal(body: unknown, headers: Headers): Response | null {
  const version = headers.get('mcp-protocol-version');
  if (!Array.isArray(body) || version === null || !UNBATCHED_VERSIONS.has(version)) return null;
  return Response.json(
    { jsonrpc: '2.0', error: { code: -32600, message: `Invalid Request: JSON-RPC batches are not part of protocol version ${version}; send each message in its own request` }, id: null },
    { status: 400 },
  );
}

/**
 * Deepest `params` a message may carry: a tools/call's are its arguments around an input of up
 * to MAX_JSON_DEPTH levels, and nothing the protocol defines nests anywhere near this.
 */
export const MAX_PARAMS_DEPTH = 2 * MAX_JSON_DEPTH;

/**
 * The refusal of a body with a message (request or notification) whose params nest deeper than
 * MAX_PARAMS_DEPTH, or null. The SDK validates an initialize's capabilities recursively: about
 * 2,000 levels overflowed its stack, which it answered -32700 "Parse error" with the
 * RangeError's text as `data`, a well-formed body reported as unparseable and the runtime's
 * error handed to the client. Refused whole, before the SDK reads it, shaped as the other
 * refusals of a body (HTTP 400, -32602, id null): a batch has one status for one POST.
 */
export function deepParamsRefusal(body: unknown): Response | null {
  const messages: unknown[] = Array.isArray(body) ? body : [body];
  for (const message of messages) {
    if (typeof message !== 'object' || message === null) continue;
    const { method, params } = message as { method?: unknown; params?: unknown };
    if (typeof method !== 'string' || jsonDepth(params, MAX_PARAMS_DEPTH) <= MAX_PARAMS_DEPTH) continue;
    return Response.json(
      { jsonrpc: '2.0', error: { code: -32602, message: `Invalid params: ${method.slice(0, 128)}: params are nested deeper than ${MAX_PARAMS_DEPTH} levels` }, id: null },
      { status: 400 },
    );
  }
  return null;
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

/**
 * The request's headers as the MCP SDK is handed them: its 2025 transport looks for the two
 * media types in Accept as lower-case substrings, so a client listing both in capitals (media
 * types are case-insensitive) was refused 406. Only Accept is touched.
 */
export function sdkHeaders(headers: Headers): Headers {
  const accept = headers.get('accept');
  if (accept === null || accept === accept.toLowerCase()) return headers;
  const copy = new Headers(headers);
  copy.set('accept', accept.toLowerCase());
  return copy;
}
