import { z } from '@hono/zod-openapi';
import { ContextPatch } from './agent';
import { AgentId, ResourceId } from './common';

/** Most agents one transaction may touch: bounds the coordinator's fan-out and lock set. */
export const MAX_TRANSACTION_AGENTS = 16;

const TopLevelKey = z.string().min(1).max(256);
const keyCount = (m: Record<string, number>) => Object.keys(m).length >= 1 && Object.keys(m).length <= 32;

/**
 * zod drops a `__proto__` key (it could become a prototype), so a map whose only key it was
 * reached the count as empty and was refused as "1 to 32 keys", which named nothing the
 * client sent. Said here, before the record parses it away; beside other keys it is still
 * dropped, as README documents.
 */
const namingProto = <T extends z.ZodType>(field: string, map: T) =>
  // Typed by what the map accepts, or the typed client would see `unknown` here.
  z.preprocess<unknown, T, z.input<T>>((input, ctx) => {
    const raw: unknown = input;
    if (raw !== null && typeof raw === 'object' && Object.hasOwn(raw, '__proto__') && Object.keys(raw).length === 1) {
      ctx.addIssue({ code: 'custom', path: ['__proto__'], input: raw, message: `"__proto__" is not accepted as a key (it could become a prototype, so it is dropped), and ${field} needs 1 to 32 other keys` });
    }
    return raw;
  }, map);

const Numbers = z
  .record(TopLevelKey, z.number())
  .refine(keyCount, '1 to 32 keys')
  // The refinement's bounds, for the document (the generator cannot read them from it).
  .openapi({ minProperties: 1, maxProperties: 32 });
/**
 * Beyond 2^53 - 1 a double no longer holds every integer: such an amount may already differ
 * from the one the client sent (JSON reads 2^53 + 1 as 2^53), and adding it cannot be exact.
 * Below 2^-1022 (subnormal) a double holds ever fewer digits, so there too an amount of a few
 * digits may already have been rounded on reading.
 */
const SMALLEST_NORMAL = 2 ** -1022;
const Amount = z
  .number()
  .min(-Number.MAX_SAFE_INTEGER, 'increments are within ±(2^53 - 1), where numbers are exact')
  .max(Number.MAX_SAFE_INTEGER, 'increments are within ±(2^53 - 1), where numbers are exact')
  .refine((n) => n === 0 || Math.abs(n) >= SMALLEST_NORMAL, 'a nonzero increment is at least 2.2250738585072014e-308 (2^-1022) in magnitude: below, a double cannot hold the amount sent');
const Increments = z
  .record(TopLevelKey, Amount)
  .refine(keyCount, '1 to 32 keys')
  .openapi({ minProperties: 1, maxProperties: 32 });

/** What one participant is asked to do; the part of an operation an AgentDO sees. */
export const ParticipantOperation = z.object({
  patch: ContextPatch.optional().openapi({ description: 'JSON Merge Patch (RFC 7396) applied to the context' }),
  increment: namingProto('an increment', Increments).optional().openapi({ description: 'added to top-level numeric keys after the patch (a missing key counts as 0); amounts and results within ±(2^53 - 1), added in decimal as JSON writes the numbers (0.2 + 0.1 is 0.3); a sum no number holds exactly (100 + 1e-20) aborts the transaction', example: { balance: -30 } }),
  min: namingProto('a min', Numbers).optional().openapi({ description: 'guards: the transaction aborts if a key would end below its minimum (a missing key counts as 0)', example: { balance: 0 } }),
  ifVersion: z.number().int().min(0).optional().openapi({ description: 'abort unless the context is at exactly this version' }),
});
export type ParticipantOperation = z.infer<typeof ParticipantOperation>;

export const TransactionOperation = ParticipantOperation.extend({ agentId: AgentId })
  .strict()
  .refine((op) => op.patch !== undefined || op.increment !== undefined, 'an operation needs a patch, an increment, or both')
  .openapi({ description: 'needs a patch, an increment, or both; one operation per agent', anyOf: [{ required: ['patch'] }, { required: ['increment'] }] });
export type TransactionOperation = z.infer<typeof TransactionOperation>;

export const CreateTransactionBody = z
  .object({
    operations: z
      .array(TransactionOperation)
      .min(1)
      .max(MAX_TRANSACTION_AGENTS)
      .superRefine((ops, ctx) => {
        const seen = new Set<string>();
        ops.forEach((op, i) => {
          if (seen.has(op.agentId)) ctx.addIssue({ code: 'custom', path: [i, 'agentId'], message: `agent ${op.agentId} appears twice; one operation per agent` });
          seen.add(op.agentId);
        });
      }),
    timeoutMs: z.number().int().min(100).max(30_000).default(5_000).openapi({ description: 'phase one must finish within this time, or the transaction aborts' }),
  })
  .strict()
  .openapi('CreateTransaction', {
    example: {
      operations: [
        { agentId: 'wallet-a', increment: { balance: -30 }, min: { balance: 0 } },
        { agentId: 'wallet-b', increment: { balance: 30 } },
      ],
    },
  });
