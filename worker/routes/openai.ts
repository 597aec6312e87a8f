import { createRoute, z } from '@hono/zod-openapi';
import { ApiError, validationError } from '../errors';
import { callerRegionTags, type GeoHints } from '../agents/placement';
import { agentChat } from '../openai/agent-chat';
import { proxyChat } from '../openai/chat-proxy';
import { sseEvent } from '../openai/completions';
import { keyBoundStream, REVOKED_MESSAGE } from '../auth/key-watch';
import { cachedChat, chatCacheKey, storeChat } from '../openai/response-cache';
import { loadPoolRuntime } from '../pools/runtime';
import { allPools, getPool } from '../pools/store';
import { ErrorBody, IdempotencyKey } from '../schemas/common';
import { ChatCompletion, ChatCompletionRequest, Model, ModelList } from '../schemas/openai';
import { POOL_NAME } from '../schemas/pool';
import type { StoredPool } from '../schemas/pool';
import { outboundPolicy } from '../upstream/outbound-guard';
import { retryAfterSeconds } from '../upstream/resume-times';
import { commonErrors, errorResponse, json, jsonBody, LockedRetryAfter, security } from './openapi';
import { router } from './router';
import { noteWork } from '../limits/work';
import { completionCap, type ChatUsage } from '../limits/usage';

const CacheHeaders = z.object({
  'x-agent-id': z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/).optional().openapi({ description: "run the chat through this agent (its history and upstream)" }),
  'x-gateway-cache-ttl': z.coerce.number().int().min(0).max(86_400).optional().openapi({ description: 'a chat to a pool: cache this response for N seconds (0: bypass); a chat through an agent is never cached' }),
  // Checked where it is used (AgentChatKey): a chat to a pool ignores it, as it always has.
  'idempotency-key': z.string().optional().openapi({
    description:
      "through an agent: the same key for the same agent answers the first turn's execution (Idempotent-Replayed: true) and never runs it twice; another chat under it is 422 idempotency_key_reused; 1–255 printable ASCII characters without spaces, not beginning hook: (400 otherwise). A chat to a pool ignores it",
  }),
});

const AgentChatKey = z.object({ 'idempotency-key': IdempotencyKey.optional() });

const GatewayHeaders = z.object({
  'x-gateway-upstream': z.string().optional().openapi({
    description: '`<pool>/<target>`: the target that answered, or the last one tried. Through an agent whose upstream is not a pool: that upstream (`builtin`, `agent-http <host>`, …)',
    example: 'gpt-pool/eu-1',
  }),
  'x-gateway-attempts': z.string().regex(/^\d+$/).openapi({ description: 'attempts made, the answering one included (0: a response-cache hit, which calls no target)', example: '2' }),
  'x-gateway-execution': z.string().optional().openapi({ description: "through an agent: the execution's id" }),
});

const FailedHeaders = GatewayHeaders.extend({
  'x-should-retry': z.enum(['false']).optional().openapi({
    description: "`false` when the gateway stopped at a failure every attempt would meet again (a target's redirect, a reply over 4 MiB), or, through an agent, one whose execution it did not retry (`error.retryable: false`: an agent-http back end may have done the work), or a turn sent with an Idempotency-Key, which answers this failure to every retry: OpenAI's clients, which retry a 502 or 504 by default, obey it",
  }),
  'Retry-After': z.string().regex(/^\d+$/).optional().openapi({
    description: 'when every attempt was a target asking to wait (a 429 or 503 with Retry-After): seconds until the soonest of them said it would take traffic again (at most 300)',
  }),
});

const CompletionHeaders = GatewayHeaders.extend({
  'x-gateway-cache': z.enum(['HIT', 'MISS', 'BYPASS']).optional().openapi({
    description: 'when the response cache applies (the pool\'s cache or x-gateway-cache-ttl): HIT answered from the cache, MISS stored, BYPASS not stored',
  }),
  // A HIT is the runtime cache's stored response, which comes back with these two of its own.
  age: z.string().regex(/^\d+$/).optional().openapi({ description: 'a HIT: seconds since the completion was stored (set by the runtime\'s cache)' }),
  'cf-cache-status': z.string().optional().openapi({ description: 'a HIT: the runtime cache\'s own status' }),
  'idempotent-replayed': z.enum(['true']).optional().openapi({ description: "through an agent: present when this is the recorded answer to an earlier chat with the same Idempotency-Key" }),
});

