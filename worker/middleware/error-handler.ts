import type { Context, ErrorHandler, NotFoundHandler } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { AppEnv } from '../env';
import { ApiError, envelope, missingBodyError, type ErrorCode } from '../errors';
import { isPlatformError, isTransientStorageError, type DurableObjectError } from '../lib/storage-errors';

const HTTP_CODES: Partial<Record<number, ErrorCode>> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  431: 'headers_too_large',
};

/**
 * Maps whatever was thrown to the one error type. A transient failure of D1, storage or a
 * Durable Object is a 503 with Retry-After (the client's retry is what helps, not a bug report); other unknown
 * errors are 500s. Both are logged, never echoed.
 */
export function toApiError(error: unknown, requestId: string): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof HTTPException) {
    const code = HTTP_CODES[error.status];
    if (code === 'invalid_request') return new ApiError(code, error.message.includes('JSON') ? 'request body is not valid JSON' : error.message || 'invalid request');
    if (code) return new ApiError(code, error.message || code.replaceAll('_', ' '));
  }
  if (isTransientStorageError(error)) {
    console.warn(JSON.stringify({ level: 'warn', msg: 'storage unavailable', requestId, error: String(error) }));
    return new ApiError('unavailable', 'storage is temporarily unavailable; retry later', undefined, { 'retry-after': '1' });
  }
  // A Durable Object the route called without a mapping of its own (a transaction's
  // coordinator, a key's limiter) being reset, unreachable or overloaded is the platform's
  // moment, not a bug: the client's retry reaches a fresh instance.
  if (isPlatformError(error)) {
    const overloaded = (error as DurableObjectError).overloaded === true;
    console.warn(JSON.stringify({ level: 'warn', msg: 'object unavailable', requestId, overloaded, error: String(error) }));
    return new ApiError('unavailable', overloaded ? 'a Durable Object is overloaded; retry later' : 'a Durable Object is temporarily unreachable; retry later', undefined, { 'retry-after': overloaded ? '2' : '1' });
  }
  console.error(JSON.stringify({ level: 'error', msg: 'unhandled error', requestId, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error), stack: error instanceof Error ? error.stack : undefined }));
  return new ApiError('internal_error', 'internal error');
}

/**
 * Refusals that the same request, sent again, cannot turn into a success, though their status
 * is one that OpenAI's official clients (and other Stainless-generated SDKs) retry by default
 * (409, 429): a used-up budget (its Retry-After is the next period, which such a client sleeps
 * out, hours or days), a paused agent, and a chat turn cancelled while its caller waited (a
 * retry would run the cancelled turn again). `x-should-retry: false` is the header those
 * clients obey over the status.
 */
const NOT_RETRIED: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['budget_exhausted', 'agent_paused', 'execution_cancelled']);

export function renderError(c: Context<AppEnv>, error: ApiError): Response {
  const requestId = c.get('requestId') ?? '';
  const headers = NOT_RETRIED.has(error.code) ? { ...error.headers, 'x-should-retry': 'false' } : error.headers;
  return c.json(envelope(error, requestId), error.status, headers);
}

/** Hono's refusal of a JSON body it could not parse, for an empty one: the body is missing, not malformed. */
const emptyJsonBody = (error: unknown, c: Context<AppEnv>) =>
  error instanceof HTTPException && error.status === 400 && error.message.includes('JSON') && c.req.header('content-length') === '0';

/**
 * zod-openapi's refusal of a body whose Content-Type no route declares says only "Unsupported
 * Media Type". The commonest cause is curl's `-d` without a Content-Type (it sends
 * application/x-www-form-urlencoded), so the message says what to send and what came.
 */
function wrongMediaType(error: unknown, c: Context<AppEnv>): ApiError | undefined {
  if (!(error instanceof HTTPException) || error.status !== 415) return undefined;
  const sent = c.req.header('content-type');
  const came = sent === undefined ? 'without a Content-Type' : `as ${JSON.stringify(sent)}`;
  return new ApiError('unsupported_media_type', `the request body must be JSON, sent with "Content-Type: application/json"; this one came ${came}`);
}

export const onError: ErrorHandler<AppEnv> = (error, c) =>
  renderError(c, emptyJsonBody(error, c) ? missingBodyError() : (wrongMediaType(error, c) ?? toApiError(error, c.get('requestId') ?? '')));

/** How much of an unknown path (or method) a 404 repeats: a path can be as long as a URL may be. */
const SHOWN_PATH_CHARS = 200;

/** The first `SHOWN_PATH_CHARS` of `text`, marked as cut when there was more. */
function shown(text: string): string {
  if (text.length <= SHOWN_PATH_CHARS) return text;
  // Not between the halves of a surrogate pair: the cut would leave half a character.
  const high = text.charCodeAt(SHOWN_PATH_CHARS - 1);
  const at = high >= 0xd800 && high <= 0xdbff ? SHOWN_PATH_CHARS - 1 : SHOWN_PATH_CHARS;
  return `${text.slice(0, at)}… [cut: ${text.length - at} more characters]`;
}

/** `path` without its trailing slashes; a loop, since /\/+$/ backtracks quadratically on a long run of slashes. */
function withoutTrailingSlashes(path: string): string {
  let end = path.length;
  while (end > 0 && path.charCodeAt(end - 1) === 0x2f) end -= 1;
  return path.slice(0, end);
}

export const onNotFound: NotFoundHandler<AppEnv> = (c) => {
  const method = shown(c.req.method);
  const path = shown(c.req.path);
  // Routes are strict about a trailing slash; a client that adds one gets told, not just refused.
  // The slashless path is named without the method: it may take another (POST only, say).
  const hint =
    path === '/'
      ? // Where a browser pointed at the printed address lands first.
        ': the API is under /v1; its reference is at /docs, its OpenAPI document at /openapi.json, the dashboard at /dashboard'
      : path === '/v1' || path === '/v1/'
        ? // Where that hint leads next: /v1 itself is no route, and its slashless form would be no help.
          ': the API\'s routes are below /v1 (GET /v1/agents lists your agents); its reference is at /docs, its OpenAPI document at /openapi.json'
      : c.req.path.endsWith('/')
        ? `: paths take no trailing slash (${shown(withoutTrailingSlashes(c.req.path))})`
        : '';
  return renderError(c, new ApiError('not_found', `no route for ${method} ${path}${hint}`));
};
