import { abortWith } from '../lib/abort';
import type { ExecutionError } from '../schemas/execution';
import { ResumeTimes } from './resume-times';
import { UpstreamError, type AttemptChoice, type InvokeOutcome, type Upstream, type UpstreamRequest } from './types';

export interface InvokeOptions {
  /** Epoch ms after which no attempt may run: the execution's total deadline. */
  deadlineAt: number;
  /** Aborted when the execution is cancelled. */
  signal: AbortSignal;
  maxAttempts?: number;
  /** Called before each attempt with its number (1-based) and target, so it is recorded first. */
  onAttempt?: (attempt: number, label: string) => void;
}

const BASE_DELAY_MS = 100;
const MAX_DELAY_MS = 2_000;

/**
 * Exponential backoff with full jitter, before any retry. A server's Retry-After is not part
 * of it: that is about the target that sent it (see `retryAfterWait`), while the retry may go
 * to another one.
 */
export function backoffMs(attempt: number, random = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (attempt - 1));
  return Math.round(random() * ceiling);
}

/**
 * How long to wait before calling a target that asked (Retry-After) not to be called before
 * `notBefore`: 0 to call it now, else the milliseconds to wait, or null when that wait would
 * end past the deadline. A retry then stops with the failure it would only repeat; a first
 * attempt goes ahead rather than refusing outright (the rule for when no target is healthy).
 */
export function retryAfterWait(notBefore: number | undefined, deadlineAt: number, isRetry: boolean, now = Date.now()): number | null {
  const wait = (notBefore ?? 0) - now;
  if (wait <= 0) return 0;
  if (now + wait < deadlineAt) return wait;
  return isRetry ? null : 0;
}

function toUpstreamError(error: unknown): UpstreamError {
  if (error instanceof UpstreamError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new UpstreamError('invalid_response', `upstream failed: ${message}`, false);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/**
 * Runs one execution against an upstream: a timeout per attempt (the target's own, never past
 * the deadline), up to `maxAttempts` attempts with backoff and jitter on network errors,
 * timeouts, 429 and 5xx, and nothing after the deadline or a cancel. A Retry-After delays only
 * a retry that goes back to the target that sent it: a pool's next target is called after the
 * backoff alone.
 */
export async function invokeUpstream(upstream: Upstream, request: UpstreamRequest, options: InvokeOptions): Promise<InvokeOutcome> {
  const maxAttempts = options.maxAttempts ?? 3;
  // Set by the first failure; an Error captures a stack trace, so a success never builds one.
  let last: UpstreamError | undefined;
  let attempts = 0;
  // A single-target upstream's Retry-After, as an epoch ms (a pool keeps one per target).
  let retryAfterUntil = 0;
  // The record's `retryAt`; made by the first failure, so a success allocates nothing for it.
  let resume: ResumeTimes | undefined;
  // An attempt's own failure that another attempt would meet again (or that may have done the
  // work): the record says so, and the client is told not to retry it either. A deadline
  // passed or a pool out of targets is no such failure: a new request may get further.
  let stopped = false;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    if (options.signal.aborted) break;
    if (Date.now() >= options.deadlineAt) {
      last = new UpstreamError('timeout', 'execution deadline passed', false);
      break;
    }
    let choice: AttemptChoice;
    try {
      choice = upstream.next?.() ?? { label: upstream.label, notBefore: retryAfterUntil, ...(upstream.timeoutMs !== undefined && { timeoutMs: upstream.timeoutMs }) };
    } catch (error) {
      last = toUpstreamError(error);
      (resume ??= new ResumeTimes()).failed(upstream.label, last);
      break;
    }
    const wait = retryAfterWait(choice.notBefore, options.deadlineAt, last !== undefined);
    if (wait === null) {
      upstream.skip?.();
      break;
    }
    if (wait > 0) {
      await sleep(wait, options.signal);
      if (options.signal.aborted) {
        upstream.skip?.();
        break;
      }
    }
    attempts = attempt;
    try {
      options.onAttempt?.(attempt, choice.label);
    } catch (error) {
      // Not made: its target must not stay counted in flight (a probe slot held) for good.
      upstream.skip?.();
      throw error;
    }
    const left = options.deadlineAt - Date.now();
    const attemptTimeout = Math.min(choice.timeoutMs ?? left, left);
    // A timer cleared when the attempt ends (AbortSignal.timeout would outlive it, one per call).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DOMException('upstream attempt timed out', 'TimeoutError')), attemptTimeout);
    const unlink = abortWith(options.signal, controller);
    try {
      const reply = await upstream.call(request, { signal: controller.signal });
      return { ok: true, reply, attempts };
    } catch (error) {
      last = toUpstreamError(error);
      stopped = !last.retryable;
      if (last.retryAfterMs !== undefined) retryAfterUntil = Date.now() + last.retryAfterMs;
      (resume ??= new ResumeTimes()).failed(choice.label, last);
    } finally {
      clearTimeout(timer);
      unlink();
    }
    // A pool target the outbound guard refused was never called: the pool's next one may be
    // (it used to end the execution with every other target untried), asked at once. One it
    // could not check now (the resolver's outage) waits out the backoff as a network failure does.
    const nextTarget = last.kind === 'refused' && !last.retryable && upstream.next !== undefined;
    if (options.signal.aborted || (!last.retryable && !nextTarget) || attempt === maxAttempts) break;
    if (nextTarget) continue;
    const delay = backoffMs(attempt);
    if (Date.now() + delay >= options.deadlineAt) break;
    await sleep(delay, options.signal);
  }
  if (options.signal.aborted) {
    return { ok: false, attempts, cancelled: true, error: { code: 'cancelled', message: 'execution was cancelled' } };
  }
  last ??= new UpstreamError('timeout', 'execution deadline passed before the upstream was called', false);
  const code = last.kind === 'timeout' ? 'upstream_timeout' : 'upstream_failed';
  const error: ExecutionError = last.status === undefined ? { code, message: last.message } : { code, message: last.message, status: last.status };
  if (stopped) error.retryable = false;
  const resumeAt = code === 'upstream_failed' ? resume?.soonest() : undefined;
  if (resumeAt !== undefined) error.retryAt = new Date(resumeAt).toISOString();
  return { ok: false, attempts, cancelled: false, error };
}
