import { z } from '@hono/zod-openapi';

const Count = (max: number) => z.number().int().min(1).max(max);

export const BudgetPeriod = z.enum(['day', 'month']).openapi({ description: 'calendar day or month in UTC' });

export const KeyBudget = z
  .object({
    requests: Count(1_000_000_000).optional().openapi({ description: 'requests that call an upstream (chat completions, executions) per period' }),
    tokens: Count(1_000_000_000_000).optional().openapi({ description: 'upstream tokens per period (usage.total_tokens)' }),
    period: BudgetPeriod,
  })
  .strict()
  .refine((b) => b.requests !== undefined || b.tokens !== undefined, { message: 'a budget needs requests or tokens' })
  .openapi('KeyBudget', { anyOf: [{ required: ['requests'] }, { required: ['tokens'] }], description: 'needs requests, tokens or both' });

/** Limits of one API key. Every field is optional; an absent field is not limited. */
export const KeyLimits = z
  .object({
    perSecond: Count(100_000).optional().openapi({ description: 'requests per second (GCRA: a burst of this many, then one every 1/n s)' }),
    perMinute: Count(6_000_000).optional().openapi({ description: 'requests per minute (GCRA)' }),
    concurrency: Count(10_000).optional().openapi({ description: 'requests calling an upstream in flight at once' }),
    budget: KeyBudget.optional(),
    shards: Count(16).optional().openapi({ description: 'split the rate windows (perSecond, perMinute: one is required with it) over this many objects for a hot key, each allowing limit/shards and at least 1 (so never more shards than the smaller window); budgets and concurrency stay exact in one' }),
  })
  .strict()
  .openapi('KeyLimits');
export type KeyLimits = z.infer<typeof KeyLimits>;

/**
 * What a key's new limits set that enforces nothing, as validation issues. `shards` only splits
 * the rate windows, so without one it would show a key as limited that is not. Checked where
 * limits are created or changed, not in KeyLimits: a key stored so before is still read.
 */
export function idleLimits(limits: KeyLimits): { path: string[]; message: string; code: 'custom' }[] {
  if (limits.shards === undefined || limits.perSecond !== undefined || limits.perMinute !== undefined) return [];
  return [{ path: ['limits', 'shards'], message: 'shards splits the rate windows: set perSecond or perMinute with it, or leave it out', code: 'custom' }];
}

/**
 * A key's limits or null (none). A union, not KeyLimits.nullable(): on a registered schema the
 * generator made the KeyLimits component itself nullable, so the document let a key be created
 * with `"limits": null`, which the API refuses.
 */
export const KeyLimitsOrNull = z.union([KeyLimits, z.null()]);

const Nullable = <T extends z.ZodType>(schema: T) => schema.nullable().optional();

/** A JSON Merge Patch of a key's limits: a member set to null is removed. */
export const KeyLimitsPatch = z
  .object({
    perSecond: Nullable(Count(100_000)),
    perMinute: Nullable(Count(6_000_000)),
    concurrency: Nullable(Count(10_000)),
    budget: Nullable(
      z.object({ requests: Nullable(Count(1_000_000_000)), tokens: Nullable(Count(1_000_000_000_000)), period: Nullable(BudgetPeriod) }).strict(),
    ),
    shards: Nullable(Count(16)),
  })
  .strict()
  .openapi('KeyLimitsPatch');

/** What a key has used of its limits (GET /v1/usage). */
export const KeyUsage = z
  .object({
    limits: KeyLimitsOrNull,
    inFlight: z.number().int().nullable(),
    budget: z
      .object({ period: BudgetPeriod, periodStart: z.iso.datetime(), resetsAt: z.iso.datetime(), requests: z.number().int(), tokens: z.number().int().openapi({ description: "upstream tokens settled this period: chat completions', and executions' only with a token budget" }), reservedTokens: z.number().int() })
      .nullable(),
  })
  .openapi('KeyUsage');
export type KeyUsage = z.infer<typeof KeyUsage>;
