import { withoutCredential } from '../lib/masked-credential';
import type { LeaseOutcome, PoolRuntime, PoolTarget } from '../pools/runtime';
import { contentText, type ChatCompletionRequest } from '../schemas/openai';
import { DEFAULT_POOL_TOTAL_MS } from '../schemas/pool';
import { builtinUpstream } from '../upstream/builtin';
import { endpointUrl } from '../upstream/endpoint';
import { cutBodyNote, ERROR_BODY_WAIT_MS, maskedBodyText, readErrorBody } from '../upstream/error-body';
import { MAX_REPLY_BYTES, readBounded, redirectFailure, retryableStatus, retryAfterMs } from '../upstream/http-attempt';
import { backoffMs, retryAfterWait } from '../upstream/invoke';
import { checkOutboundUrl, outboundFailure, type OutboundPolicy } from '../upstream/outbound-guard';
import { healthOutcome, poolTargetName, retryAfterOf } from '../upstream/pool';
import { ResumeTimes } from '../upstream/resume-times';
import { UpstreamError } from '../upstream/types';
import { estimatedUsage, wantsStreamUsage, type ChatUsage } from '../limits/usage';
import { SSE_HEADERS, completion, completionStream, heldToCap, isChatCompletion } from './completions';
import { MAX_ERROR_MESSAGE, MAX_FIRST_EVENT, readFirstEvent, type FirstEvent } from './first-event';
import { callersStatus } from './stream-error';
import { relayStream, type StreamEnd } from './stream-relay';

const DEFAULT_FIRST_BYTE_MS = 30_000;
const DEFAULT_IDLE_MS = 30_000;
/**
 * A lease ends this long after the call's deadline at the latest: by then the relay has ended
 * every stream that is still read, so one still open belongs to a client that went away.
 */
const LEASE_GRACE_MS = 1_000;

export interface ChatProxyOptions {
  runtime: PoolRuntime;
  body: ChatCompletionRequest;
  /** Model to ask every target for (`<pool>/<model>`); otherwise each target's own. */
  model?: string;
  regions: readonly string[];
  policy: OutboundPolicy;
  /**
   * Wants a stream's usage (the key's budget counts it), found in the relayed stream and handed
   * to `report`. With `ask`, a client that did not ask for it (`stream_options.include_usage`)
   * still does not get it: the target is asked, and its usage chunk removed from the stream. A
   * target that sends none never calls `report`; with `unreported`, the relay counts the answer
   * text that passed and hands the count to it instead (see RelayOptions.usage).
   */
  streamUsage?: { report: (usage: ChatUsage) => void; ask: boolean; unreported?: (completionChars: number) => void };
}

// `response` is built here, never a fetch's own, so the caller may add headers to it. `usage`:
// what the gateway's own answer (a builtin target) used, known without reading the body.
export type ChatProxyResult =
  | { ok: true; response: Response; target: string; attempts: number; usage?: ChatUsage }
  | { ok: false; error: UpstreamError; target?: string; attempts: number; retryAt?: number };

/**
 * What a relayed stream's end says of its target. Only a finished stream is a success: a
 * half-open circuit closes on it. A client that stops reading after the first chunk leaves no
 * verdict: the first chunk shows the target answers, and counts as its latency, but not that
 * it would have finished (a probe cut short frees the slot, the circuit stays half-open).
 */
const STREAM_VERDICT = { finished: 'success', failed: 'failure', cancelled: 'abandoned' } as const satisfies Record<StreamEnd, LeaseOutcome>;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Timeouts {
  firstByteMs: number;
  idleMs: number;
  deadlineAt: number;
}

/**
 * Sends a chat completion through a pool: each attempt to the target the balancer picks, a
 * retry (connect errors, timeouts, 408, 429, 5xx) to the next one with backoff and jitter. A
 * target's Retry-After keeps the balancer off it meanwhile, and is waited for (within the
 * deadline) only when the retry has to go back to that target.
 * Streams fail over only until their first chunk; after that a failure ends the stream with
 * an error event. A non-stream answer is read whole and must parse before it is answered, or
 * the attempt fails over (unless the pool passes answers through: see `passThrough`). A 4xx
 * other than 408/429 is the caller's and is passed through unchanged.
 */
