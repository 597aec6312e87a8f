import type { Context, MiddlewareHandler } from 'hono';
import type { PolicyState } from '../../durable/key-limiter-policy';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { countCalls, type CallTest } from '../lib/json-rpc-calls';
import type { KeyLimits } from '../schemas/limits';
import type { TokenCharge } from '../../durable/agent-rpc';
import { admit, limiter, type Admitted } from './limiter';
import { estimateChatTokens, estimateExecutionTokens, estimatedTokens, onBodyEnd, totalTokens, type ChatTokenEstimate } from './usage';
import { whenClientGone } from './client-gone';
import { givesBack } from './work';
import { rpcMethodMissing } from '../lib/rpc-missing';

/**
 * Requests that call an upstream: concurrency caps and budgets apply to these. Every other
 * tenant request counts only against the rate windows.
 */
export type UpstreamKind = 'chat' | 'execution';

const REST_EXECUTION = /^\/v1\/agents\/[^/]+\/executions$/;
/** An incoming hook's delivery, counted against the key that registered the hook (worker/hooks/key-limits.ts). */
const HOOK_DELIVERY = /^\/v1\/hooks\/[^/]+$/;

export function callsUpstream(method: string, path: string): UpstreamKind | null {
  if (method !== 'POST') return null;
  if (path === '/v1/chat/completions') return 'chat';
  if (REST_EXECUTION.test(path)) return 'execution';
  return null;
}

/**
 * Whether an answer the gateway already has may serve the request when its budget is used up:
 * a chat (from the response cache, where the route finds it applies), a REST execution with
 * an Idempotency-Key (its recorded execution) or a hook delivery (its delivery id's execution).
 * These routes honour `replayOnly`.
 */
function mayReplay(c: Context<AppEnv>, kind: UpstreamKind | null): boolean {
  if (kind === 'chat') return c.req.path === '/v1/chat/completions';
  if (kind !== 'execution') return false;
  return HOOK_DELIVERY.test(c.req.path) || (REST_EXECUTION.test(c.req.path) && c.req.header('idempotency-key') !== undefined);
}

/**
 * The token reservation an admitted execution hands its agent (none when nothing was reserved):
 * with what the budget had free beyond it (`headroom`, a snapshot the agent refuses against
 * without a round trip) and the budget itself, which the limiter checks a raise against.
 */
export function tokenCharge(lease: { name: string; id: string }, admitted: Pick<Admitted, 'reservedTokens' | 'tokenBudget'>, limits: KeyLimits): TokenCharge | null {
  if (admitted.reservedTokens <= 0) return null;
  const budget = admitted.tokenBudget;
  const budgetTokens = limits.budget?.tokens;
  return {
    limiter: lease.name, id: lease.id, reserved: admitted.reservedTokens,
    ...(budget && { headroom: budget.free, retryAfter: budget.reset }),
    ...(budgetTokens !== undefined && { budgetTokens }),
  };
}

export function rateLimitHeaders(policy: PolicyState): Record<string, string> {
  return { 'ratelimit-limit': String(policy.limit), 'ratelimit-remaining': String(Math.max(0, policy.remaining)), 'ratelimit-reset': String(policy.reset) };
}

/** Decides whether a request calls an upstream (so concurrency caps and budgets apply). */
export type UpstreamClassifier = (c: Context<AppEnv>) => UpstreamKind | null | Promise<UpstreamKind | null>;

const byRoute: UpstreamClassifier = (c) => callsUpstream(c.req.method, c.req.path);

/**
 * For JSON-RPC endpoints (A2A, MCP), where one path carries every method: a request starts
 * upstream work when `startsWork` says so of its method (or of any call in a batch). Hono
 * caches the body text, so the endpoint reads it again.
 */
export function jsonRpcStartsWork(startsWork: CallTest): UpstreamClassifier {
  return async (c) => {
    let body: unknown;
    try {
      body = JSON.parse(await c.req.text());
    } catch {
      return null; // the endpoint answers its parse error
    }
    return countCalls(body, startsWork) > 0 ? 'execution' : null;
  };
}

/** What to reserve, and whether an agent's run does the work (an execution, a chat through an agent): its agent fits and settles the reservation. */
async function tokensToReserve(c: Context<AppEnv>, kind: UpstreamKind | null, limits: KeyLimits): Promise<{ estimate: ChatTokenEstimate; agentRuns: boolean }> {
  if (kind === null || limits.budget?.tokens === undefined) return { estimate: { tokens: 0, least: 0, prompt: 0 }, agentRuns: false };
  // Hono caches the text, so the route's validator reads the same body again.
  const text = await c.req.text();
  if (kind === 'execution') return { estimate: estimateExecutionTokens(text), agentRuns: true };
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    /* the route answers its parse error */
  }
  const estimate = estimateChatTokens(body);
  if (!chatThroughAgent(c, body)) return { estimate, agentRuns: false };
  // Through an agent its run makes its own request, which no max_tokens of the chat's caps: the
  // reservation must fit whole, as an execution's (shrunk, the answer used to run past it and
  // the budget), and be at least an execution's (the body at ~4 characters a token plus 256):
  // `max_tokens: 1` used to reserve a token or two, and concurrent such chats all ran past the budget.
  const tokens = Math.max(estimate.tokens, estimateExecutionTokens(text).tokens);
  return { estimate: { ...estimate, tokens, least: tokens }, agentRuns: true };
}

