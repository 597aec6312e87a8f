import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { ApiError, unwrap } from '../errors';
import { auditEntry } from '../audit/log';
import { agentObjectId, callAgent, findAgent, requireAgent } from '../agents/registry';
import { withinHookKeyLimits } from '../hooks/key-limits';
import { withChargeDoubt } from '../limits/charge-doubt';
import { noteWork } from '../limits/work';
import { newId } from '../lib/ids';
import { deleteHook, getHook, putHook, resolveHook, type ResolvedHook } from '../hooks/store';
import { deliveryKeys, hookDeliveryProblem, seenHookExecution, startHookExecution, type DeliveryProblem, type HookInput } from '../hooks/start';
import { bodyText, carriesSignature, verifyDelivery } from '../hooks/verify';
import { sha256Hex } from '../lib/hash';
import { Hook, HookAccepted, HookId, HookListQuery, PutHookBody } from '../schemas/hook';
import { page } from '../schemas/common';
import { decodeHookCursor, encodeHookCursor } from '../lib/config-cursors';
import { listHooks } from '../hooks/list';
import { commonErrors, errorResponse, everyRouteErrors, json, jsonBody, limitedResponse, security } from './openapi';

const Params = z.object({ id: HookId });

/** The headers each scheme signs with (documented; checked by worker/hooks/verify.ts, never refused by a schema). */
const SignatureHeaders = z.object({
  'webhook-id': z.string().optional().openapi({ description: 'standard: the delivery id (deduplicated; at most 255 characters)' }),
  'webhook-timestamp': z.string().optional().openapi({ description: 'standard: unix seconds, within 5 minutes of now' }),
  'webhook-signature': z.string().optional().openapi({ description: 'standard: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, space-separated' }),
  'x-github-delivery': z.string().optional().openapi({ description: 'github: the delivery id (deduplicated, and so is the body: it alone is signed; at most 255 characters)' }),
  'x-github-event': z.string().optional().openapi({ description: 'github: the event name, passed on as `event`' }),
  'x-hub-signature-256': z.string().optional().openapi({ description: 'github: `sha256=<hex HMAC-SHA256 of the body>`' }),
  'stripe-signature': z.string().optional().openapi({ description: 'stripe: `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`, within 5 minutes; the event `id` in the body is the delivery id (at most 255 characters)' }),
});

/** Any body, as the sender signed it: not a schema the router validates (the signature decides). */
const SignedBody = {
  required: true,
  description: "the sender's payload exactly as signed; JSON is passed on parsed, anything else as text",
  content: {
    'application/json': { schema: { description: 'any JSON value' } },
    'text/plain': { schema: { type: 'string' as const } },
  },
};

/** The one answer to every refused delivery, so a prober learns nothing about the hook. */
const refused = () => new ApiError('unauthorized', 'signature verification failed');