export async function proxyChat(options: ChatProxyOptions): Promise<ChatProxyResult> {
  const { runtime } = options;
  const { timeouts, retry } = runtime.pool;
  const deadlineAt = Date.now() + (timeouts?.totalMs ?? DEFAULT_POOL_TOTAL_MS);
  const maxAttempts = retry?.attempts ?? 3;
  // agent-http targets do not speak chat completions: never picked (nor a retry sent back to one).
  const unusable = new Set(runtime.targets.filter((t) => t.kind === 'agent-http').map((t) => t.id));
  const tried = new Set<string>();
  // Built only when needed: an Error captures a stack trace, a cost every request would pay.
  const noTargets = () => new UpstreamError('refused', `pool ${runtime.pool.name} has no chat-capable targets`, false);
  // The last call's failure and target; a URL the outbound guard refused was no call.
  let last: UpstreamError | undefined;
  let lastTarget: string | undefined;
  let refused: UpstreamError | undefined;
  let attempts = 0;
  // The client's Retry-After when every attempt was asked to wait; made by the first failure.
  let resume: ResumeTimes | undefined;
  if (unusable.size === runtime.targets.length) return { ok: false, error: noTargets(), attempts };

  while (attempts < maxAttempts && Date.now() < deadlineAt) {
    const lease = runtime.lease(options.regions, tried, deadlineAt + LEASE_GRACE_MS, unusable);
    if (!lease) break;
    // A Retry-After is waited for only by a retry that lands on the target that sent it.
    const wait = retryAfterWait(lease.notBefore, deadlineAt, last !== undefined);
    if (wait === null) {
      lease.done('cancelled');
      break;
    }
    if (wait > 0) await sleep(wait);
    tried.add(lease.target.id);
    attempts++;
    const target = poolTargetName(runtime.pool.name, lease.target.id);
    const started = Date.now();
    // A stream's latency is its first chunk's: how long the rest takes is the answer's length.
    let firstChunkMs: number | undefined;
    try {
      const { response, streaming, usage } = await attemptChat(lease.target, options, {
        firstByteMs: lease.target.timeoutMs ?? timeouts?.firstByteMs ?? DEFAULT_FIRST_BYTE_MS,
        idleMs: timeouts?.idleMs ?? DEFAULT_IDLE_MS,
        deadlineAt,
      }, (end) => lease.done(STREAM_VERDICT[end], firstChunkMs ?? Date.now() - started));
      firstChunkMs = Date.now() - started;
      // A stream stays in flight until it ends, and one that breaks counts against the target.
      if (!streaming) lease.done('success', firstChunkMs);
      return { ok: true, response, target, attempts, ...(usage && { usage }) };
    } catch (error) {
      const failure = error instanceof UpstreamError ? error : new UpstreamError('network', String(error), true);
      lease.done(healthOutcome(failure), Date.now() - started, retryAfterOf(failure));
      // The outbound guard refused this target's URL (what its name resolves to now): nothing
      // was sent, so it is no attempt, and the pool's next target is asked at once. It used to
      // end the chat (502) with every other target untried, chat after chat, while it pointed there.
      // One the resolver could not check now counts as a failed attempt, retried after the backoff.
      if (failure.kind === 'refused' && !failure.retryable) {
        attempts--;
        refused = failure;
        unusable.add(lease.target.id);
        continue;
      }
      last = failure;
      lastTarget = target;
      (resume ??= new ResumeTimes()).failed(lease.target.id, last);
    }
    if (!last.retryable || attempts === maxAttempts) break;
    const delay = backoffMs(attempts);
    if (Date.now() + delay >= deadlineAt) break;
    await sleep(delay);
  }
  const retryAt = resume?.soonest();
  // No call made at all (every target refused): the refusal, which the route answers 400 with no attempt.
  return { ok: false, error: last ?? refused ?? noTargets(), attempts, ...(lastTarget !== undefined && { target: lastTarget }), ...(retryAt !== undefined && { retryAt }) };
}

