import { z } from '@hono/zod-openapi';
import { HttpUrl } from './common';
import { UpstreamCredential } from './credential';

export const POOL_NAME = /^[a-zA-Z0-9_.-]{1,64}$/;

export const PoolName = z
  .string()
  .regex(POOL_NAME, 'pool names are 1-64 characters of a-z, A-Z, 0-9, _, . and -')
  .openapi({ example: 'gpt-pool' });

/** Largest page of `GET /v1/pools`: what the list held before it paged, so the default page is the whole list it was. */
export const POOL_PAGE_MAX = 500;

export const PoolListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(POOL_PAGE_MAX).default(POOL_PAGE_MAX).openapi({ description: `pools per page, 1-${POOL_PAGE_MAX} (default ${POOL_PAGE_MAX})` }),
  cursor: z.string().max(512).optional().openapi({ description: 'the nextCursor of the previous page' }),
});

export const Strategy = z.enum(['weighted-round-robin', 'least-inflight', 'latency']);
export type Strategy = z.infer<typeof Strategy>;

const TimeoutMs = z.number().int().min(50).max(300_000);

/** A pool call's deadline when its `timeouts.totalMs` is not given (the chat proxy's). */
export const DEFAULT_POOL_TOTAL_MS = 60_000;

/** A region tag: a Durable Object location hint (weur, enam, …) or a continent code (EU, NA, …). */
export const RegionTag = z
  .string()
  .regex(/^[a-zA-Z]{2,8}$/)
  .openapi({ description: "a location hint (weur, enam…), a continent (EU, NA…) or a colo (DFW…), matched against the caller's without case" });

/** A member a branch of the document's target schema refuses: nothing matches `not: {}`. */
const ABSENT = { not: {} };

export const PoolTargetInput = z
  .object({
    id: z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/),
    kind: z.enum(['openai-chat', 'agent-http', 'builtin']),
    url: HttpUrl.optional(),
    baseUrl: HttpUrl.optional(),
    model: z.string().min(1).max(200).optional(),
    apiKey: UpstreamCredential.optional().openapi({
      description: 'the upstream credential, sent as "Authorization: Bearer" to openai-chat and agent-http targets (calls and health probes), sealed at rest and shown only as "…last4" (a bare "…" when shorter than 12 characters); sending that masked form back (or "...last4" / "...", its ASCII spelling) keeps the credential stored for the same target id (every other value starting with "…", or "..." and up to 4 characters, is refused)',
    }),
    weight: z.number().int().min(1).max(1000).default(1),
    priority: z.number().int().min(0).max(9).default(0),
    region: RegionTag.optional(),
    timeoutMs: TimeoutMs.optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.kind === 'agent-http' && !t.url) ctx.addIssue({ code: 'custom', path: ['url'], message: 'agent-http targets need a url' });
    if (t.kind === 'openai-chat' && !t.baseUrl) ctx.addIssue({ code: 'custom', path: ['baseUrl'], message: 'openai-chat targets need a baseUrl' });
    if (t.kind === 'openai-chat' && !t.model) ctx.addIssue({ code: 'custom', path: ['model'], message: 'openai-chat targets need a model' });
    // The outbound guard checks only the URL a kind calls: a URL member the kind does not use would be stored unchecked.
    if (t.kind !== 'agent-http' && t.url !== undefined) ctx.addIssue({ code: 'custom', path: ['url'], message: `url is not used by ${t.kind} targets${t.kind === 'openai-chat' ? ' (they use baseUrl)' : ''}` });
    if (t.kind !== 'openai-chat' && t.baseUrl !== undefined) ctx.addIssue({ code: 'custom', path: ['baseUrl'], message: `baseUrl is not used by ${t.kind} targets${t.kind === 'agent-http' ? ' (they use url)' : ''}` });
    // A credential nothing would send is most likely meant for another target: refused, not kept sealed and unused.
    if (t.kind === 'builtin' && t.apiKey !== undefined) ctx.addIssue({ code: 'custom', path: ['apiKey'], message: 'apiKey is not used by builtin targets (they call no upstream)' });
    // An agent-http target is sent the gateway's agent protocol, which names no model.
    if (t.kind === 'agent-http' && t.model !== undefined) ctx.addIssue({ code: 'custom', path: ['model'], message: 'model is not used by agent-http targets (they are not asked for a model)' });
  })
  // The members each kind takes are checked above, which the generated schema cannot say:
  // spelled out for the document as one branch per kind.
  .openapi({
    anyOf: [
      { properties: { kind: { enum: ['openai-chat'] }, url: ABSENT }, required: ['baseUrl', 'model'] },
      { properties: { kind: { enum: ['agent-http'] }, baseUrl: ABSENT, model: ABSENT }, required: ['url'] },
      { properties: { kind: { enum: ['builtin'] }, url: ABSENT, baseUrl: ABSENT, apiKey: ABSENT } },
    ],
    description: 'a target: kind "openai-chat" needs baseUrl and model (apiKey optional), "agent-http" needs url (apiKey optional), "builtin" neither (model optional, the name its answers carry); a url, baseUrl, apiKey or model the kind does not use is refused; ids are unique in the pool' });
export type PoolTargetInput = z.infer<typeof PoolTargetInput>;

export const PoolRetry = z
  .object({ attempts: z.number().int().min(1).max(5).default(3) })
  .strict();

