import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import { formatSSEErrorEvent } from '@a2a-js/sdk';
import { ContentTypeNotSupportedError, RequestMalformedError, VersionNotSupportedError } from '@a2a-js/sdk/errors';
import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { ApiError, unwrap } from '../errors';
import { MAX_JSON_DEPTH, jsonDepth } from '../lib/json-limits';
import { mediaType } from '../lib/media-type';
import { apiKeyAuth } from '../middleware/api-key-auth';
import { answerWhileKeyValid, keyBoundStream, REVOKED_RPC_ERROR } from '../auth/key-watch';
import { unreadableRequestBody } from '../middleware/utf8-body';
import { jsonRpcStartsWork, keyLimits } from '../limits/middleware';
import { agentObjectId, callAgent, requireAgent, type AgentRoute } from '../agents/registry';
import { withChargeDoubt } from '../limits/charge-doubt';
import { underStreamLease } from '../limits/stream-leases';
import { opensStream } from '../../durable/a2a-stream-slots';
import { noteWork, startedWork } from '../limits/work';
import { agentCard } from '../a2a/card';
import { cardCaller } from '../a2a/card-caller';
import { rpcAnswer } from '../a2a/refusal';
import { jsonRpcError, type A2AVersion } from '../a2a/rpc-error';
import { isA2AMethod, methodNotFound } from '../a2a/methods';
import { auditPushChanges } from '../a2a/push-audit';
import { ifNoneMatch } from '../lib/etag';
import { sha256Hex } from '../lib/hash';
import { AgentIdParams } from '../schemas/common';
import { errorResponse, everyRouteErrors, limitedResponse, security, streamHeaders, unauthorizedResponse, unavailableResponse } from './openapi';

/** Cache lifetimes of the agent card: shared caches may keep a public card, never a private one. */
const PUBLIC_CARD_CACHE = 'public, max-age=300';
const PRIVATE_CARD_CACHE = 'private, max-age=60';

const encoder = new TextEncoder();
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

/**
 * A request id: a string, an integer the answer can echo exactly (zod's int() stops at 2^53 - 1:
 * a larger number has lost digits in JSON.parse already), or null. Integers only, as the SDK
 * takes them (JSON-RPC says numbers SHOULD NOT have fractions). A request whose id is none of
 * these is answered with id null, as JSON-RPC says for an id that cannot be read.
 */
const RequestId = z.union([z.string().max(256), z.number().int(), z.null()]);

/** Most of a method name logged or echoed: longer than every A2A method's. */
const MAX_METHOD_CHARS = 128;

/** The JSON-RPC envelope; the SDK validates each method's params. */
const JsonRpcRequest = z.object({
  jsonrpc: z.literal('2.0'),
  // Every string names a method (JSON-RPC): one no A2A method has, empty or long, is -32601 below.
  method: z.string(),
  id: RequestId.optional(),
  // By position (an array) is a valid request whose params no A2A method takes: -32602 below (-32601 for an unknown method).
  params: z.union([z.record(z.string(), z.unknown()), z.array(z.unknown())]).optional(),
});

/**
 * The request body in the OpenAPI document: a reference to the envelope's schema (registered
 * below), not the zod schema itself, which the route would then validate: a body that is not
 * a JSON-RPC request is answered in JSON-RPC (-32700, -32600), not with a 400.
 */
const JSON_RPC_REQUEST_DOC = { $ref: '#/components/schemas/A2AJsonRpcRequest' };

const rpcError = (id: unknown, error: { code: number; message: string; data?: unknown }) => ({ jsonrpc: '2.0', id: id ?? null, error });

/** The id of a request that is not otherwise valid, to answer it with: null when it cannot be read (JSON-RPC 2.0 §5). */
const readableId = (body: unknown) => {
  const id = RequestId.safeParse(body && typeof body === 'object' && 'id' in body ? body.id : null);
  return id.success ? id.data : null;
};

/**
 * Why the body cannot be read as sent (null when it can): a media type other than JSON's and
 * A2A's, a charset other than UTF-8, a content coding, or bytes that are not UTF-8. A2A's
 * ContentTypeNotSupportedError.
 */