async function attemptChat(target: PoolTarget, options: ChatProxyOptions, timeouts: Timeouts, onStreamEnd: (end: StreamEnd) => void): Promise<{ response: Response; streaming: boolean; usage?: ChatUsage }> {
  const model = options.model ?? target.model ?? 'builtin';
  if (target.kind === 'builtin') return { ...(await builtinChat(options.body, model)), streaming: false };

  const baseUrl = target.baseUrl ?? '';
  // One controller for the whole attempt: timers abort it at each phase's limit. A client that
  // goes away needs no link here: the platform cancels the invocation, its fetches with it
  // (docs/ARCHITECTURE.md, "Decision: no link to the request's signal").
  const controller = new AbortController();
  const { signal } = controller;
  const timeoutError = (what: string) => new UpstreamError('timeout', what, true);
  const firstByteLimit = Math.min(timeouts.firstByteMs, timeouts.deadlineAt - Date.now());
  const firstByteTimer = setTimeout(() => controller.abort(timeoutError(`no response within ${firstByteLimit} ms`)), Math.max(0, firstByteLimit));
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: options.body.stream ? 'text/event-stream' : 'application/json' };
  if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;

  const { streamUsage } = options;
  const usageOptions = options.body.stream && streamUsage?.ask && !wantsStreamUsage(options.body) ? askedUsage(options.body) : undefined;
  try {
    // Under the first-byte limit: looking the name up is part of reaching the target.
    const check = await checkOutboundUrl(baseUrl, options.policy, signal);
    if (!check.ok) throw signal.aborted ? abortReason(signal, undefined) : outboundFailure(check);
    let response: Response;
    try {
      const body = JSON.stringify({ ...options.body, model, ...(usageOptions && { stream_options: usageOptions }) });
      response = await fetch(endpointUrl(baseUrl, '/chat/completions'), { method: 'POST', headers, body, signal, redirect: 'manual' });
    } catch (error) {
      throw abortReason(signal, error);
    }
    if (!response.ok) {
      // Not the caller's to relay.
      const redirect = redirectFailure(response);
      if (redirect) throw redirect;
      // Another target is asked, and this answer never shown: a body that stalled held the failover to the attempt's timeout.
      if (retryableStatus(response.status)) {
        void response.body?.cancel().catch(() => {});
        throw new UpstreamError('http', `upstream answered ${response.status}`, true, response.status, retryAfterMs(response.headers.get('retry-after')));
      }
      // Bounded like every read of a reply: one read whole could take the isolate past its memory.
      // Waited for about a second at most: the status is the answer, and the client waited out the first-byte limit for it.
      const read = await readErrorBody(response, MAX_REPLY_BYTES, ERROR_BODY_WAIT_MS);
      // A server that predates stream_options may refuse it (older Azure API versions answer
      // 400 "Unrecognized request argument"): the client did not send it, so the same target
      // is asked again without it, and the budget settles with an estimate of what it streamed.
      // The target's own error, relayed, but never with the credential it may name (no view shows it).
      const text = read.kind === 'too-large' ? '' : maskedBodyText(read, target.apiKey);
      if (streamUsage && usageOptions && response.status === 400 && read.kind === 'whole' && text.includes('stream_options')) {
        clearTimeout(firstByteTimer);
        return attemptChat(target, { ...options, streamUsage: { ...streamUsage, ask: false } }, timeouts, onStreamEnd);
      }
      if (read.kind === 'too-large') return { response: Response.json({ error: { message: `the target's error body exceeds ${MAX_REPLY_BYTES} bytes`, type: 'upstream_error' } }, { status: response.status }), streaming: false };
      // Its status is the caller's all the same; what arrived goes in a body that parses.
      if (read.kind === 'cut') return { response: Response.json({ error: { message: cutBodyNote(response.status, abortReason(signal, read.error), text), type: 'upstream_error' } }, { status: response.status }), streaming: false };
      return { response: new Response(text, { status: response.status, headers: { 'content-type': response.headers.get('content-type') ?? 'application/json' } }), streaming: false };
    }
    if (!options.body.stream) {
      if (options.runtime.pool.passThrough) return { response: passThrough(response), streaming: false };
      let text: string | null;
      try {
        text = await readBounded(response, MAX_REPLY_BYTES);
      } catch (error) {
        throw abortReason(signal, error);
      }
      // As for an agent's upstream: another target would most likely answer as much again.
      if (text === null) throw new UpstreamError('invalid_response', `upstream reply exceeds ${MAX_REPLY_BYTES} bytes`, false);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new UpstreamError('invalid_response', 'upstream reply is not JSON', true);
      }
      if (!isChatCompletion(parsed)) throw new UpstreamError('invalid_response', 'upstream reply is not a chat completion (no "choices" array)', true);
      return { response: new Response(text, { status: 200, headers: { 'content-type': 'application/json' } }), streaming: false };
    }
    // Relaying anything else (a proxy's HTML page, a whole JSON completion) as SSE would hand the
    // client a torn stream; nothing has been sent yet, so it fails over like a 5xx.
    requireContentType(response, SSE_TYPE, 'an event stream');
    const reader = response.body?.getReader();
    if (!reader) throw new UpstreamError('invalid_response', 'upstream stream has no body', true);
    let first: ReadableStreamReadResult<Uint8Array>;
    try {
      first = await reader.read();
    } catch (error) {
      throw abortReason(signal, error);
    }
    if (first.done) throw new UpstreamError('invalid_response', 'upstream stream ended before its first chunk', true);
    let head: FirstEvent;
    try {
      head = await readFirstEvent(first.value, reader);
    } catch (error) {
      throw abortReason(signal, error);
    }
    // Keep-alives alone past the bound: the target sent no answer, and nothing reached the client yet.
    if (head.noEvent) {
      void reader.cancel().catch(() => {});
      throw new UpstreamError('invalid_response', `upstream sent ${MAX_FIRST_EVENT} bytes of its stream without an event`, true);
    }
    if (head.error && !callersStatus(head.error.status)) {
      void reader.cancel().catch(() => {});
      const message = withoutCredential(head.error.message, target.apiKey).slice(0, MAX_ERROR_MESSAGE);
      throw new UpstreamError('http', `upstream stream began with an error event: ${message}`, true, head.error.status);
    }
    clearTimeout(firstByteTimer);
    const stream = relayStream(head.bytes, reader, {
      idleMs: timeouts.idleMs,
      deadlineAt: timeouts.deadlineAt,
      abort: (reason) => controller.abort(reason),
      onEnd: onStreamEnd,
      credential: target.apiKey,
      ...(streamUsage && { usage: { report: streamUsage.report, strip: usageOptions !== undefined, ...(streamUsage.unreported && { unreported: streamUsage.unreported }) } }),
    });
    return { response: new Response(stream, { status: 200, headers: SSE_HEADERS }), streaming: true };
  } finally {
    clearTimeout(firstByteTimer);
  }
}