export const PoolTimeouts = z
  .object({
    firstByteMs: TimeoutMs.optional().openapi({ description: 'time to response headers, per attempt' }),
    idleMs: TimeoutMs.optional().openapi({ description: 'longest pause between streamed chunks' }),
    totalMs: TimeoutMs.optional().openapi({ description: `deadline for the whole call, retries included (default ${DEFAULT_POOL_TOTAL_MS}); firstByteMs, idleMs and each target's timeoutMs may not exceed it` }),
  })
  .strict();
export type PoolTimeouts = z.infer<typeof PoolTimeouts>;

export const PoolCache = z
  .object({ ttlSeconds: z.number().int().min(1).max(86_400) })
  .strict()
  .openapi({ description: 'cache deterministic (temperature 0, non-streamed) chat completions' });

const PassThrough = z.boolean().openapi({
  description:
    'hand a non-streamed completion on as its headers arrive instead of reading it first: about a tenth less CPU per proxied request, ' +
    'but its body is then neither checked to be JSON (only its content type is) nor cut off by the gateway if it stalls after its headers. Default false.',
});

export const PutPoolBody = z
  .object({
    strategy: Strategy.default('weighted-round-robin'),
    targets: z
      .array(PoolTargetInput)
      .min(1, 'a pool needs at least one target')
      .max(32)
      // Each repeat is named where it is (it was one issue at `targets`, naming no id).
      .superRefine((ts, ctx) => {
        const first = new Map<string, number>();
        ts.forEach((t, i) => {
          const at = first.get(t.id);
          if (at === undefined) first.set(t.id, i);
          else ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `target ids must be unique: "${t.id}" is also target ${at}'s` });
        });
      }),
    retry: PoolRetry.optional(),
    timeouts: PoolTimeouts.optional(),
    cache: PoolCache.optional(),
    passThrough: PassThrough.optional(),
  })
  .strict()
  .superRefine((pool, ctx) => {
    // A limit past the deadline never fires: the deadline cuts the attempt first. Without a
    // totalMs the default deadline cuts it just the same. Checked on write only, so a pool
    // stored before this check keeps working as it did.
    const given = pool.timeouts?.totalMs;
    const total = given ?? DEFAULT_POOL_TOTAL_MS;
    const deadline = given === undefined ? `the default total deadline (timeouts.totalMs not given: ${total})` : `timeouts.totalMs (${total})`;
    const firstByte = pool.timeouts?.firstByteMs;
    if (firstByte !== undefined && firstByte > total) {
      ctx.addIssue({ code: 'custom', path: ['timeouts', 'firstByteMs'], message: `timeouts.firstByteMs (${firstByte}) is above ${deadline}: the first byte limit would never apply` });
    }
    // The stream relay waits for the sooner of the idle limit and the deadline, so an idle limit past it never fires either.
    const idle = pool.timeouts?.idleMs;
    if (idle !== undefined && idle > total) {
      ctx.addIssue({ code: 'custom', path: ['timeouts', 'idleMs'], message: `timeouts.idleMs (${idle}) is above ${deadline}: the idle limit would never apply` });
    }
    pool.targets.forEach((t, i) => {
      if (t.timeoutMs !== undefined && t.timeoutMs > total) {
        ctx.addIssue({ code: 'custom', path: ['targets', i, 'timeoutMs'], message: `targets[${i}].timeoutMs (${t.timeoutMs}) is above ${deadline}: the target's first byte limit would never apply` });
      }
    });
  })
  .openapi('PutPool');
export type PutPoolBody = z.infer<typeof PutPoolBody>;

/** What is stored: the input with credentials encrypted (`enc:v1:…`). */
export type StoredPool = PutPoolBody & { name: string; createdAt: string; updatedAt: string };

export const TargetHealth = z.object({
  circuit: z.enum(['closed', 'open', 'half-open']),
  inflight: z.number().int(),
  latencyMs: z.number().nullable().openapi({
    description: "the latency strategy's estimate of the target's latency as of now (peak-EWMA, decaying towards 0 while the target is not called, so a target avoided for a slow answer is tried again); null until it answers",
  }),
  probe: z.object({ ok: z.boolean(), checkedAt: z.string(), latencyMs: z.number().nullable(), error: z.string().optional() }).nullable(),
  healthy: z.boolean().openapi({
    description: "the balancer's judgement: the circuit takes a request now (closed, or half-open with no probe request out) and the last active probe did not fail in the past 3 minutes; a Retry-After pause is apart (pausedUntil)",
  }),
  pausedUntil: z.string().nullable().openapi({
    description:
      "until when (ISO 8601) the target asked, by the Retry-After of a 429 or 503 (at most 5 minutes), not to be called: the balancer skips it meanwhile while another target can serve; " +
      'null when it is not paused. Like circuit, inflight and latencyMs, what the pool runtime of the isolate answering saw; `healthy` leaves the pause out',
  }),
});

export const PoolView = z
  .object({
    name: PoolName,
    strategy: Strategy,
    targets: z.array(
      z.object({
        id: z.string(),
        kind: z.string(),
        url: z.string().optional(),
        baseUrl: z.string().optional(),
        model: z.string().optional(),
        apiKey: z.string().optional().openapi({ description: 'never returned: "…last4", or "…" when shorter than 12 characters' }),
        weight: z.number(),
        priority: z.number(),
        region: z.string().optional(),
        timeoutMs: z.number().optional(),
        health: TargetHealth.optional(),
      }),
    ),
    retry: PoolRetry.optional(),
    timeouts: PoolTimeouts.optional(),
    cache: PoolCache.optional(),
    passThrough: PassThrough.optional(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Pool');
export type PoolView = z.infer<typeof PoolView>;