function unsupportedBody(c: Context<AppEnv>): string | null {
  const contentType = c.req.header('content-type');
  const type = mediaType(contentType);
  if (type === 'application/json' || type === 'application/a2a+json') return unreadableRequestBody(c);
  const sent = contentType === undefined ? 'no Content-Type' : `Content-Type ${JSON.stringify(contentType)}`;
  return `${sent} is not supported: A2A JSON-RPC requests are application/json or application/a2a+json`;
}

/**
 * Deepest `params` served: they wrap the message, whose JSON may nest MAX_JSON_DEPTH levels
 * (as an execution's input). Refused here, since deeper values cannot cross to the agent's
 * object (RPC serialization overflows its stack) and nothing legitimate is that deep.
 */
const MAX_PARAMS_DEPTH = MAX_JSON_DEPTH + 1;

/**
 * The A2A-Version header: absent or empty means 0.3 (the spec's rule), served through the
 * SDK's v0.3 compatibility layer; 1.0 is the current version; anything else is -32009.
 */
export function a2aVersion(header: string | undefined): A2AVersion | null {
  const value = (header ?? '').trim();
  if (value === '' || /^0\.3(\.\d+)?$/.test(value)) return '0.3';
  if (/^1\.0(\.\d+)?$/.test(value)) return '1.0';
  return null;
}

/**
 * The A2A-Version a request asks for: its header, else its `A2A-Version` request parameter,
 * which A2A (§3.6.1) lets a client send instead of the header (the parameter's name compared
 * without case, as a header's is). Undefined when neither is there.
 */
function requestedA2AVersion(c: Context<AppEnv>): string | undefined {
  const header = c.req.header('a2a-version');
  if (header !== undefined) return header;
  for (const [name, value] of new URL(c.req.url).searchParams) if (name.toLowerCase() === 'a2a-version') return value;
  return undefined;
}

/** The request parameter, as the document shows it; `requestedA2AVersion` reads it. */
const VersionQuery = z.object({
  'A2A-Version': z.string().optional().openapi({ description: 'the A2A version, for a client that cannot send the A2A-Version header (A2A §3.6.1); the header wins when both are sent', example: '1.0' }),
});

/** The header, as the document shows it (a string, whatever its value: no request is refused over it). */
const A2A_VERSION_HEADER = z.string().optional().openapi({ description: 'the A2A version the client speaks (A2A §3.6.1): "1.0"; absent or empty, 0.3', example: '1.0' });
const VersionHeaders = z.object({ 'a2a-version': A2A_VERSION_HEADER });
const CardHeaders = VersionHeaders.extend({
  'if-none-match': z.string().optional().openapi({ description: "the card's ETag from an earlier answer: 304 while the card is the same" }),
});

/**
 * The tenant whose agent `agentId` has a public card. Agent ids are unique per tenant only,
 * so the D1 registry is asked; an id that several tenants publish is nobody's (no card).
 */
async function publicCardOwner(c: Context<AppEnv>, agentId: string): Promise<string | null> {
  const rows = await c.env.DB.prepare(
    "SELECT tenant_id FROM agents WHERE id = ? AND json_extract(snapshot, '$.agent.a2a.publicCard') = 1 LIMIT 2",
  ).bind(agentId).all<{ tenant_id: string }>();
  return rows.results.length === 1 ? (rows.results[0]?.tenant_id ?? null) : null;
}

const Card = z.record(z.string(), z.unknown()).openapi('A2AAgentCard');

/** What a card answer carries besides the card (docs/A2A.md, "Agent card"): on the 304 too, as RFC 9110 asks. */
const CARD_HEADERS = {
  ETag: { schema: { type: 'string' as const }, description: 'changes with the card; send it back in If-None-Match for a 304' },
  'Cache-Control': { schema: { type: 'string' as const }, description: `${PUBLIC_CARD_CACHE} for a public card; ${PRIVATE_CARD_CACHE} otherwise` },
};