/**
 * The client's `stream_options` asking for the usage chunk, its other fields kept; undefined
 * when they are not an object (the target answers that as it would have). `null` is none, as
 * OpenAI takes it: sent on as it was, the target was never asked, and the key charged an estimate.
 */
function askedUsage(body: ChatCompletionRequest): Record<string, unknown> | undefined {
  const options: unknown = body.stream_options;
  if (options === undefined || options === null) return { include_usage: true };
  return typeof options === 'object' && options !== null && !Array.isArray(options) ? { ...options, include_usage: true } : undefined;
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;
const SSE_TYPE = /^text\/event-stream\b/i;

/**
 * A non-stream answer of a `passThrough` pool, handed on as its headers arrive: the runtime
 * pipes the body to the client natively, where reading it first (to check that it parses)
 * costs about a tenth of a proxied request's CPU (BENCHMARKS.md, tenth pass). An answer that
 * does not say it is JSON (an HTML page from a proxy in front of the model) still fails over
 * like a 5xx. What it gives up, and why it is not the default: the body is not parsed, and
 * nothing bounds it once handed on — the runtime runs no more of this request's JavaScript
 * (timers included) while it pipes, so a body that stalls after its headers waits for the
 * client's own timeout, and one that breaks reaches the client broken instead of being
 * retried on another target.
 */
function passThrough(response: Response): Response {
  const type = requireContentType(response, JSON_TYPE, 'JSON');
  return new Response(response.body, { status: 200, headers: { 'content-type': type } });
}

/** The answer's content type if it matches `expected`; else its body is dropped and the attempt fails over like a 5xx. */
function requireContentType(response: Response, expected: RegExp, what: string): string {
  const type = response.headers.get('content-type') ?? '';
  if (expected.test(type)) return type;
  void response.body?.cancel().catch(() => {});
  throw new UpstreamError('invalid_response', `upstream reply is not ${what} (content-type: ${type.slice(0, 64) || 'none'})`, true);
}

function abortReason(signal: AbortSignal, error: unknown): UpstreamError {
  // Already judged (an error body that stalled past its wait).
  if (error instanceof UpstreamError && !signal.aborted) return error;
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    return reason instanceof UpstreamError ? reason : new UpstreamError('cancelled', 'the attempt was aborted', false);
  }
  return new UpstreamError('network', `upstream connection failed: ${error instanceof Error ? error.message : String(error)}`, true);
}

/**
 * The built-in responder as a chat completions target: answers the last user message, held to
 * the request's token cap. No model counts its tokens, so its usage is the estimate the key's
 * reservation uses (~4 characters a token).
 */
async function builtinChat(body: ChatCompletionRequest, model: string): Promise<{ response: Response; usage: ChatUsage }> {
  const lastUser = [...body.messages].reverse().find((m) => m.role === 'user');
  const reply = await builtinUpstream.call(
    { executionId: crypto.randomUUID(), agentId: '', intent: 'chat', input: { message: contentText(lastUser?.content) }, instructions: null, context: {}, history: [] },
    { signal: new AbortController().signal },
  );
  const { content, finish } = heldToCap((reply.output as { reply: string }).reply, body);
  const id = `chatcmpl-${crypto.randomUUID()}`;
  const usage = estimatedUsage(body.messages, content);
  if (body.stream) return { response: new Response(completionStream(id, model, content, wantsStreamUsage(body) ? usage : undefined, finish), { status: 200, headers: SSE_HEADERS }), usage };
  return { response: Response.json(completion(id, model, content, usage, undefined, finish)), usage };
}
