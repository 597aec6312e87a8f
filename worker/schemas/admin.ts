import { z } from '@hono/zod-openapi';
import { DisplayName } from './display-name';
import { KeyLimits, KeyLimitsOrNull, KeyLimitsPatch } from './limits';

export const CreateTenantBody = z
  .object({ name: DisplayName.optional(), id: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/).optional() })
  .strict()
  .openapi('CreateTenant');

export const Tenant = z.object({ id: z.string(), name: z.string().nullable(), createdAt: z.iso.datetime() }).openapi('Tenant');

export const CreateKeyBody = z
  .object({ name: DisplayName.optional(), limits: KeyLimits.optional() })
  .strict()
  .openapi('CreateKey');

export const UpdateKeyBody = z
  .object({
    name: DisplayName.nullable().optional(),
    limits: KeyLimitsPatch.nullable().optional().openapi({ description: 'JSON Merge Patch of the limits; null removes them all. The limits it leaves are checked as at creation: a budget needs requests or tokens, shards needs perSecond or perMinute' }),
  })
  .strict()
  // As for agents: an empty update changed nothing yet answered 200 and left a key.update entry.
  .refine((b) => Object.keys(b).length > 0, 'nothing to update')
  .openapi('UpdateKey', { minProperties: 1 });

export const KeySummary = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    prefix: z.string(),
    name: z.string().nullable(),
    limits: KeyLimitsOrNull,
    createdAt: z.string(),
    revokedAt: z.string().nullable(),
  })
  .openapi('KeySummary');

export const CreatedKey = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    key: z.string().openapi({ description: 'the secret key; shown only in this response' }),
    prefix: z.string(),
    name: z.string().nullable(),
    limits: KeyLimitsOrNull,
    createdAt: z.iso.datetime(),
  })
  .openapi('CreatedKey');

export const TenantListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional(),
});

/** Keys come a page at a time; the default page holds as many as the list held before it paged. */
export const KeyListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(1000).default(1000),
  cursor: z.string().max(512).optional(),
});

export const TenantParams = z.object({ tenant: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/) });
export const KeyParams = z.object({ keyId: z.string().regex(/^[a-zA-Z0-9_-]{1,80}$/) });

/**
 * Every action the log records (README, "Rate limits, budgets and the audit log"). A filter by
 * another (a typo, `agent.updat`) matched nothing and answered an empty 200, as if nothing had
 * been done; it is 400, naming these.
 */
export const AuditAction = z
  .enum([
    'tenant.create', 'key.create', 'key.update', 'key.revoke', 'pool.put', 'pool.delete', 'hook.put', 'hook.delete',
    'webhook.create', 'webhook.delete', 'push.put', 'push.delete', 'agent.create', 'agent.update', 'agent.delete', 'transaction.resolve',
  ]);
export type AuditAction = z.infer<typeof AuditAction>;

export const AuditQuery = z.object({
  tenant: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/).optional(),
  action: AuditAction.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(512).optional(),
});

export const AuditRecord = z
  .object({
    id: z.string(),
    at: z.iso.datetime(),
    actor: z.string().openapi({ description: '"operator" or the id of the API key that acted' }),
    tenantId: z.string().nullable(),
    action: z.string().openapi({ example: 'key.create' }),
    target: z.string().nullable(),
    requestId: z.string().nullable(),
    details: z.record(z.string(), z.unknown()).nullable(),
  })
  .openapi('AuditRecord');