/**
 * A target's 4xx is passed through with its own status and body (other than 408 and 429, which
 * are retried). In OpenAPI a status the operation declares wins over `4XX`, so each 4xx the
 * gateway itself can answer is documented as either: the envelope, or the target's body with
 * x-gateway-upstream set.
 */
const TargetErrorBody = z.record(z.string(), z.unknown()).openapi({ description: "a target's own error body, as it came (the upstream's shape, e.g. OpenAI's {error:{message,type,code}})" });
const PASSED_THROUGH_HEADERS = {
  'x-gateway-upstream': { schema: { type: 'string' as const }, description: "the target, when the answer is that target's own" },
  'x-gateway-attempts': { schema: { type: 'string' as const }, description: "attempts made, when the pool was tried: a target's own answer, or a 400 with 0 when no target could be called (none chat-capable, or the outbound guard refused its URL)" },
};
const orPassedThrough = (status: number, response: { description: string; headers?: Record<string, unknown> }) => ({
  description: `${response.description}; or a target's own ${status}, passed through (x-gateway-upstream names it)`,
  content: { 'application/json': { schema: z.union([ErrorBody, TargetErrorBody]) } },
  headers: { ...response.headers, ...PASSED_THROUGH_HEADERS },
});

/** The last chunk of a streamed completion whose key was revoked: OpenAI's error shape, the gateway's code. */
const REVOKED_CHUNK = { error: { message: REVOKED_MESSAGE, type: 'invalid_request_error', code: 'unauthorized' } };

/**
 * The chat the targets are asked when a key's token budget caps its answer at `cap`: as sent
 * when it caps itself (a usable max_completion_tokens or max_tokens), else with `max_tokens:
 * cap`. A cap that caps nothing (`null`, which OpenAI takes as no value; `-5` or `"many"`, which
 * a builtin target read as none) is replaced: left in, it used to keep the key's cap off and let
 * the answer run past what the budget had reserved, and over the budget itself.
 */
function withTokenCap(body: ChatCompletionRequest, cap: number | undefined): ChatCompletionRequest {
  if (cap === undefined || completionCap(body as Readonly<Record<string, unknown>>) !== undefined) return body;
  const capped: ChatCompletionRequest = { ...body, max_tokens: cap };
  delete capped.max_completion_tokens;
  return capped;
}

/**
 * Seconds to cache a completion for: what the request asks (it may ask for any request but a
 * stream), else the pool's setting for deterministic requests (temperature 0, not streamed).
 */
function cacheTtl(requested: number | undefined, poolTtl: number | undefined, body: ChatCompletionRequest): number {
  if (body.stream) return 0;
  if (requested !== undefined) return requested;
  if (poolTtl === undefined || body.temperature == null || body.temperature > 0) return 0;
  return poolTtl;
}

