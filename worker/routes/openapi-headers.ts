import type { OpenAPIHono } from '@hono/zod-openapi';

/**
 * Headers that middleware, not routes, read and put on answers: the request id on every one;
 * the RateLimit-* headers of a key with limits on every answer of a route such a key can call;
 * and `x-d1-bookmark` (worker/middleware/d1-session.ts), accepted and answered on every `/v1`
 * operation and on `/mcp`, the routes that middleware runs on (app.ts, routes/mcp.ts). Routes
 * cannot declare them one by one without repeating them on every status, so the document gets
 * them here, as references to one definition each.
 */

interface HeaderObject {
  schema: { type: 'string' | 'integer' };
  description: string;
  required?: boolean;
}
type Reference = { $ref: string };
interface ResponseObject {
  headers?: Record<string, HeaderObject | Reference>;
}
type Document = ReturnType<OpenAPIHono['getOpenAPI31Document']>;
/** The parts of the document this touches (a path item's other members are not operations' shape). */
interface DocumentShape {
  paths?: Record<string, Record<string, { parameters?: unknown[]; responses?: Record<string, ResponseObject> }>>;
  components?: { headers?: Record<string, HeaderObject | Reference>; parameters?: Record<string, unknown> };
}

const METHODS = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options']);
const BOOKMARK = 'x-d1-bookmark';
const BOOKMARK_PARAMETER = {
  in: 'header',
  name: BOOKMARK,
  required: false,
  schema: { type: 'string', maxLength: 256 },
  description:
    'The bookmark a previous response carried: this request reads D1 at least as new as that write (read-your-writes across read replicas). Malformed values are ignored.',
} as const;

const REQUEST_ID = 'x-request-id';
const REQUEST_ID_PARAMETER = {
  in: 'header',
  name: REQUEST_ID,
  required: false,
  schema: { type: 'string', maxLength: 128, pattern: '^[\\w\\-=]+$' },
  description: "the caller's own id for the request, answered in x-request-id and the error envelope's requestId; one that does not fit is replaced by a new UUID",
} as const;

const COMPONENTS: Record<string, HeaderObject> = {
  RequestId: {
    schema: { type: 'string' },
    description: "the request's id (the caller's own `x-request-id` when valid, else a new UUID), also the error envelope's `requestId`",
    required: true,
  },
  RateLimitLimit: { schema: { type: 'integer' }, description: "a key with limits: the limit closest to refusing (requests, or tokens for a token budget alone)" },
  RateLimitRemaining: { schema: { type: 'integer' }, description: 'a key with limits: what is left of it' },
  RateLimitReset: { schema: { type: 'integer' }, description: 'a key with limits: seconds until it is whole again' },
  ShouldRetry: {
    schema: { type: 'string' },
    description:
      '`false` on a refusal the same request cannot get past by being sent again (budget_exhausted, agent_paused, execution_cancelled): OpenAI\'s official clients retry 409 and 429 by default, and obey this header over the status',
  },
  [BOOKMARK]: {
    schema: { type: 'string' },
    description: "The D1 session's latest bookmark, when the request used D1 or sent a bookmark itself (then handed back); send it on the next request.",
  },
};

const ref = (name: string): Reference => ({ $ref: `#/components/headers/${name}` });
const RATE_LIMIT: Record<string, Reference> = {
  'RateLimit-Limit': ref('RateLimitLimit'),
  'RateLimit-Remaining': ref('RateLimitRemaining'),
  'RateLimit-Reset': ref('RateLimitReset'),
};

/**
 * Adds `x-request-id` as a request parameter of every operation and a header of every response, RateLimit-* to every response of an operation that
 * documents 429 (the routes a key's limits apply to), and `x-d1-bookmark` as a request and a
 * response header to every operation with a D1 session, and `x-should-retry` to every 409 and 429
 * (the error handler sets it on the refusals a retry cannot get past). A header a route declares
 * itself (the 429's own RateLimit-*, with its wording) is kept.
 */
export function withMiddlewareHeaders(document: Document): Document {
  const doc = document as DocumentShape;
  for (const [path, members] of Object.entries(doc.paths ?? {})) {
    const inSession = path.startsWith('/v1/') || path === '/mcp';
    for (const [method, operation] of Object.entries(members)) {
      if (!METHODS.has(method)) continue;
      // A CORS preflight (OPTIONS /mcp) is answered before the D1 session middleware.
      const session = inSession && method !== 'options';
      const responses = operation.responses ?? {};
      const limited = '429' in responses;
      // Every request is named by it (requestIds runs before anything else), so every operation takes it.
      operation.parameters = [...(operation.parameters ?? []), { $ref: `#/components/parameters/${REQUEST_ID}` }];
      if (session) operation.parameters = [...operation.parameters, { $ref: `#/components/parameters/${BOOKMARK}` }];
      for (const [status, response] of Object.entries(responses)) {
        const notRetried: Record<string, Reference> = status === '409' || status === '429' ? { 'x-should-retry': ref('ShouldRetry') } : {};
        response.headers = { 'x-request-id': ref('RequestId'), ...(limited ? RATE_LIMIT : {}), ...(session ? { [BOOKMARK]: ref(BOOKMARK) } : {}), ...notRetried, ...response.headers };
      }
    }
  }
  doc.components = {
    ...doc.components,
    headers: { ...doc.components?.headers, ...COMPONENTS },
    parameters: { ...doc.components?.parameters, [BOOKMARK]: BOOKMARK_PARAMETER, [REQUEST_ID]: REQUEST_ID_PARAMETER },
  };
  return document;
}