export const a2a = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'get',
      path: '/a2a/{id}/.well-known/agent-card.json',
      tags: ['a2a'],
      summary: "The agent's A2A agent card (public when the agent's config says a2a.publicCard, else it needs the API key)",
      security: [...security, {}],
      middleware: [cardCaller()],
      request: { params: AgentIdParams, query: VersionQuery, headers: CardHeaders },
      responses: {
        200: { content: { 'application/json': { schema: Card } }, description: "the agent card (A2A v1.0; without an A2A-Version header, as v0.3 clients ask, it also carries v0.3's fields: url, preferredTransport, protocolVersion, security)", headers: CARD_HEADERS },
        304: { description: 'not modified (If-None-Match)', headers: CARD_HEADERS },
        400: errorResponse('invalid_request: the agent id is not a valid id'),
        401: unauthorizedResponse('unauthorized: the card is not public and no valid key was given'),
        404: errorResponse('not_found'),
        429: limitedResponse("rate_limited: with a key, its rate windows (RateLimit-* headers too); without one, the limit per client address (default 120 a minute per IPv4 address or IPv6 /64; Retry-After: 60, no RateLimit-* headers)"),
        ...everyRouteErrors,
        500: errorResponse('internal_error: a fault of the gateway'),
        503: unavailableResponse("agent_unavailable: the agent's object could not be reached; unavailable: D1 refused for now (Retry-After)"),
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const authenticated = c.req.header('authorization') !== undefined;
      const tenantId = authenticated ? c.get('principal').tenantId : await publicCardOwner(c, id);
      if (!tenantId) throw new ApiError('unauthorized', 'this agent card needs an API key', undefined, { 'www-authenticate': 'Bearer' });
      const route = await requireAgent(c.env, tenantId, id);
      const agent = unwrap(await callAgent(c.env, tenantId, id, route, (stub) => stub.get(), { retry: true }));
      const isPublic = agent.a2a?.publicCard === true;
      // The registry's snapshot may lag a change; the agent's own config decides.
      if (!authenticated && !isPublic) throw new ApiError('unauthorized', 'this agent card needs an API key', undefined, { 'www-authenticate': 'Bearer' });
      // A v0.3 client (no A2A-Version) gets the v0.3 fields too; every other version the v1.0 card.
      const version = a2aVersion(requestedA2AVersion(c)) === '0.3' ? '0.3' : '1.0';
      const body = JSON.stringify(agentCard(agent, new URL(c.req.url).origin, version));
      const etag = `"${(await sha256Hex(body)).slice(0, 32)}"`;
      const headers = { etag, 'cache-control': isPublic ? PUBLIC_CARD_CACHE : PRIVATE_CARD_CACHE, vary: 'Authorization, A2A-Version' };
      if (ifNoneMatch(c.req.header('if-none-match'), etag)) return c.body(null, 304, headers);
      return c.body(body, 200, { ...headers, 'content-type': 'application/json' });
    },
  );

/**
 * A notification (a request without `id`): HTTP 204, no body, nothing run. JSON-RPC 2.0 says a
 * server MUST NOT reply to one, and every A2A method is a request whose answer is its outcome
 * (a task, its id, an error), so running it would start work nobody can follow or learn
 * failed. The SDK's handler answered it with `id: null` after running it. No work: the key's
 * budget is given back, as for a refusal.
 */
function notification(c: Context<AppEnv>): Response {
  noteWork(c, 'refused');
  return c.body(null, 204);
}

/**
 * `POST /a2a/{id}/`: one JSON-RPC request (A2A v1.0 binding, v0.3 names with an A2A-Version
 * of 0.3 or none). Authentication and the agent lookup fail as the REST API does (401 / 404
 * envelopes), since there is no JSON-RPC exchange without a caller; everything after is
 * JSON-RPC: HTTP 200 with `error`, the A2A codes and ErrorInfo from the SDK.
 */