export type CreateTransactionBody = z.infer<typeof CreateTransactionBody>;

export const TransactionStatus = z.enum(['preparing', 'committed', 'aborted']);
export type TransactionStatus = z.infer<typeof TransactionStatus>;

/** Why a transaction aborted: a participant's refusal, or the coordinator giving up. */
export const AbortReason = z.enum([
  'version_mismatch', 'agent_locked', 'guard_failed', 'invalid_request', 'not_found', 'payload_too_large', 'conflict', 'timeout', 'agent_unavailable', 'unavailable', 'internal_error',
]);
export type AbortReason = z.infer<typeof AbortReason>;

/**
 * On an answer given before every participant acknowledged the decision (one slow to answer):
 * the decision stands; GET shows which participants have not applied it yet.
 */
const Pending = z.literal(false).optional().openapi({
  description: 'present (false) when a participant had not yet applied the decision when the answer left: the decision stands, the coordinator goes on telling it, and GET shows its acknowledgement',
});

export const TransactionCommitted = z
  .object({ id: z.string(), status: z.literal('committed'), versions: z.record(z.string(), z.number().int()), completed: Pending })
  .openapi('TransactionCommitted');

export const TransactionAborted = z
  .object({ id: z.string(), status: z.literal('aborted'), reason: AbortReason, agentId: AgentId.optional(), message: z.string().optional(), completed: Pending })
  .openapi('TransactionAborted');

export const Transaction = z
  .object({
    id: z.string(),
    status: TransactionStatus,
    completed: z.boolean().openapi({ description: 'every participant has acknowledged the decision' }),
    versions: z.record(z.string(), z.number().int()).optional(),
    reason: AbortReason.optional(),
    agentId: AgentId.optional(),
    message: z.string().optional(),
    participants: z.array(
      z.object({
        agentId: AgentId,
        vote: z.enum(['yes', 'no']).nullable(),
        acknowledged: z.boolean(),
        heuristicMismatch: z.literal(true).optional().openapi({
          description: "present when an operator resolved this agent's lock while the coordinator could not answer, with the other outcome: the agent kept the operator's outcome and acknowledged this one",
        }),
      }),
    ),
    createdAt: z.iso.datetime(),
    decidedAt: z.iso.datetime().optional(),
    completedAt: z.iso.datetime().optional(),
  })
  .openapi('Transaction');
export type Transaction = z.infer<typeof Transaction>;

export const TransactionParams = z.object({ id: ResourceId });

/** An agent's lock as an operator sees it: which transaction holds it and how asking its coordinator went. */
export const TransactionLock = z
  .object({
    transactionId: z.string(),
    coordinator: z.string().openapi({ description: "the coordinator's Durable Object name, which the agent asks for the decision" }),
    since: z.iso.datetime().openapi({ description: 'when the agent voted yes and locked' }),
    deadlineAt: z.iso.datetime().openapi({ description: "the end of the transaction's phase one" }),
    expiresAt: z.iso.datetime().openapi({ description: 'when the agent next asks the coordinator: first 2 s after the deadline, then every 2 s until it has a decision' }),
    inquiries: z.number().int().openapi({ description: 'how many times the coordinator was asked (by the agent or by a resolve)' }),
    lastInquiryAt: z.iso.datetime().nullable(),
    lastError: z.string().nullable().openapi({ description: 'why the last inquiry got no answer (the coordinator unreachable or failing); null when it was answered' }),
    contextVersion: z.number().int().openapi({ description: 'the context version the transaction would replace' }),
  })
  .openapi('TransactionLock');
export type TransactionLock = z.infer<typeof TransactionLock>;

export const AgentLock = z.object({ agentId: AgentId, lock: TransactionLock.nullable() }).openapi('AgentLock');

export const ResolveLockBody = z
  .object({
    outcome: z.enum(['abort', 'commit']).openapi({ description: "applied only if the coordinator cannot be reached; a coordinator that answers decides" }),
    reason: z.string().min(1).max(500).optional().openapi({ description: 'kept in the audit log' }),
  })
  .strict()
  .openapi('ResolveTransactionLock', { example: { outcome: 'abort', reason: 'coordinator storage lost (incident 42)' } });
export type ResolveLockBody = z.infer<typeof ResolveLockBody>;

export const LockResolution = z
  .object({
    transactionId: z.string(),
    agentId: AgentId,
    status: z.enum(['committed', 'aborted']).openapi({ description: 'what the agent applied' }),
    source: z.enum(['coordinator', 'operator']).openapi({ description: "coordinator: it answered and its decision was applied; operator: it could not be reached and the body's outcome was applied" }),
    heuristic: z.boolean().openapi({ description: 'true when the operator decided (source operator)' }),
    contextVersion: z.number().int().openapi({ description: "the agent's context version afterwards" }),
    replayed: z.literal(true).optional().openapi({ description: 'present when an earlier resolve asking the same outcome had already applied this (its answer lost, say): the answer is what that one applied, and nothing changed now' }),
  })
  .openapi('TransactionLockResolution');
export type LockResolution = z.infer<typeof LockResolution>;
