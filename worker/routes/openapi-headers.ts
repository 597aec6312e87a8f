import type { OpenAPIHono } from '@hono/zod-openapi';

/**
 * Response headers that middleware, not routes, put on answers: the request id on every one,
 * and the RateLimit-* headers of a key with limits on every answer of a route such a key can
 * call. Routes cannot declare them one by one without repeating them on every status, so the
 * document gets them here, as references to one definition each.
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
  paths?: Record<string, Record<string, { responses?: Record<string, ResponseObject> }>>;
  components?: { headers?: Record<string, HeaderObject | Reference> };
}

const COMPONENTS: Record<string, HeaderObject> = {
  RequestId: {
    schema: { type: 'string' },
    description: "the request's id (the caller's own `x-request-id` when valid, else a new UUID), also the error envelope's `requestId`",
    required: true,
  },
  RateLimitLimit: { schema: { type: 'integer' }, description: "a key with limits: the limit closest to refusing (requests, or tokens for a token budget alone)" },
  RateLimitRemaining: { schema: { type: 'integer' }, description: 'a key with limits: what is left of it' },
  RateLimitReset: { schema: { type: 'integer' }, description: 'a key with limits: seconds until it is whole again' },
};

const ref = (name: string): Reference => ({ $ref: `#/components/headers/${name}` });
const RATE_LIMIT: Record<string, Reference> = {
  'RateLimit-Limit': ref('RateLimitLimit'),
  'RateLimit-Remaining': ref('RateLimitRemaining'),
  'RateLimit-Reset': ref('RateLimitReset'),
};

/**
 * Adds `x-request-id` to every response, and RateLimit-* to every response of an operation
 * that documents 429 (the routes a key's limits apply to). A header a route declares itself
 * (the 429's own RateLimit-*, with its wording) is kept.
 */
export function withMiddlewareHeaders(document: Document): Document {
  const doc = document as DocumentShape;
  for (const methods of Object.values(doc.paths ?? {})) {
    for (const operation of Object.values(methods)) {
      const responses = operation.responses ?? {};
      const limited = '429' in responses;
      for (const response of Object.values(responses)) {
        response.headers = { 'x-request-id': ref('RequestId'), ...(limited ? RATE_LIMIT : {}), ...response.headers };
      }
    }
  }
  doc.components = { ...doc.components, headers: { ...doc.components?.headers, ...COMPONENTS } };
  return document;
}