async function jsonRpc(c: Context<AppEnv>, agentId: string): Promise<Response> {
  const { tenantId, keyId } = c.get('principal');
  const route: AgentRoute = await requireAgent(c.env, tenantId, agentId);
  c.get('log').agent = agentId; // as on /v1/agents/:id's routes, whatever the call's answer
  const unsupported = unsupportedBody(c);
  if (unsupported) {
    // As the SDK's JSON-RPC server answers it: -32005 in a 200, in the version's shape (1.0's
    // for a version not served). The id is echoed when the body is UTF-8 JSON all the same.
    let id: unknown = null;
    if (unreadableRequestBody(c) === null) {
      try {
        id = readableId(JSON.parse(await c.req.text()));
      } catch {
        /* not JSON: id null */
      }
    }
    return rpcAnswer(c, rpcError(id, jsonRpcError(a2aVersion(requestedA2AVersion(c)) ?? '1.0', new ContentTypeNotSupportedError(unsupported))));
  }
  let body: unknown;
  try {
    body = JSON.parse(await c.req.text());
  } catch {
    return rpcAnswer(c, rpcError(null, { code: -32700, message: 'Parse error: the body is not JSON' }));
  }
  // Every A2A method is one request whose answer is its outcome; the SDK's handlers take one.
  if (Array.isArray(body)) return rpcAnswer(c, rpcError(null, { code: -32600, message: 'Invalid Request: a batch (JSON array) is not served here: send one request per POST' }));
  const envelope = JsonRpcRequest.safeParse(body);
  if (!envelope.success) {
    const issue = envelope.error.issues[0];
    const reason = issue ? `${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}` : 'not a JSON-RPC 2.0 request';
    return rpcAnswer(c, rpcError(readableId(body), { code: -32600, message: `Invalid Request: ${reason}` }));
  }
  c.get('log').a2aMethod = envelope.data.method.slice(0, MAX_METHOD_CHARS);
  if (envelope.data.id === undefined) return notification(c);
  const version = a2aVersion(requestedA2AVersion(c));
  if (!version) {
    const error = jsonRpcError('1.0', new VersionNotSupportedError(`A2A-Version ${requestedA2AVersion(c) ?? ''} is not supported; this agent speaks 1.0 (and 0.3)`));
    return rpcAnswer(c, rpcError(envelope.data.id, error));
  }
  const { params } = envelope.data;
  // JSON-RPC: an unknown method is -32601 whatever its params (the SDK looks at them first).
  if (!isA2AMethod(version, envelope.data.method)) return rpcAnswer(c, rpcError(envelope.data.id, methodNotFound(version, envelope.data.method.slice(0, MAX_METHOD_CHARS))));
  if (Array.isArray(params)) {
    return rpcAnswer(c, rpcError(envelope.data.id, jsonRpcError(version, new RequestMalformedError('params: A2A methods take their params by name (a JSON object), not by position (an array)'))));
  }
  if (params && jsonDepth(params, MAX_PARAMS_DEPTH) > MAX_PARAMS_DEPTH) {
    return rpcAnswer(c, rpcError(envelope.data.id, jsonRpcError(version, new RequestMalformedError(`params are nested deeper than ${MAX_PARAMS_DEPTH} levels (a message at most ${MAX_JSON_DEPTH})`))));
  }
  // JSON-RPC lets a call leave out `params`; the SDK wants an object (ListTasks has no required member).
  const request = params === undefined ? { ...envelope.data, params: {} } : envelope.data;
  const charge = c.get('tokenCharge');
  const call = withChargeDoubt(c.env, charge, () => agentObjectId(c.env, tenantId, agentId, route), () =>
    callAgent(c.env, tenantId, agentId, route, (stub) => stub.a2a({ body: request, version, origin: new URL(c.req.url).origin, requestId: c.get('requestId'), keyId, ...(charge && { charge }) })));
  // A blocking send's answer comes once its turn ended: a key revoked before then is answered
  // 401 as the request would be now (the turn runs on, and a send counts).
  const answer = () => answerWhileKeyValid(c.env.DB, keyId, call).catch((error: unknown) => {
    if (A2A_SENDS.has(envelope.data.method) && startedWork(error)) noteWork(c, 'started');
    throw error;
  });
  // A stream opens under the key's lease (its cap across agents, as an event stream does), given
  // back at once when no stream comes of the call.
  const reply = unwrap(await (opensStream(request) ? underStreamLease(c, agentObjectId(c.env, tenantId, agentId, route), answer, (answered) => answered.ok && answered.value.kind === 'stream') : answer()));
  await auditPushChanges(c, agentId, reply.pushChanges);
  if (reply.kind === 'stream') {
    // Cut off, once its key is revoked, with a last JSON-RPC error event (as the SDK ends a stream that fails).
    const lastFrame = () => encoder.encode(formatSSEErrorEvent({ jsonrpc: '2.0', id: envelope.data.id ?? null, error: REVOKED_RPC_ERROR }));
    return new Response(keyBoundStream(reply.stream, { db: c.env.DB, keyId, lastFrame }), { headers: SSE_HEADERS });
  }
  // Its agent deleted before the send's turn started: no work, whatever the error's code says of others.
  if (reply.noTurn) noteWork(c, 'refused');
  return rpcAnswer(c, reply.body as Record<string, unknown>);
}