export const openai = router()
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/chat/completions',
      tags: ['openai'],
      summary: 'OpenAI-compatible chat completions through a pool or an agent (stream or not)',
      security,
      request: { headers: CacheHeaders, ...jsonBody(ChatCompletionRequest) },
      responses: {
        200: { content: { 'application/json': { schema: ChatCompletion }, 'text/event-stream': { schema: z.string() } }, description: 'the completion, or its stream (chat.completion.chunk events, then `data: [DONE]`; a stream that fails after its first event ends instead with `data: {"error":{"message","type":"upstream_error","code"}}`, code stream_interrupted, upstream_timeout or event_too_large)', headers: CompletionHeaders },
        409: { ...errorResponse('through an agent: execution_cancelled (cancelled while it ran), agent_paused, or agent_locked (a transaction held the context its answer patched; with Retry-After)'), headers: GatewayHeaders.partial().extend({ 'Retry-After': LockedRetryAfter }) },
        422: errorResponse('through an agent: idempotency_key_reused (same Idempotency-Key, another chat)'),
        502: { ...errorResponse('upstream_failed: every attempt failed'), headers: FailedHeaders },
        504: { ...errorResponse('upstream_timeout'), headers: FailedHeaders.omit({ 'Retry-After': true }) },
        ...commonErrors,
        400: orPassedThrough(400, commonErrors[400]),
        401: orPassedThrough(401, commonErrors[401]),
        404: orPassedThrough(404, errorResponse('not_found: no such pool or agent')),
        413: orPassedThrough(413, commonErrors[413]),
        415: orPassedThrough(415, commonErrors[415]),
        // A target's 4xx is the caller's to see: never retried, and not rewritten into the envelope.
        '4XX': {
          content: { 'application/json': { schema: z.unknown() } },
          description:
            "a target's own 4xx (other than 408 and 429), passed through as it came: its status and body (the upstream's error shape, not the gateway's envelope); x-gateway-upstream names the target, which the gateway's own 4xx answers never carry",
          headers: GatewayHeaders,
        },
      },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const headers = c.req.valid('header');
      const agentId = headers['x-agent-id'] ?? (body.model.startsWith('agent:') ? body.model.slice('agent:'.length) : undefined);
      // The key's budget is used up: only a response-cache hit may answer (limits middleware).
      const refusal = c.get('replayOnly');
      if (agentId !== undefined) {
        const key = AgentChatKey.safeParse({ 'idempotency-key': headers['idempotency-key'] });
        if (!key.success) throw validationError(key.error);
        return agentChat(c, agentId, body, key.data['idempotency-key']);
      }
  
      const { tenantId } = c.get('principal');
      const slash = body.model.indexOf('/');
      const poolName = slash < 0 ? body.model : body.model.slice(0, slash);
      const model = slash < 0 ? undefined : body.model.slice(slash + 1);
      const runtime = await loadPoolRuntime(c.env, tenantId, poolName);
      if (!runtime) throw new ApiError('not_found', `model ${body.model}: no pool named ${poolName}`);
  
      // The key's token budget could not reserve the default completion: ask for no more.
      const cap = c.get('completionTokenCap');
      const asked = withTokenCap(body, cap);
      const ttl = cacheTtl(headers['x-gateway-cache-ttl'], runtime.pool.cache?.ttlSeconds, body);
      // Keyed on what the targets are asked: an answer cut short by a key's cap is no answer to the request uncapped.
      const cacheKey = ttl > 0 ? await chatCacheKey(tenantId, runtime.pool, asked) : null;
      if (cacheKey) {
        const hit = await cachedChat(cacheKey);
        if (hit) {
          noteWork(c, 'replayed'); // no upstream call: the key's budgets are given back
          return hit;
        }
      }
      if (refusal) throw refusal;
  
      // A key with a budget counts a stream's usage, found by the relay once the stream has
      // ended; with a token budget the target is asked for it for a client that did not ask,
      // and the relay counts the answer text it passes, for a target that reports none.
      const budget = body.stream === true ? c.get('principal').limits?.budget : undefined;
      const streamUsage = budget && {
        report: (usage: ChatUsage) => c.set('tokensUsed', usage.total_tokens),
        ask: budget.tokens !== undefined,
        ...(budget.tokens !== undefined && { unreported: (chars: number) => c.set('completionChars', chars) }),
      };
      const result = await proxyChat({ runtime, body: asked, ...(model !== undefined && { model }), regions: callerRegionTags(c.req.raw.cf as GeoHints | undefined), policy: outboundPolicy(c.env), ...(streamUsage && { streamUsage }) });
      Object.assign(c.get('log'), { pool: poolName, upstream: result.target, attempts: result.attempts, stream: body.stream === true });
      const gatewayHeaders: Record<string, string> = { 'x-gateway-attempts': String(result.attempts) };
      if (result.target) gatewayHeaders['x-gateway-upstream'] = result.target;
      if (!result.ok) {
        const { error } = result;
        if (error.kind === 'refused' && result.attempts === 0) throw new ApiError('invalid_request', error.message, undefined, gatewayHeaders);
        const code = error.kind === 'timeout' ? 'upstream_timeout' : 'upstream_failed';
        if (code === 'upstream_failed' && result.retryAt !== undefined) gatewayHeaders['retry-after'] = retryAfterSeconds(result.retryAt);
        // The gateway stopped at a failure every attempt would meet again (a redirect, a reply over
        // 4 MiB): a client's own retry, which OpenAI's clients make of a 502 by default, would too.
        if (!error.retryable) gatewayHeaders['x-should-retry'] = 'false';
        throw new ApiError(code, error.message, { attempts: result.attempts, status: error.status }, gatewayHeaders);
      }
      // The proxy built this response itself (never a fetch's, whose headers are immutable).
      const { response } = result;
      if (result.usage) c.set('tokensUsed', result.usage.total_tokens);
      for (const [name, value] of Object.entries(gatewayHeaders)) response.headers.set(name, value);
      if (cacheKey && response.status === 200 && !body.stream) return storeChat(c.executionCtx, cacheKey, response, ttl, runtime.pool.passThrough === true);
      if (ttl > 0) response.headers.set('x-gateway-cache', 'BYPASS');
      if (!body.stream || response.status !== 200 || response.body === null) return response;
      // Cut off once its key is revoked, with an error chunk as a broken upstream's (no [DONE]); the upstream call is aborted.
      return new Response(keyBoundStream(response.body, { db: c.env.DB, keyId: c.get('principal').keyId, lastFrame: () => sseEvent(REVOKED_CHUNK) }), response);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/models',
      tags: ['openai'],
      summary: 'Models: every pool with a chat-capable target ("<pool>") and each model those targets name ("<pool>/<model>")',
      security,
      responses: { 200: json(ModelList, 'the models'), ...commonErrors },
    }),
    async (c) => {
      const pools = await allPools(c.env, c.get('principal').tenantId);
      return c.json({ object: 'list' as const, data: pools.flatMap(poolModels) }, 200);
    },
  );

