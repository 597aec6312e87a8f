import { z } from '@hono/zod-openapi';
import { ErrorBody } from '../schemas/common';

const error = (description: string) => ({ content: { 'application/json': { schema: ErrorBody } }, description });

const header = (description: string, type: 'integer' | 'string' = 'integer') => ({ schema: { type }, description });

// These sets are spread into each route's `responses`, so they are not `as const`: TypeScript
// turns the numeric keys of a readonly object spread beside other members into strings, which
// the route's typed answers (and so AppType's client) then leave out.

/** Answered by the app before any route runs: on every path, authenticated or not. */
export const everyRouteErrors = {
  405: { ...error('method_not_allowed: the path exists, not with this method'), headers: { Allow: header('the methods the path answers', 'string') } },
  431: error('headers_too_large: over 8 KiB in one header or 16 KiB in all'),
};

/** A refused caller: the key or token middleware (and the A2A card) answer with `WWW-Authenticate: Bearer`. */
export const unauthorizedResponse = (description = 'unauthorized: missing, invalid or revoked key') => ({
  ...error(description),
  headers: { 'WWW-Authenticate': { schema: { type: 'string' as const, enum: ['Bearer'] }, description: 'the scheme to authenticate with' } },
});

/** 409 `agent_locked` while a transaction holds the agent: the lock ends at commit, so Retry-After says to come back shortly. */
export const lockedResponse = (description: string) => ({ ...error(description), headers: { 'Retry-After': lockedRetryAfter } });
const lockedRetryAfter = header('agent_locked: seconds to wait before retrying (a transaction holds the agent from prepare to commit)');
/** The same header as a zod field, for a 409 that declares its headers as a schema. */
export const LockedRetryAfter = z.string().regex(/^\d+$/).optional().openapi({ description: lockedRetryAfter.description });

/** A 503 the caller may retry: the error handler always says when, in Retry-After. */
export const unavailableResponse = (description: string, extra: Record<string, string> = {}) => ({
  ...error(description),
  headers: { 'Retry-After': header('seconds to wait'), ...Object.fromEntries(Object.entries(extra).map(([name, about]) => [name, header(about, 'string')])) },
});

/** Error responses every authenticated route can give, in the one envelope. */
export const adminErrors = {
  400: error('invalid_request: the body, a parameter or the query failed validation, or a required body is missing'),
  401: unauthorizedResponse(),
  413: error('payload_too_large: body over 1 MiB'),
  415: error('unsupported_media_type: the body is not JSON, its Content-Type names a charset other than UTF-8, or it has a Content-Encoding'),
  ...everyRouteErrors,
  500: error('internal_error'),
  503: unavailableResponse("agent_unavailable: the agent could not be reached; unavailable: D1 or storage refused for now, or the DNS resolver could not check an outgoing URL's host now; retry after Retry-After"),
};

/** What a tenant's key may be refused for by its limits (docs/ARCHITECTURE.md, "Rate limits and budgets"). */
export const limitedResponse = (description = 'rate_limited: over a rate window or the concurrency cap; budget_exhausted: the request or token budget of the period is used up') => ({
  ...error(description),
  headers: {
    'Retry-After': header('seconds until the request would be admitted'),
    'RateLimit-Limit': header('the limit closest to refusing'),
    'RateLimit-Remaining': header('what is left of it'),
    'RateLimit-Reset': header('seconds until it is whole again'),
  },
});

/** Error responses every route called with a tenant's key can give: the admin's, and its limits. */
export const commonErrors = { ...adminErrors, 429: limitedResponse() };

export const errorResponse = error;

/** Sent with an event stream, so a buffering proxy (nginx) passes each event on as it comes. */
export const streamHeaders = {
  'x-accel-buffering': { schema: { type: 'string' as const, enum: ['no'] }, description: 'with a text/event-stream answer: "no", so a buffering proxy passes events on as they come' },
};

export const json = <T extends z.ZodType>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });

export const jsonBody = <T extends z.ZodType>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });

export const security = [{ bearer: [] }];

/**
 * A read that falls back to the agent's last D1 snapshot while its object cannot be reached
 * (README, "Availability"): the body then says `stale: true`, and this header says so too.
 */
export const staleableJson = <T extends z.ZodType>(schema: T, description: string) => ({
  ...json(schema, description),
  headers: { 'x-gateway-stale': { schema: { type: 'string' as const, enum: ['1'] }, description: '"1" when the body is the last snapshot in D1 (`stale: true`), because the agent could not be reached' } },
});
