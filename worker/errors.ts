import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { ZodError } from 'zod';
import { boundedIssues, issuesMessage, zodIssues, type Issue } from './lib/validation-issues';

/**
 * Every error the API can answer with, and its HTTP status. The codes are public API:
 * clients branch on them, so add new ones rather than renaming.
 */
export const ERROR_STATUS = {
  invalid_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  already_finished: 409,
  execution_cancelled: 409,
  agent_paused: 409,
  agent_locked: 409,
  guard_failed: 409,
  pool_limit_reached: 409,
  webhook_limit_reached: 409,
  version_mismatch: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  headers_too_large: 431,
  idempotency_key_reused: 422,
  upgrade_required: 426,
  rate_limited: 429,
  budget_exhausted: 429,
  too_many_streams: 429,
  upstream_failed: 502,
  agent_unavailable: 503,
  unavailable: 503,
  upstream_timeout: 504,
  internal_error: 500,
} as const satisfies Record<string, ContentfulStatusCode>;

export type ErrorCode = keyof typeof ERROR_STATUS;

/**
 * The Retry-After of a 409 `agent_locked` that waiting gets past: a transaction holds the agent
 * from prepare to commit, milliseconds as a rule (its deadline bounds it).
 */
export const LOCK_RETRY_AFTER_S = 1;

/** An expected failure, carried as data (it has to cross Durable Object RPC intact). */
export interface Failure {
  ok: false;
  code: ErrorCode;
  message: string;
  details?: unknown;
}

export type Result<T> = { ok: true; value: T } | Failure;

export const ok = <T>(value: T): Result<T> => ({ ok: true, value });

export const fail = (code: ErrorCode, message: string, details?: unknown): Failure =>
  details === undefined ? { ok: false, code, message } : { ok: false, code, message, details };

/** The one error type of the edge: thrown anywhere, rendered by the app's error handler. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly status: ContentfulStatusCode;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.status = ERROR_STATUS[code];
  }

  static from(failure: Failure): ApiError {
    // A refusal that says when to come back (an agent's budget refusal, a transaction's lock) says it in the header too.
    const retryAfter = (failure.details as { retryAfter?: unknown } | undefined)?.retryAfter;
    const comesBack = ERROR_STATUS[failure.code] === 429 || failure.code === 'agent_locked';
    const headers = comesBack && typeof retryAfter === 'number' ? { 'retry-after': String(retryAfter) } : undefined;
    return new ApiError(failure.code, failure.message, failure.details, headers);
  }
}

/**
 * Issues found in a request as the one `invalid_request` error, each with its path: at most
 * `MAX_ISSUES` of them, each cut to size, the message saying how many of `total` were left out.
 */
export function invalidRequest(issues: readonly Issue[], total = issues.length): ApiError {
  const shown = boundedIssues(issues);
  return new ApiError('invalid_request', issuesMessage(shown, Math.max(total, issues.length)), shown);
}

/** A failed validation as the one `invalid_request` error, each issue with its path. */
export function validationError(error: ZodError): ApiError {
  return invalidRequest(zodIssues(error), error.issues.length);
}

/**
 * A route whose body the OpenAPI document marks required, called without one: the same
 * `invalid_request` as a body that fails validation, with one issue at the body's root.
 */
export function missingBodyError(): ApiError {
  const message = 'request body is missing: this route needs a JSON body (Content-Type: application/json)';
  return new ApiError('invalid_request', message, [{ path: [], message, code: 'missing_body' }]);
}

/** Returns the value of a successful result, or throws its failure as an ApiError. */
export function unwrap<T>(result: Result<T>): T {
  if (result.ok) return result.value;
  throw ApiError.from(result);
}

/**
 * The error's kind as OpenAI's clients read it (`APIError.type`), named from the status as
 * OpenAI-style APIs name them; `code` stays the gateway's own, finer name.
 */
const ERROR_TYPES: Partial<Record<number, string>> = {
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'conflict_error',
  429: 'rate_limit_error',
};

export const errorType = (status: number): string => ERROR_TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error');

/** The field a validation failure is about (`APIError.param`): its first issue's path, dotted; else null. */
export function errorParam(details: unknown): string | null {
  const first: unknown = Array.isArray(details) ? details[0] : undefined;
  if (typeof first !== 'object' || first === null || !('path' in first) || !Array.isArray(first.path) || !('code' in first)) return null;
  return first.path.length > 0 ? first.path.map(String).join('.') : null;
}

export interface ErrorEnvelope {
  error: { code: ErrorCode; message: string; requestId: string; type: string; param: string | null; details?: unknown };
}

export function envelope(error: ApiError, requestId: string): ErrorEnvelope {
  const body: ErrorEnvelope['error'] = { code: error.code, message: error.message, requestId, type: errorType(error.status), param: errorParam(error.details) };
  if (error.details !== undefined) body.details = error.details;
  return { error: body };
}
