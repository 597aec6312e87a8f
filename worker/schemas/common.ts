import { z } from '@hono/zod-openapi';

export const AgentId = z
  .string()
  .regex(/^[a-zA-Z0-9_-]{1,64}$/, 'ids are 1-64 characters of a-z, A-Z, 0-9, _ and -')
  .openapi({ example: 'support-bot' });

/** Ids the gateway makes itself (executions, keys, tenants): same alphabet, bounded. */
export const ResourceId = z.string().regex(/^[a-zA-Z0-9_-]{1,80}$/, 'not a valid id');

export const Metadata = z
  .record(z.string().max(64), z.union([z.string().max(1024), z.number(), z.boolean(), z.null()]))
  .refine((m) => Object.keys(m).length <= 32, 'at most 32 metadata keys')
  .openapi({ example: { team: 'support' } });

export const Limit = z.coerce.number().int().min(1).max(100).default(20);

export const Cursor = z.string().max(512).optional();

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().openapi({ example: 'invalid_request' }),
      message: z.string(),
      requestId: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .openapi('Error');

export const AgentIdParams = z.object({ id: AgentId });

/** A JSON value, bounded in depth by the parser and in size by the body limit. */
export const JsonValue = z.unknown().openapi({ description: 'any JSON value' });

export function page<T extends z.ZodType>(item: T) {
  return z.object({ data: z.array(item), nextCursor: z.string().nullable() });
}

/** The `Idempotency-Key` request header, described for the operation it protects. */
export const idempotencyHeaders = (description: string) =>
  z.object({
    'idempotency-key': z
      .string()
      .min(1)
      .max(255)
      .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
      .optional()
      .openapi({ description }),
  });