const rpcRoute = (path: string) =>
  createRoute({
    method: 'post',
    path,
    tags: ['a2a'],
    summary: 'A2A JSON-RPC (SendMessage, GetTask, ListTasks, CancelTask, SendStreamingMessage, SubscribeToTask, push-notification configs); SSE for the streaming methods',
    security,
    request: {
      params: AgentIdParams,
      query: VersionQuery,
      headers: VersionHeaders,
      body: { required: true, content: { 'application/json': { schema: JSON_RPC_REQUEST_DOC }, 'application/a2a+json': { schema: JSON_RPC_REQUEST_DOC } } },
    },
    responses: {
      200: { content: { 'application/json': { schema: z.record(z.string(), z.unknown()) }, 'text/event-stream': { schema: z.string() } }, description: 'a JSON-RPC response (errors included: -32005 ContentTypeNotSupportedError for a body that is not application/json or application/a2a+json, in a charset other than UTF-8, or with a Content-Encoding), or an SSE stream of them', headers: streamHeaders },
      204: { description: 'a notification (a request without id): no answer, and nothing run (JSON-RPC 2.0: no reply to a notification)' },
      400: errorResponse('invalid_request: the agent id is not a valid id'),
      401: unauthorizedResponse(),
      404: errorResponse('not_found: no such agent for this tenant'),
      413: errorResponse('payload_too_large: body over 1 MiB'),
      429: limitedResponse("rate_limited or budget_exhausted: the key's limits; sends count against budgets. too_many_streams (SendStreamingMessage, SubscribeToTask and their v0.3 names): the agent holds its most streams open, its event streams and A2A streams together (32 unless the operator sets MAX_STREAMS_PER_AGENT; details {limit: \"streams.perAgent\", max, open, retryAfter}), or the API key holds its most across its agents (64 unless the operator sets MAX_STREAMS_PER_KEY; details {limit: \"streams.perKey\", ...}); Retry-After: 15; nothing was started or charged"),
      ...everyRouteErrors,
      500: errorResponse('internal_error: a fault of the gateway before the JSON-RPC exchange (the key or agent lookup), in the error envelope'),
      503: unavailableResponse("agent_unavailable: the agent's object could not be reached; unavailable: D1 or the key's budget limiter refused for now (Retry-After)"),
    },
  });

/** The A2A methods (v1.0 and v0.3 names) that start an execution: they count against budgets. */
const A2A_SENDS = new Set(['SendMessage', 'SendStreamingMessage', 'message/send', 'message/stream']);

const rpcRouter = new OpenAPIHono<AppEnv>();
rpcRouter.openAPIRegistry.register('A2AJsonRpcRequest', JsonRpcRequest);
// The caller's key, then its rate limits and budgets, as for /v1 (the card stays public-able).
rpcRouter.on('POST', ['/a2a/:id/', '/a2a/:id'], apiKeyAuth(), keyLimits(jsonRpcStartsWork((method) => typeof method === 'string' && A2A_SENDS.has(method))));

export const a2aRpc = rpcRouter
  .openapi(rpcRoute('/a2a/{id}/'), (c) => jsonRpc(c, c.req.valid('param').id))
  .openapi(rpcRoute('/a2a/{id}'), (c) => jsonRpc(c, c.req.valid('param').id));