// The official client's models.retrieve('<pool>/<model>') sends the slash as is (v4) or as %2F
// (v5): a route parameter cannot hold it, so the id is the rest of the path.
openai.openAPIRegistry.registerPath({
  method: 'get',
  path: '/v1/models/{model}',
  tags: ['openai'],
  summary: 'One model of GET /v1/models by its id ("<pool>" or "<pool>/<model>"; the slash may be sent as %2F)',
  security,
  request: { params: z.object({ model: z.string().openapi({ example: 'faq/gpt-4o-mini' }) }) },
  responses: { 200: json(Model, 'the model'), 404: errorResponse('not_found: no such model'), ...commonErrors },
});

openai.get('/v1/models/:model{.+}', async (c) => {
  // Hono has decoded it (a %2F is a slash now), and kept it as sent if it is no valid
  // percent-encoding: decoded again, a model named "100%" threw (500), as did a bare "%".
  const id = c.req.param('model');
  const poolName = id.split('/', 1)[0] ?? '';
  const pool = POOL_NAME.test(poolName) ? await getPool(c.env, c.get('principal').tenantId, poolName) : null;
  const model = pool ? poolModels(pool).find((m) => m.id === id) : undefined;
  if (!model) throw new ApiError('not_found', `model ${id} not found`);
  return c.json(model, 200);
});

/**
 * A pool's models as GET /v1/models lists them: the pool, and each model its chat targets
 * name. agent-http targets do not speak chat completions (proxyChat never calls them): a pool
 * of those alone is refused there, and their models are no chat model of the pool's.
 */
function poolModels(pool: StoredPool): Model[] {
  const chatTargets = pool.targets.filter((t) => t.kind !== 'agent-http');
  if (chatTargets.length === 0) return [];
  const created = Math.floor(Date.parse(pool.createdAt) / 1000);
  const models = [...new Set(chatTargets.map((t) => t.model).filter((m): m is string => m !== undefined))];
  return [pool.name, ...models.map((m) => `${pool.name}/${m}`)].map((id) => ({ id, object: 'model' as const, created, owned_by: 'edge-agent-gateway' }));
}
