import { z } from '@hono/zod-openapi';
import { AgentId, JsonValue } from './common';

export const ExecutionStatus = z.enum(['queued', 'running', 'succeeded', 'failed', 'cancelled']);
export type ExecutionStatus = z.infer<typeof ExecutionStatus>;

export const TERMINAL: ReadonlySet<ExecutionStatus> = new Set(['succeeded', 'failed', 'cancelled']);
/** A cancelled execution's error, whichever API cancelled it (an A2A task's status message shows it too). */
export const CANCELLED_ERROR = { code: 'cancelled', message: 'cancelled by request' } as const;

export const Intent = z.string().min(1).max(256).openapi({ example: 'support.reply' });

export const CreateExecutionBody = z
  .object({
    intent: Intent,
    input: JsonValue.optional(),
    mode: z.enum(['sync', 'async']).default('sync'),
    timeoutMs: z.number().int().min(100).max(300_000).optional(),
  })
  .strict()
  .openapi('CreateExecution', {
    example: { intent: 'support.reply', input: { message: 'Where is my order?' } },
  });
export type CreateExecutionBody = z.infer<typeof CreateExecutionBody>;

/** Largest output stored: with the input (≤ 256 KiB) it stays well under the 2 MB row limit. */
export const MAX_OUTPUT_BYTES = 1024 * 1024;

/**
 * Deepest output stored, far above an input's 32 levels (an upstream's reply is not held to
 * those), and far below where it could no longer be carried: about 5,000 levels stored fine but
 * overflowed the stack of the call reading it back (the sync answer and every GET of it a 500),
 * and about 8,000 failed the execution with the RangeError's text.
 */
export const MAX_OUTPUT_DEPTH = 512;

/**
 * An execution's output as stored: whatever JSON the upstream answered, up to MAX_OUTPUT_BYTES
 * (the runner fails a larger one with output_too_large) and MAX_OUTPUT_DEPTH levels (the reply
 * is refused where it is read). Not `JsonValue`, whose bounds are an input's: the MCP tools
 * check their results against this schema, and a succeeded execution with a 300 KB output came
 * back as a tool error.
 */
const ExecutionOutput = z.unknown().openapi({ description: `the upstream's output: a JSON value of whatever type it returned (at most ${MAX_OUTPUT_BYTES} bytes, ${MAX_OUTPUT_DEPTH} levels deep)` });

export const ExecutionError = z.object({
  code: z.string(),
  message: z.string(),
  status: z.number().int().optional(),
  retryAt: z.iso.datetime().optional().openapi({
    description: "when every failed attempt's upstream asked to wait (429 or 503 with Retry-After): the soonest it said it would take work again; a failed sync execution's 502 carries it as Retry-After",
  }),
  retryable: z.literal(false).optional().openapi({
    description: 'false when the gateway stopped without another attempt because one would fail the same way (a 4xx, a redirect, a reply over the limit) or could repeat work the back end may have done (an agent-http 200 that is not JSON, broke off or stalled, an output or context over its limit); a sync execution\'s (or agent chat\'s) 502 or 504 then carries `x-should-retry: false`. Absent otherwise',
  }),
});
export type ExecutionError = z.infer<typeof ExecutionError>;

export const Execution = z
  .object({
    id: z.string(),
    agentId: AgentId,
    intent: Intent,
    input: JsonValue,
    status: ExecutionStatus,
    output: ExecutionOutput.optional(),
    error: ExecutionError.optional(),
    attempts: z.number().int(),
    upstream: z.string().optional(),
    createdAt: z.iso.datetime(),
    startedAt: z.iso.datetime().optional(),
    finishedAt: z.iso.datetime().optional(),
    durationMs: z.number().int().optional(),
    stale: z.boolean().optional().openapi({ description: 'true when served from the last snapshot because the agent was unreachable' }),
  })
  .openapi('Execution');
export type Execution = z.infer<typeof Execution>;

export const ListExecutionsQuery = z.object({
  status: ExecutionStatus.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
});

export const ExecutionParams = z.object({ id: AgentId, eid: z.string().regex(/^[a-zA-Z0-9_-]{1,80}$/) });
