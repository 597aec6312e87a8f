import type { z } from '@hono/zod-openapi';
import { ErrorBody } from '../schemas/common';

const error = (description: string) => ({ content: { 'application/json': { schema: ErrorBody } }, description });

/** Error responses every authenticated route can give, in the one envelope. */
export const commonErrors = {
  400: error('invalid_request: the body, a parameter or the query failed validation'),
  401: error('unauthorized: missing, invalid or revoked key'),
  413: error('payload_too_large: body over 1 MiB'),
  415: error('unsupported_media_type: the body is not JSON'),
  500: error('internal_error'),
  503: error('agent_unavailable: the agent could not be reached; unavailable: D1 or storage refused for now; retry after Retry-After'),
} as const;

export const errorResponse = error;

export const json = <T extends z.ZodType>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });

export const jsonBody = <T extends z.ZodType>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });

export const security = [{ bearer: [] }];
