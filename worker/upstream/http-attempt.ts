import { readBodyUpTo } from '../lib/bytes';
import { cutBodyNote, ERROR_BODY_WAIT_MS, maskedBodyText, readErrorBody } from './error-body';
import { UpstreamError } from './types';

/** Parses a Retry-After header (seconds or HTTP date) into milliseconds. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Whether a target's status is worth another attempt: a timeout, a rate limit, a server error. */
export const retryableStatus = (status: number): boolean => status === 408 || status === 429 || status >= 500;

/**
 * A 3xx answer as its attempt's failure, or null for another status. It is never followed (the
 * guard checked the stored URL only), and its body, which says nothing the status does not, is
 * cancelled unread: one that stalled held the attempt to its timeout.
 */
export function redirectFailure(response: Response): UpstreamError | null {
  if (response.status < 300 || response.status >= 400) return null;
  void response.body?.cancel().catch(() => {});
  return new UpstreamError('http', `upstream answered ${response.status} (redirects are not followed)`, false, response.status);
}

/**
 * Most bytes of an upstream reply that are read: the reply carries an output and a context
 * patch of at most 1 MiB each, so a larger one fails anyway, and read whole it could take the
 * agent's object past its memory limit (a 150 MB reply did), resetting everything it runs.
 */
export const MAX_REPLY_BYTES = 4 * 1024 * 1024;

/** Shared: a decode without `stream` keeps no state between calls, and one per read showed in profiles. */
const UTF8 = new TextDecoder();

/** The body as text, or null (the rest cancelled) once it exceeds `maxBytes`. */
export async function readBounded(response: Response, maxBytes: number): Promise<string | null> {
  const length = response.headers.get('content-length');
  if (Number(length) > maxBytes) {
    await response.body?.cancel();
    return null;
  }
  if (!response.body) return '';
  // A declared length ends the body there, so it is read natively, without a turn of this
  // loop per chunk. Not so when chunked, or with a content coding: the runtime decompresses, and the length is
  // the compressed one (a 20 KB gzip Content-Length gave 20 MB of text), so that is counted.
  if (length !== null && !response.headers.has('transfer-encoding') && isIdentity(response.headers.get('content-encoding'))) return response.text();
  const bytes = await readBodyUpTo(response.body, maxBytes);
  return bytes && UTF8.decode(bytes);
}

const isIdentity = (coding: string | null): boolean => coding === null || coding.trim().toLowerCase() === 'identity' || coding.trim() === '';

/**
 * POSTs JSON and returns the parsed JSON reply, classifying every failure: network errors,
 * 408, 429 and 5xx are retryable; other statuses and a 2xx body over MAX_REPLY_BYTES (read no
 * further) are not. An unparseable 2xx body, or one that broke off or stalled past the
 * attempt's timeout, is retryable only when `retryUnparsed` says so: a model's answer can be
 * asked for again, while an agent back end's work may have been done. `credential`, the one the
 * call carries, is masked wherever the target's error names it (the error is kept and shown).
 */
export async function postJson(url: string, body: unknown, headers: Record<string, string>, signal: AbortSignal, { retryUnparsed = false, credential }: { retryUnparsed?: boolean; credential?: string | undefined } = {}): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
      body: JSON.stringify(body),
      signal,
      // The guard checked this URL, not wherever a redirect points (docs/ARCHITECTURE.md).
      redirect: 'manual',
    });
  } catch (error) {
    throw classifyThrown(error, signal);
  }
  if (!response.ok) throw await errorAnswer(response, signal, credential);
  let read: string | null;
  try {
    read = await readBounded(response, MAX_REPLY_BYTES);
  } catch (error) {
    const failure = classifyThrown(error, signal);
    // A 2xx whose body broke off or stalled is an answer: the back end did the work, and a
    // retry (on a pool, to another target) would do it again. Only a model's may be asked again.
    if (!retryUnparsed && failure.retryable) {
      throw new UpstreamError(failure.kind, `${failure.message} while reading its ${response.status} reply (not retried: the back end may have done the work)`, false, response.status);
    }
    throw failure;
  }
  if (read === null) throw new UpstreamError('invalid_response', `upstream reply exceeds ${MAX_REPLY_BYTES} bytes`, false, response.status);
  // A 204 (or an empty 200) sent nothing to parse: "not JSON" alone sent its author looking for a malformed body.
  if (read === '') throw new UpstreamError('invalid_response', `upstream reply is not JSON: its ${response.status} has no body`, retryUnparsed, response.status);
  try {
    return JSON.parse(read) as unknown;
  } catch {
    throw new UpstreamError('invalid_response', 'upstream reply is not JSON', retryUnparsed, response.status);
  }
}

function classifyThrown(error: unknown, signal: AbortSignal): UpstreamError {
  if (error instanceof UpstreamError) return error;
  if (signal.aborted) {
    const reason: unknown = signal.reason;
    if (reason instanceof UpstreamError) return reason;
    const isTimeout = reason instanceof DOMException && reason.name === 'TimeoutError';
    return isTimeout
      ? new UpstreamError('timeout', 'upstream attempt timed out', true)
      : new UpstreamError('cancelled', 'execution was cancelled', false);
  }
  const message = error instanceof Error ? error.message : String(error);
  return new UpstreamError('network', `upstream connection failed: ${message}`, true);
}

/**
 * The failure a non-2xx answer is: its status decides whether it is retried, also when its body
 * stalls or breaks off (what arrived is shown): a 401 whose body never ended used to fail as a
 * retryable timeout, and went on to the next target as if the first had not answered.
 */
async function errorAnswer(response: Response, signal: AbortSignal, credential: string | undefined): Promise<UpstreamError> {
  const redirect = redirectFailure(response);
  if (redirect) return redirect;
  const read = await readErrorBody(response, MAX_REPLY_BYTES, ERROR_BODY_WAIT_MS);
  const body = read.kind === 'too-large' ? `upstream reply exceeds ${MAX_REPLY_BYTES} bytes` : maskedBodyText(read, credential);
  const cut = read.kind === 'cut' ? classifyThrown(read.error, signal) : undefined;
  // A cancelled execution is that, whatever its target was saying.
  if (cut?.kind === 'cancelled') return cut;
  const shown = cut ? cutBodyNote(response.status, cut, body) : body.slice(0, 200);
  return new UpstreamError('http', `upstream answered ${response.status}: ${shown}`, retryableStatus(response.status), response.status, retryAfterMs(response.headers.get('retry-after')));
}
