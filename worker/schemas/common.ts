import { z } from '@hono/zod-openapi';
import { MAX_JSON_DEPTH, jsonLimitProblem, jsonShapeProblem } from '../lib/json-limits';

export const AgentId = z
  .string()
  .regex(/^[a-zA-Z0-9_-]{1,64}$/, 'ids are 1-64 characters of a-z, A-Z, 0-9, _ and -')
  .openapi({ example: 'support-bot' });

/** Ids the gateway makes itself (executions, keys, tenants): same alphabet, bounded. */
export const ResourceId = z.string().regex(/^[a-zA-Z0-9_-]{1,80}$/, 'not a valid id');

/**
 * Metadata refuses a member named "__proto__" before the record is read: zod's record skips
 * that name, so the key was answered 201 and then lost.
 */
const refuseProtoKey = (value: unknown, ctx: { addIssue: (issue: { code: 'custom'; message: string; input: unknown }) => void }): unknown => {
  if (value !== null && typeof value === 'object' && Object.hasOwn(value, '__proto__')) ctx.addIssue({ code: 'custom', message: 'the key "__proto__" is not allowed', input: value });
  return value;
};

const KEY_NAMES = { propertyNames: { maxLength: 64 } };

export const Metadata = z.preprocess(
  refuseProtoKey,
  z
    .record(z.string().max(64), z.union([z.string().max(1024), z.number(), z.boolean(), z.null()]))
    .refine((m) => Object.keys(m).length <= 32, 'at most 32 metadata keys')
    // The refinement's bound and the key's, for the document (the generator reads neither).
    // propertyNames is JSON Schema 2020-12 (OpenAPI 3.1), which the generator's 3.0 types lack.
    .openapi({ example: { team: 'support' }, maxProperties: 32, ...(KEY_NAMES as object) }),
);

/**
 * An http or https URL, as upstreams and webhooks take. The pattern says the scheme for the
 * document, where "format: uri" alone allows every scheme (ftp:, file:), which the URL check refuses.
 */
export const HttpUrl = z.url({ protocol: /^https?$/ }).max(2048).openapi({ pattern: '^[Hh][Tt][Tt][Pp][Ss]?:', description: 'an http or https URL' });

export const Limit = z.coerce.number().int().min(1).max(100).default(20);

export const Cursor = z.string().max(512).optional();

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'invalid_request' }),
      message: z.string(),
      requestId: z.string(),
      type: z.string().openapi({
        example: 'invalid_request_error',
        description: "the error's kind as OpenAI's clients read it (APIError.type), from the status: invalid_request_error (400, 405, 412, 413, 415, 422, 426, 431), authentication_error (401), permission_error (403), not_found_error (404), conflict_error (409), rate_limit_error (429), server_error (5xx)",
      }),
      param: z.string().nullable().openapi({ example: 'messages', description: "the field a validation failure is about (APIError.param): the first `details[].path` joined with '.'; else null" }),
      details: z.unknown().optional().openapi({
        description: "present only when the error has details: for a body, parameter, query or header that failed validation (invalid_request), its issues, [{path, message, code}], the first 20 (the message then ends `; and N more issues` when there were more); else, as a rule, an object such as {executionId} or {keyId, revokedAt}",
      }),
    }),
  })
  .openapi('Error');

export const AgentIdParams = z.object({ id: AgentId });

/**
 * Free-form JSON bounded in nesting depth and serialized size (UTF-8 bytes), so nothing a
 * client sends can exceed a storage row or make a walk over it expensive.
 */
export function boundedJson<T extends z.ZodType>(schema: T, maxBytes: number, maxDepth = MAX_JSON_DEPTH) {
  return schema.superRefine((value, ctx) => {
    const problem = jsonLimitProblem(value, { maxBytes, maxDepth });
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

/**
 * Free-form JSON bounded in nesting depth, for a body whose size the request body limit
 * already bounds (serializing it again to count its bytes would cost more than the check), and
 * without a number beyond a double's range, which would be passed on as null (the same walk).
 */
export function boundedDepth<T extends z.ZodType>(schema: T, maxDepth = MAX_JSON_DEPTH) {
  return schema.superRefine((value, ctx) => {
    const problem = jsonShapeProblem(value, maxDepth, 'a number is beyond the range of a double (such as 1e400): it would be passed on as null');
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

/** Largest execution input: its row also holds the output (≤ 1 MiB), under the 2 MB limit. */
export const MAX_INPUT_BYTES = 256 * 1024;

/** A JSON value, bounded in depth and size. */
export const JsonValue = boundedJson(z.unknown(), MAX_INPUT_BYTES).openapi({ description: `any JSON value (at most ${MAX_INPUT_BYTES} bytes, ${MAX_JSON_DEPTH} levels deep)` });

export function page<T extends z.ZodType>(item: T) {
  return z.object({ data: z.array(item), nextCursor: z.string().nullable() });
}

/**
 * An idempotency key: what the `Idempotency-Key` header and MCP's `idempotencyKey` accept. Keys
 * beginning `hook:` are an incoming hook's deliveries' (`worker/hooks/start.ts`), in the same
 * per-agent namespace: a caller who could send one could claim a delivery before it arrived.
 */
export const IdempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
  .refine((key) => !key.startsWith('hook:'), 'keys beginning with "hook:" are reserved for incoming hooks\' deliveries');

/** What IdempotencyKey accepts, for descriptions. */
export const IDEMPOTENCY_KEY_RULE = '1–255 printable ASCII characters without spaces, not beginning hook: (400 otherwise)';

/** The `Idempotency-Key` request header, described for the operation it protects. */
export const idempotencyHeaders = (description: string) =>
  z.object({
    // The reserved prefix is said in words: a lookahead in the pattern would be lost on the
    // regex engines of many generated clients.
    'idempotency-key': IdempotencyKey.optional().openapi({ description: `${description}; ${IDEMPOTENCY_KEY_RULE}` }),
  });

/**
 * Response headers of a write that takes an `Idempotency-Key` and names what it made: where to
 * read it, and whether this answer is the recorded one of an earlier request with that key.
 */
export const writtenHeaders = (what: string, example: string) =>
  z.object({
    location: z.string().openapi({ description: `where to read ${what}`, example }),
    'idempotent-replayed': z.enum(['true']).optional().openapi({ description: 'present when this is the recorded answer to an earlier request with the same Idempotency-Key' }),
  });

/** `ETag` of a versioned document: its version, quoted, to send back in `If-Match`. */
export const VersionETagHeaders = z.object({ etag: z.string().openapi({ description: 'the version, quoted; send it back in If-Match to make a PATCH conditional', example: '"3"' }) });