export const hooks = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/hooks',
      tags: ['hooks'],
      summary: "The tenant's incoming webhooks in id order, a page at a time, each with the key that registered it and whether that key is revoked (never a secret)",
      security,
      request: { query: HookListQuery },
      responses: { 200: json(page(Hook), 'a page of hooks'), ...commonErrors },
    }),
    async (c) => {
      const { limit, cursor, agentId } = c.req.valid('query');
      const { tenantId } = c.get('principal');
      const { hooks: found, next } = await listHooks(c.env, tenantId, { limit, after: (await decodeHookCursor(tenantId, agentId, cursor)) ?? '', agentId });
      return c.json({ data: found, nextCursor: next === null ? null : await encodeHookCursor(tenantId, agentId, next) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'put',
      path: '/v1/hooks/{id}',
      tags: ['hooks'],
      summary: 'Create or replace an incoming webhook that starts executions on an agent',
      security,
      request: { params: Params, ...jsonBody(PutHookBody) },
      responses: { 200: json(Hook, 'replaced'), 201: json(Hook, 'created'), 404: errorResponse('not_found: no such agent'), 409: errorResponse('conflict: the id is taken'), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const body = c.req.valid('json');
      const { tenantId, keyId } = c.get('principal');
      await requireAgent(c.env, tenantId, body.agentId);
      const result = await putHook(c.env, tenantId, keyId, id, body, auditEntry(c, 'hook.put', id, { details: { agentId: body.agentId, intent: body.intent, scheme: body.scheme } }));
      if (!result) throw new ApiError('conflict', `hook id ${id} is taken`);
      return c.json(result.hook, result.created ? 201 : 200);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/hooks/{id}',
      tags: ['hooks'],
      summary: 'An incoming webhook (never its secret)',
      security,
      request: { params: Params },
      responses: { 200: json(Hook, 'the hook'), 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const hook = await getHook(c.env, c.get('principal').tenantId, c.req.valid('param').id);
      if (!hook) throw new ApiError('not_found', 'hook not found');
      return c.json(hook, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'delete',
      path: '/v1/hooks/{id}',
      tags: ['hooks'],
      summary: 'Remove an incoming webhook',
      security,
      request: { params: Params },
      responses: { 204: { description: 'deleted' }, 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      if (!(await deleteHook(c.env, c.get('principal').tenantId, id, auditEntry(c, 'hook.delete', id)))) throw new ApiError('not_found', 'hook not found');
      return c.body(null, 204);
    },
  )
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/hooks/{id}',
      tags: ['hooks'],
      summary: "A sender's delivery (no API key: its signature authenticates it); starts an async execution",
      request: { params: Params, headers: SignatureHeaders, body: SignedBody },
      responses: {
        202: json(HookAccepted, 'accepted: the execution is queued'),
        200: json(HookAccepted, 'a delivery id seen before (whatever its body), or for the github scheme a body seen before under another delivery id: nothing new started, the first execution answers'),
        400: errorResponse('invalid_request: the hook id is malformed, or (signature verified) the delivery id is over 255 characters, or the execution input a new delivery makes is over 256 KiB of JSON or nested deeper than 32 levels; nothing starts (a delivery id seen before answers 200 whatever its body)'),
        401: errorResponse('unauthorized: missing or bad signature, stale timestamp, or unknown hook'),
        404: errorResponse('not_found: the agent of this hook no longer exists'),
        413: errorResponse('payload_too_large: body over 1 MiB'),
        415: errorResponse('unsupported_media_type: the body has a Content-Encoding, or its Content-Type names a charset other than UTF-8 (answered before the signature is checked)'),
        429: limitedResponse("rate_limited or budget_exhausted: the limits of the API key that registered the hook (a delivery counts as an execution of that key; while its budget is used up, a repeated delivery id is still answered 200)"),
        ...everyRouteErrors,
        500: errorResponse("internal_error: a fault of the gateway, or the hook's stored secret cannot be opened with UPSTREAM_ENCRYPTION_KEY (changed or unset since the hook was put; the message names the hook): nothing starts, the sender retries"),
        503: commonErrors[503],
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const raw = new Uint8Array(await c.req.arrayBuffer());
      // Unsigned, it is refused with the same 401 as every other, without a read of D1.
      if (!carriesSignature(c.req.raw.headers)) throw refused();
      const hook = await resolveHook(c.env, id);
      if (!hook) throw refused();
      const verified = await verifyDelivery(hook.scheme, hook.secret, raw, c.req.raw.headers);
      if (!verified.ok || !verified.deliveryId) {
        console.warn(JSON.stringify({ level: 'warn', msg: 'incoming webhook refused', hook: id, reason: verified.ok ? 'no delivery id' : verified.reason, requestId: c.get('requestId') }));
        throw refused();
      }
      return withinHookKeyLimits(c, hook, () => startDelivery(c, id, hook, verified.deliveryId, verified.event, raw));
    },
  );

/**
 * Starts the execution of a verified delivery, or answers the one its delivery id started.
 * Under its key's `replayOnly` (budget used up) it only looks for that one, starting nothing.
 */
async function startDelivery(c: Context<AppEnv>, id: string, hook: ResolvedHook, deliveryId: string, event: string | undefined, raw: Uint8Array) {
  const body = bodyText(raw);
  let payload: unknown = body;
  try {
    // A leading BOM, which JSON parsers may ignore (RFC 8259 §8.1), does not make JSON text.
    payload = JSON.parse(body.replace(/^\uFEFF/, ''));
  } catch {
    /* a non-JSON payload is passed on as text */
  }
  const input: HookInput = { hook: id, scheme: hook.scheme, deliveryId, ...(event && { event }), payload };
  const problem = hookDeliveryProblem(hook.scheme, input);
  const route = await findAgent(c.env, hook.tenantId, hook.agentId);
  const outOfBounds = ({ message, why, path }: DeliveryProblem) => new ApiError('invalid_request', message, [{ path, message: why, code: 'custom' }]);
  if (!route) throw problem ? outOfBounds(problem) : new ApiError('not_found', 'the agent of this hook no longer exists');
  // The delivery id is the idempotency key: a redelivery replays, never runs twice. A GitHub
  // body seen before under another id is a replay too (its signature covers only the body).
  const keys = await deliveryKeys(id, hook.scheme, deliveryId, raw);
  const duplicate = (executionId: string, msg = 'incoming webhook delivery id reused with another body: dropped as a duplicate') =>
    console.warn(JSON.stringify({ level: 'warn', msg, hook: id, deliveryId, executionId, requestId: c.get('requestId') }));
  if (problem) {
    // Refused before anything starts, as a REST execution's input over the limits is; unless
    // the id was seen, since its sender retries whatever it signs until it gets a 2xx.
    const first = unwrap(await callAgent(c.env, hook.tenantId, hook.agentId, route, (stub) => seenHookExecution(stub, keys), { retry: true }));
    if (!first) throw outOfBounds(problem);
    noteWork(c, 'replayed');
    duplicate(first.id);
    return c.json({ executionId: first.id, status: first.status, duplicate: true }, 200);
  }
  const fingerprint = await sha256Hex(body);
  // Named here, so a retried call finds its own execution rather than taking it for a replay
  // (which would give the key's budget back for work that started).
  const executionId = newId('ex');
  const charge = c.get('tokenCharge');
  const replayOnly = c.get('replayOnly') !== undefined;
  const { execution, replayed, bodyDiffered } = unwrap(
    await withChargeDoubt(c.env, charge, () => agentObjectId(c.env, hook.tenantId, hook.agentId, route), () =>
      callAgent(c.env, hook.tenantId, hook.agentId, route, (stub) =>
        startHookExecution(stub, { intent: hook.intent, input, fingerprint, ...keys, executionId, ...(replayOnly && { replayOnly }), ...(charge && { charge }) }),
      { retry: true }),
    ),
  );
  if (replayed) noteWork(c, 'replayed');
  if (bodyDiffered) duplicate(execution.id);
  else if (replayed && (execution.input as Partial<HookInput> | null)?.deliveryId !== deliveryId) {
    duplicate(execution.id, 'incoming GitHub delivery whose body was seen before under another delivery id: dropped as a replay');
  }
  return c.json({ executionId: execution.id, status: execution.status, duplicate: replayed }, replayed ? 200 : 202);
}
