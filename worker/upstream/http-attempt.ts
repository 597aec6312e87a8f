import { UpstreamError } from './types';

/** Parses a Retry-After header (seconds or HTTP date) into milliseconds. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Said of a 3xx answer, which is never followed: it fails the attempt like any other non-2xx. */
export const redirectNote = (status: number): string => (status >= 300 && status < 400 ? ' (redirects are not followed)' : '');

/**
 * POSTs JSON and returns the parsed JSON reply, classifying every failure: network errors,
 * 408, 429 and 5xx are retryable; other statuses and unparseable bodies are not.
 */
export async function postJson(url: string, body: unknown, headers: Record<string, string>, signal: AbortSignal): Promise<unknown> {
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
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    throw classifyThrown(error, signal);
  }
  if (!response.ok) {
    const retryable = response.status === 408 || response.status === 429 || response.status >= 500;
    throw new UpstreamError(
      'http',
      `upstream answered ${response.status}${redirectNote(response.status)}: ${text.slice(0, 200)}`,
      retryable,
      response.status,
      retryAfterMs(response.headers.get('retry-after')),
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new UpstreamError('invalid_response', 'upstream reply is not JSON', false, response.status);
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
