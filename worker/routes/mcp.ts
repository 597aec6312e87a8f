import { OpenAPIHono, z } from '@hono/zod-openapi';
import { createMcpHandler } from '@modelcontextprotocol/server';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { mediaType } from '../lib/media-type';
import { apiKeyAuth } from '../middleware/api-key-auth';
import { d1Session } from '../middleware/d1-session';
import { mcpGuard } from '../middleware/mcp-guard';
import { unreadableRequestBody } from '../middleware/utf8-body';
import { jsonRpcStartsWork, keyLimits } from '../limits/middleware';
import { noteWork, startedWork, type WorkOutcome } from '../limits/work';
import { batchRefusal, deepParamsRefusal, duplicateIdRefusal, executeIntentCalls, oversizedBatchRefusal, parseBody, sdkHeaders, startsExecution, unbatchedVersionRefusal, withUnsafeIdNulled } from '../mcp/http';
import { notificationRefusal } from '../mcp/notifications';
import { checkingParams } from '../mcp/params';
import { heldUntil } from '../mcp/held';
import { cancelledIds, cancelWaitingCalls, exceptCancel, isInitialize, sessionScope, waitingCalls, withSession } from '../mcp/cancel';
import { mcpRevokedEnding } from '../mcp/revoked';
import { answerWhileKeyValid, keyBoundStream } from '../auth/key-watch';
import { createGatewayMcpServer } from '../mcp/server';
import { ErrorBody } from '../schemas/common';
import { everyRouteErrors, limitedResponse, security, streamHeaders, unauthorizedResponse, unavailableResponse } from './openapi';

/** Same bound as the API's body limit (app.ts), applied again by the MCP handler's own reader. */
const MCP_MAX_BODY_BYTES = 1024 * 1024;

const error = (description: string) => ({ content: { 'application/json': { schema: ErrorBody } }, description });

/**
 * What the MCP SDK answers a request it refuses itself: a JSON-RPC error, not the envelope. Its
 * `id` is null; only a refused notification's may be absent (`withoutId`), having none to answer.
 */
const jsonRpcError = (description: string, withoutId = false) => ({
  description,
  content: {
    'application/json': {
      schema: {
        type: 'object' as const,
        required: withoutId ? ['jsonrpc', 'error'] : ['jsonrpc', 'error', 'id'],
        properties: {
          jsonrpc: { type: 'string' as const, enum: ['2.0'] },
          id: { description: withoutId ? 'null: the request could not be read; absent: a notification was refused' : 'null: the request could not be read' },
          error: { type: 'object' as const, required: ['code', 'message'], properties: { code: { type: 'integer' as const }, message: { type: 'string' as const } } },
        },
      },
    },
  },
});

const router = new OpenAPIHono<AppEnv>();

