import { abortWith } from '../lib/abort';
import { UpstreamError, type InvokeOutcome, type Upstream, type UpstreamRequest } from './types';

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

/** Exponential backoff with full jitter; a server's Retry-After wins when it asks for longer. */
export function backoffMs(attempt: number, retryAfterMs?: number, random = Math.random): number {
  const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (attempt - 1));
  const jittered = Math.round(random() * ceiling);
  return retryAfterMs === undefined ? jittered : Math.max(jittered, retryAfterMs);
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
 * timeouts, 429 and 5xx, and nothing after the deadline or a cancel.
 */
export async function invokeUpstream(upstream: Upstream, request: UpstreamRequest, options: InvokeOptions): Promise<InvokeOutcome> {
  const maxAttempts = options.maxAttempts ?? 3;
  // Set by the first failure; an Error captures a stack trace, so a success never builds one.
  let last: UpstreamError | undefined;
  let attempts = 0;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    if (options.signal.aborted) break;
    const remaining = options.deadlineAt - Date.now();
    if (remaining <= 0) {
      last = new UpstreamError('timeout', 'execution deadline passed', false);
      break;
    }
    attempts = attempt;
    let choice: { label: string; timeoutMs?: number };
    try {
      choice = upstream.next?.() ?? { label: upstream.label, ...(upstream.timeoutMs !== undefined && { timeoutMs: upstream.timeoutMs }) };
    } catch (error) {
      last = toUpstreamError(error);
      break;
    }
    options.onAttempt?.(attempt, choice.label);
    const attemptTimeout = Math.min(choice.timeoutMs ?? remaining, remaining);
    // A timer cleared when the attempt ends (AbortSignal.timeout would outlive it, one per call).
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new DOMException('upstream attempt timed out', 'TimeoutError')), attemptTimeout);
    const unlink = abortWith(options.signal, controller);
    try {
      const reply = await upstream.call(request, { signal: controller.signal });
      return { ok: true, reply, attempts };
    } catch (error) {
      last = toUpstreamError(error);
    } finally {
      clearTimeout(timer);
      unlink();
    }
    if (options.signal.aborted || !last.retryable || attempt === maxAttempts) break;
    const delay = backoffMs(attempt, last.retryAfterMs);
    if (Date.now() + delay >= options.deadlineAt) break;
    await sleep(delay, options.signal);
  }
  if (options.signal.aborted) {
    return { ok: false, attempts, cancelled: true, error: { code: 'cancelled', message: 'execution was cancelled' } };
  }
  last ??= new UpstreamError('timeout', 'execution deadline passed before the upstream was called', false);
  const code = last.kind === 'timeout' ? 'upstream_timeout' : 'upstream_failed';
  const error = last.status === undefined ? { code, message: last.message } : { code, message: last.message, status: last.status };
  return { ok: false, attempts, cancelled: false, error };
}
