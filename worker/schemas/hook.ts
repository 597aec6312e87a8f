import { z } from '@hono/zod-openapi';
import { AgentId } from './common';
import { Intent } from './execution';
import { STANDARD_SECRET, STANDARD_SECRET_RULE } from './webhook';

export const HookId = z.string().regex(/^[a-zA-Z0-9_-]{8,64}$/, 'hook ids are 8-64 characters of a-z, A-Z, 0-9, _ and -: they are part of a public URL');

export const HookScheme = z.enum(['standard', 'github', 'stripe']);
export type HookScheme = z.infer<typeof HookScheme>;

export const PutHookBody = z
  .object({
    agentId: AgentId,
    intent: Intent,
    scheme: HookScheme,
    secret: z.string().min(16).max(512).openapi({ description: 'the signing secret the sender uses (whsec_… for standard and stripe)' }),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.scheme === 'standard' && !STANDARD_SECRET.test(b.secret)) {
      ctx.addIssue({ code: 'custom', path: ['secret'], message: STANDARD_SECRET_RULE });
    }
  })
  .openapi('PutHook');
export type PutHookBody = z.infer<typeof PutHookBody>;

export const Hook = z
  .object({
    id: HookId,
    agentId: AgentId,
    intent: Intent,
    scheme: HookScheme,
    url: z.string(),
    createdAt: z.string(),
    updatedAt: z.string(),
    keyId: z.string().nullable().openapi({
      description: "the API key that registered or last replaced the hook, whose limits its deliveries count against; null for a hook registered before keys were recorded (until it is PUT again)",
    }),
    keyRevoked: z.boolean().nullable().openapi({
      description: 'whether that key is revoked now (null when keyId is): the hook still accepts deliveries; PUT it with a live key and a new secret, or DELETE it, to act on it',
    }),
  })
  .openapi('Hook');
export type Hook = z.infer<typeof Hook>;

/** Hooks come a page at a time, as agents do. */
export const HookListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20).openapi({ description: 'hooks per page, 1-100 (default 20)' }),
  cursor: z.string().max(512).optional().openapi({ description: 'the nextCursor of the previous page' }),
  agentId: AgentId.optional().openapi({ description: "only this agent's hooks" }),
});

export const HookAccepted = z
  .object({ executionId: z.string(), status: z.string(), duplicate: z.boolean() })
  .openapi('HookAccepted');