router.openAPIRegistry.registerPath({
  method: 'post',
  path: '/mcp',
  tags: ['mcp'],
  summary: 'Model Context Protocol endpoint (Streamable HTTP, stateless)',
  description:
    "JSON-RPC 2.0 per the MCP specification (2025-era clients: initialize, tools/list, tools/call; 2026-07-28 per-request envelopes), for the key's tenant. Tools: list_agents, execute_intent, get_execution, cancel_execution, get_context. Tool failures are results with isError and the API's error envelope; protocol failures are JSON-RPC errors. A notifications/cancelled (same key, same Mcp-Session-Id) cancels the waiting execute_intent it names. Send `Accept: application/json, text/event-stream`. A browser Origin must be the endpoint's own or listed in MCP_ALLOWED_ORIGINS; MCP_ALLOWED_HOSTS restricts Host. For a listed origin, OPTIONS /mcp answers a CORS preflight (204) and every answer carries Access-Control-Allow-Origin and Access-Control-Expose-Headers; a preflight from another origin is 403 forbidden.",
  security,
  request: {
    // Read by the MCP SDK's transport, not validated by a schema here: documented for clients.
    headers: z.object({
      'mcp-protocol-version': z.string().optional().openapi({ description: 'the MCP version the client speaks (2025-06-18, 2025-11-25, 2026-07-28…); without it, 2025-03-26, as the specification says; an unsupported one is -32000 (400)' }),
      'mcp-session-id': z.string().optional().openapi({ description: "the Mcp-Session-Id an initialize answer gave (2025 versions): it scopes notifications/cancelled only" }),
      'mcp-method': z.string().optional().openapi({ description: "2026-07-28: the body's method, required with that version (-32020, 400, when missing or different)" }),
      'mcp-name': z.string().optional().openapi({ description: "2026-07-28: the name the body's params carry (the tool of a tools/call); -32020 (400) when missing or different" }),
    }),
    body: { required: true, content: { 'application/json': { schema: { type: 'object', description: 'a JSON-RPC request or notification' } } } },
  },
  responses: {
    200: {
      description: 'a JSON-RPC response, as application/json or a text/event-stream',
      content: { 'application/json': { schema: { type: 'object' } }, 'text/event-stream': { schema: { type: 'string' } } },
      headers: {
        ...streamHeaders,
        'mcp-session-id': { schema: { type: 'string' as const }, description: "on the answer to a 2025-version initialize (one in a batch too): the client's session, which it sends back with every request; it only scopes notifications/cancelled (no state is kept)" },
      },
    },
    202: { description: 'a notification (or only notifications and responses), accepted; one of a method the server does not know is accepted and ignored' },
    400: jsonRpcError('as JSON-RPC: -32700 when the body is not JSON, -32000 for an unsupported MCP-Protocol-Version header, -32600 for a message that is not JSON-RPC (all from the MCP SDK), -32600 for a batch under MCP-Protocol-Version 2025-06-18 or 2025-11-25 (which removed batching), carrying more than 32 messages, more than one execute_intent or two requests with the same id, -32602 without an id for a notification the server knows (notifications/cancelled, notifications/progress) whose params do not fit it, and for a message whose params nest deeper than 64 levels, -32020 (2026-07-28, from the MCP SDK) when the Mcp-Method or Mcp-Name header is missing or disagrees with the body; nothing of the body is served', true),
    401: unauthorizedResponse(),
    403: error('forbidden: Origin or Host not allowed'),
    // The 2026-07-28 transport answers a method the server does not serve with HTTP 404 (the SDK's status table); the 2025 versions keep it in a 200.
    404: jsonRpcError('from the MCP SDK, 2026-07-28 only: -32601 Method not found, for a method the server does not serve (resources/*, prompts/*, logging/setLevel, completion/complete, and ping, which that version removed); the 2025 versions answer it in a 200'),
    405: { ...everyRouteErrors[405], description: 'method_not_allowed: GET and DELETE (no session state; the Mcp-Session-Id of an initialize answer only scopes notifications/cancelled); Allow: POST' },
    406: jsonRpcError('from the MCP SDK, as JSON-RPC (-32000), in the 2025 versions: Accept does not list both application/json and text/event-stream (2026-07-28 answers JSON whatever Accept lists)'),
    413: error('payload_too_large: body over 1 MiB'),
    415: error('unsupported_media_type: Content-Type is not application/json, or names a charset other than UTF-8, or the body has a Content-Encoding'),
    429: limitedResponse("rate_limited (or budget_exhausted, when the budget is used up too): the key's rate windows or concurrency cap refused the whole request (never a body of one notifications/cancelled, alone or a batch of one, which they neither count nor refuse; a batch of several is counted as every other batch is). A budget refusing execute_intent alone is that tool's error budget_exhausted (details.retryAfter) in a 200"),
    431: everyRouteErrors[431],
    500: error('internal_error: a fault of the gateway outside the JSON-RPC exchange (the key lookup, say), in the error envelope'),
    503: unavailableResponse('unavailable: the limiter of a key with a budget, or D1, refused for now (Retry-After)'),
  },
});

const corsHeader = (description: string) => ({ schema: { type: 'string' as const }, description });

// Answered by middleware (worker/middleware/mcp-cors.ts) before the routes, so only documented here.
router.openAPIRegistry.registerPath({
  method: 'options',
  path: '/mcp',
  tags: ['mcp'],
  summary: 'CORS preflight of the MCP endpoint',
  description:
    'A browser sends it before a cross-origin POST /mcp (Origin and Access-Control-Request-Method set); no key needed. For an Origin listed in MCP_ALLOWED_ORIGINS (and a Host MCP_ALLOWED_HOSTS allows), 204 allowing POST with the headers an MCP client sends: Authorization, Content-Type, MCP-Protocol-Version, Mcp-Session-Id, Mcp-Method, Mcp-Name, Last-Event-ID, X-D1-Bookmark, X-Request-Id, and every Mcp-Param-{Name} (2026-07-28) the preflight asks for. Another origin is refused 403 forbidden; an OPTIONS that is no preflight, or from the endpoint\'s own origin, is 405.',
  responses: {
    204: {
      description: 'the preflight, allowed',
      headers: {
        'Access-Control-Allow-Origin': corsHeader('the Origin, echoed'),
        'Access-Control-Allow-Methods': corsHeader('POST'),
        'Access-Control-Allow-Headers': corsHeader('the request headers allowed (comma-separated, lower case)'),
        'Access-Control-Expose-Headers': corsHeader('the response headers a page may read'),
        'Access-Control-Max-Age': { schema: { type: 'integer' as const }, description: 'seconds a browser may cache the answer' },
      },
    },
    403: error('forbidden: Origin or Host not allowed'),
    405: { ...everyRouteErrors[405], description: 'method_not_allowed: an OPTIONS that is no CORS preflight, or needs none (same origin); Allow: POST' },
    431: everyRouteErrors[431],
  },
});

