import { z } from '@hono/zod-openapi';

export const CreateTenantBody = z
  .object({ name: z.string().min(1).max(200).optional(), id: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/).optional() })
  .strict()
  .openapi('CreateTenant');

export const Tenant = z.object({ id: z.string(), name: z.string().nullable(), createdAt: z.iso.datetime() }).openapi('Tenant');

export const CreateKeyBody = z
  .object({ name: z.string().min(1).max(200).optional() })
  .strict()
  .openapi('CreateKey');

export const CreatedKey = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    key: z.string().openapi({ description: 'the secret key; shown only in this response' }),
    prefix: z.string(),
    name: z.string().nullable(),
    createdAt: z.iso.datetime(),
  })
  .openapi('CreatedKey');

export const TenantParams = z.object({ tenant: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/) });
export const KeyParams = z.object({ keyId: z.string().regex(/^[a-zA-Z0-9_-]{1,80}$/) });