/** Whether a chat runs through an agent (`x-agent-id`, or model `agent:<id>`) rather than a pool. */
function chatThroughAgent(c: Context<AppEnv>, body: unknown): boolean {
  if (c.req.header('x-agent-id') !== undefined) return true;
  const model = typeof body === 'object' && body !== null ? (body as { model?: unknown }).model : undefined;
  return typeof model === 'string' && model.startsWith('agent:');
}

export interface KeyLimitsOptions {
  /**
   * The route answers a budget's refusal of the work itself, in its protocol (MCP: a tool
   * error the model can read), with `replayOnly` set: it starts nothing, answers a replay it
   * finds, and serves the request's other calls. Only when the rate windows admit the
   * request; otherwise the whole request is refused 429 as on every route.
   */
  refusesInProtocol?: boolean;
}

/**
 * Enforces the caller's key limits (see docs/ARCHITECTURE.md, "Rate limits and budgets").
 * A key without limits costs nothing here: no round trip, no header. If the limiter cannot be
 * reached, rate windows and concurrency fail open and budgets fail closed (503).
 *
 * @example app.use('/v1/*', keyLimits())
 */
export function keyLimits(classify: UpstreamClassifier = byRoute, options: KeyLimitsOptions = {}): MiddlewareHandler<AppEnv> {
  return async function keyLimits(c, next) {
    const principal = c.get('principal');
    const limits = principal?.limits;
    if (!limits) return next();
    const kind = await classify(c);
    const { estimate, agentRuns: holdTokens } = await tokensToReserve(c, kind, limits);
    const inProtocol = options.refusesInProtocol === true && kind !== null;
    const replayable = limits.budget !== undefined && (inProtocol || mayReplay(c, kind));
    // An execution's tokens are settled by its agent once it has ended, which for an async one
    // is long after this request: the reservation outlives the request's lease. A chat through
    // an agent is such an execution: its agent fits the reservation to what the run sends (the
    // instructions, context and history the edge cannot see) and settles it, not the lease.

    let admitted: Awaited<ReturnType<typeof admit>>;
    try {
      admitted = await admit(c.env, principal.keyId, limits, kind !== null, estimate, replayable, holdTokens);
    } catch (error) {
      const closed = kind !== null && limits.budget !== undefined;
      console.error(JSON.stringify({ level: 'error', msg: 'key limiter unreachable', requestId: c.get('requestId'), key: principal.keyId, failClosed: closed, error: String(error) }));
      if (closed) throw new ApiError('unavailable', "the key's budget cannot be checked right now; retry later", undefined, { 'retry-after': '1' });
      return next();
    }
    if (!admitted.ok) {
      Object.assign(c.get('log'), { limited: admitted.limit });
      const refusal = new ApiError(admitted.code, admitted.message, { limit: admitted.limit, retryAfter: admitted.retryAfter }, { ...rateLimitHeaders(admitted.policy), 'retry-after': String(admitted.retryAfter) });
      if (!admitted.replayable) throw refusal;
      return inProtocol ? refusedInProtocol(c, next, refusal, admitted.policy) : replayOnly(c, next, refusal, admitted.policy);
    }

    // A reservation shrunk below the default guess bounds the completion, so the chat cannot
    // use more of the budget than it reserved (a stated cap fits whole, or it was refused):
    // what is left after the prompt, shared by the choices asked for.
    if (kind === 'chat' && estimate.least < estimate.tokens && admitted.reservedTokens < estimate.tokens) {
      c.set('completionTokenCap', Math.max(1, Math.floor((admitted.reservedTokens - estimate.prompt) / (estimate.choices ?? 1))));
    }
    const lease = admitted.lease;
    // The agent knows what the run will send (instructions, context, history), which may need
    // more than the body counted here: it asks the limiter to raise the reservation, or refuses.
    if (holdTokens && lease) {
      const charge = tokenCharge(lease, admitted, limits);
      if (charge) c.set('tokenCharge', charge);
    }
    // A request the gateway refused (a 4xx, or a JSON-RPC refusal: `givesBack`) did no work:
    // it is not counted against the budget.
    const release = (used: number | null, refused: boolean) =>
      limiter(c.env, lease?.name ?? '')
        .release(lease?.id ?? '', used, refused)
        .catch((error: unknown) => console.error(JSON.stringify({ level: 'error', msg: 'lease release failed; it expires', key: principal.keyId, error: String(error) })));
    // A request whose client left is no longer in flight, though its answer has not begun or its
    // stream waits on a turn that sends nothing for minutes: its slot comes back then (the
    // request's signal), while its work goes on and the lease is released, its budget settled,
    // when the handler and body end, as before.
    const unlink = lease && limits.concurrency !== undefined ? whenClientGone(c.req.raw.signal, () => freeSlot(c, lease), (p) => c.executionCtx.waitUntil(p)) : undefined;
    try {
      await next();
    } catch (error) {
      unlink?.();
      if (lease) await release(0, givesBack(c, error instanceof ApiError ? error.status : 500));
      throw error;
    }
    if (c.res.status === 101) {
      unlink?.();
      return; // a WebSocket upgrade cannot be rewrapped
    }
    let response = new Response(c.res.body, c.res);
    const status = response.status;
    if (lease) {
      const json = (response.headers.get('content-type') ?? '').includes('json');
      // Failed requests used no upstream tokens we can know of; successes settle with what the
      // route reported (`tokensUsed`: the gateway's own answer, or the usage chunk the relay
      // found in a stream), else the response's usage, else an estimate of the answer the
      // gateway saw (a JSON answer's text, or what the relay counted of a stream that ended:
      // `completionChars`), else with the reservation. Asked once the body has ended: a
      // streamed MCP answer's tool call ends after its headers, and a stream's usage chunk
      // comes last.
      // A held reservation is its agent's to settle: the lease counts nothing (given back, the
      // limiter gives the reservation back too), or an agent chat's usage would count twice.
      const collect = status < 300 && json && kind === 'chat' && !holdTokens && c.get('tokensUsed') === undefined;
      const reserved = admitted.reservedTokens;
      response = onBodyEnd(response, collect, (text) => {
        unlink?.();
        const refused = givesBack(c, status);
        const counted = c.get('completionChars');
        const estimated = counted === undefined ? null : estimatedTokens(estimate.prompt, counted, reserved);
        const used = holdTokens ? null : c.get('tokensUsed') ?? (text === null ? null : totalTokens(text, estimate.prompt, reserved)) ?? estimated;
        return release(status >= 400 || refused ? 0 : used, refused);
      }, (p) => c.executionCtx.waitUntil(p));
    }
    // Headers of a refused request say what is left once it is given back, without asking the
    // limiter again: the admission reported both.
    const policy = lease && givesBack(c, status) ? admitted.givenBackPolicy : admitted.policy;
    if (policy) for (const [name, value] of Object.entries(rateLimitHeaders(policy))) response.headers.set(name, value);
    c.res = undefined;
    c.res = response;
  };
}