/**
 * MCP (Streamable HTTP, stateless) for the key's tenant. The SDK parses and answers JSON-RPC
 * (the tools refuse bad arguments themselves, with the API's envelope); this route adds what
 * it leaves to the server: Origin/Host checks, the tenant's Bearer key, one execution per
 * request, a fresh server per request bound to that tenant, and the protocol methods' params
 * checked before the SDK reads them (-32602, worker/mcp/params.ts), and cancels of waiting
 * calls (worker/mcp/cancel.ts). Only POST is served: with no session state (an `Mcp-Session-Id`
 * only scopes cancels), GET (a server-to-client stream) and DELETE (ending a session) have
 * nothing to act on and get 405 from the app.
 */
export const mcp = router.post('/mcp', mcpGuard(), d1Session(), apiKeyAuth(), exceptCancel(keyLimits(jsonRpcStartsWork(startsExecution), { refusesInProtocol: true })), async function mcpEndpoint(c) {
  // Refused here as every JSON route of the API refuses it (the envelope), not by the SDK.
  if (mediaType(c.req.header('content-type')) !== 'application/json') {
    throw new ApiError('unsupported_media_type', 'MCP requests are JSON-RPC: send Content-Type: application/json');
  }
  const unreadable = unreadableRequestBody(c);
  if (unreadable) throw new ApiError('unsupported_media_type', unreadable);
  // Hono caches the text: a limited key's request was already read to classify it.
  const text = await c.req.text();
  const body = parseBody(text);
  const unbatched = unbatchedVersionRefusal(body, c.req.raw.headers);
  if (unbatched) return unbatched;
  const oversized = oversizedBatchRefusal(body);
  if (oversized) return oversized;
  const duplicate = duplicateIdRefusal(body);
  if (duplicate) return duplicate;
  const executions = executeIntentCalls(body);
  if (executions > 1) return batchRefusal();
  const tooDeep = deepParamsRefusal(body);
  if (tooDeep) return tooDeep;
  const notification = await notificationRefusal(c.req.raw, body, MCP_MAX_BODY_BYTES);
  if (notification) return notification;
  // Settled once the request's execute_intent has said what it did (refused, replayed, started).
  let decide = (): void => undefined;
  const decided = new Promise<void>((resolve) => (decide = resolve));
  const work = (outcome: WorkOutcome) => {
    noteWork(c, outcome);
    decide();
  };
  const principal = c.get('principal');
  const scope = sessionScope(c.req.raw.headers);
  const calls = waitingCalls(c.env, principal, scope, (promise) => c.executionCtx.waitUntil(promise));
  const caller = { env: c.env, principal, requestId: c.get('requestId'), log: c.get('log'), work, charge: c.get('tokenCharge'), budgetRefusal: c.get('replayOnly'), calls };
  // A call refused for its params ran nothing: an execute_intent among them gives its budget back.
  const refused = (method: string, params: unknown, id: string | number) => {
    if (startsExecution(method, params, id)) caller.work('refused');
  };
  // A 2025-era client's disconnect is no cancel (it sends notifications/cancelled); a 2026-07-28 client's is.
  const handler = createMcpHandler(({ era }) => checkingParams(createGatewayMcpServer(era === 'modern' ? { ...caller, disconnected: c.req.raw.signal } : caller), era, refused), {
    maxRequestBodySize: MCP_MAX_BODY_BYTES,
    onerror: (e) => console.warn(JSON.stringify({ level: 'warn', msg: 'mcp request refused or failed', requestId: caller.requestId, error: e.message })),
  });
  // A JSON answer comes whole once every call ended: a key revoked before then is answered 401
  // (an execute_intent among them runs on, and counts).
  const answering = handler.fetch(new Request(c.req.url, { method: 'POST', headers: sdkHeaders(c.req.raw.headers), body: text, signal: c.req.raw.signal }));
  let answer = await answerWhileKeyValid(c.env.DB, caller.principal.keyId, answering).catch((error: unknown) => {
    if (executions > 0 && startedWork(error)) caller.work('started');
    throw error;
  });
  answer = await withUnsafeIdNulled(answer, body);
  // Cancels only once the SDK has accepted the body; answered 202 only after, so the named call has stopped by then.
  const cancels = answer.ok ? cancelledIds(body) : [];
  if (cancels.length > 0) await cancelWaitingCalls(c.env, principal, scope, cancels, caller.requestId);
  if (answer.ok && isInitialize(body)) answer = withSession(answer);
  if (answer.body === null || mediaType(answer.headers.get('content-type') ?? undefined) !== 'text/event-stream') return answer;
  // Streamed as it comes: a tool's outcome (a refusal too) is an event of the stream. For a key
  // with a budget, whose headers differ once a refused call is given back, the headers wait
  // until the execute_intent is decided — refused, or handed to its agent, which tells at once
  // (long before a sync run ends) — so they say whether it counted. An answer streamed as SSE is
  // cut off once its key is revoked.
  const hold = executions > 0 && caller.principal.limits?.budget !== undefined && caller.budgetRefusal === undefined;
  const streamed = hold ? await heldUntil(answer.body, decided) : answer.body;
  return new Response(keyBoundStream(streamed, { db: c.env.DB, keyId: caller.principal.keyId, ...mcpRevokedEnding(body) }), answer);
});
