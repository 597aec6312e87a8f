import { retryableStatus } from '../upstream/http-attempt';

/**
 * The HTTP status a target's error event names: its `code` (or `status`) when that is an HTTP
 * status, as vLLM (400) and LiteLLM ("429") write it; else, from OpenAI's `type`, 400 for an
 * `invalid_request_error` (OpenAI's `code` is then a name such as `context_length_exceeded`).
 * A message alone, or a member naming neither, names none: the failure is the target's.
 */
export function errorStatus(error: string | object): number | undefined {
  if (typeof error === 'string') return undefined;
  const { code, status, type } = error as { code?: unknown; status?: unknown; type?: unknown };
  const named = [code, status].map((value) => (typeof value === 'number' || typeof value === 'string' ? String(value) : '')).find((value) => /^[1-5]\d\d$/.test(value));
  if (named !== undefined) return Number(named);
  return type === 'invalid_request_error' ? 400 : undefined;
}

/**
 * Whether an error event's status is the caller's (a 4xx other than 408 and 429): relayed as it
 * came, as such a status is, since every target would refuse the request the same way; and no
 * failure of the target, wherever in the stream it comes, as a 4xx answer is none.
 */
export const callersStatus = (status: number | undefined): boolean => status !== undefined && status >= 400 && status < 500 && !retryableStatus(status);