function freeSlot(c: Context<AppEnv>, lease: { name: string; id: string }): Promise<void> {
  Object.assign(c.get('log'), { clientGone: true });
  return limiter(c.env, lease.name)
    .freeSlot(lease.id)
    .catch((error: unknown) => {
      // A limiter of a release before this (a gradual deployment) is expected, not an error.
      const level = rpcMethodMissing(error) ? 'warn' : 'error';
      console[level](JSON.stringify({ level, msg: 'freeing the slot of a request whose client left failed; it is freed when the request ends', requestId: c.get('requestId'), error: String(error) }));
    });
}

/**
 * A request only its budget refused, which an answer the gateway already has may still serve:
 * a repeated Idempotency-Key's recorded execution, a response-cache hit. Such an answer calls no
 * upstream and would be given back in full, so refusing it would only make a safe retry fail.
 * The route looks for it (a look-up only the budget's refusals pay for, counted against the
 * rate windows) and starts nothing; anything but that answer is the refusal, as before.
 */
async function replayOnly(c: Context<AppEnv>, next: () => Promise<void>, refusal: ApiError, policy: PolicyState): Promise<void> {
  c.set('replayOnly', refusal);
  Object.assign(c.get('log'), { replayOnly: true });
  try {
    await next();
  } catch (error) {
    throw c.get('work') === 'replayed' ? error : refusal;
  }
  if (c.get('work') !== 'replayed') {
    if (c.res.status < 400) console.error(JSON.stringify({ level: 'error', msg: 'a replay-only request was answered with something else', requestId: c.get('requestId'), status: c.res.status }));
    void c.res.body?.cancel().catch(() => undefined);
    throw refusal;
  }
  const response = new Response(c.res.body, c.res);
  for (const [name, value] of Object.entries(rateLimitHeaders(policy))) response.headers.set(name, value);
  c.res = undefined;
  c.res = response;
}

/**
 * A request only its budget refused, on a route that answers that refusal in its own protocol
 * (`refusesInProtocol`): the route starts nothing, and its answer — the refusal as a tool
 * error, a replay, the request's other calls — is the response, with the budget's headers
 * (nothing of it was counted; the rate windows counted the request, as they count every one).
 */
async function refusedInProtocol(c: Context<AppEnv>, next: () => Promise<void>, refusal: ApiError, policy: PolicyState): Promise<void> {
  c.set('replayOnly', refusal);
  Object.assign(c.get('log'), { limited: refusal.code, refusedInProtocol: true });
  await next();
  const response = new Response(c.res.body, c.res);
  for (const [name, value] of Object.entries(rateLimitHeaders(policy))) response.headers.set(name, value);
  c.res = undefined;
  c.res = response;
}
