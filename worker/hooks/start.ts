import type { ExecuteResult } from '../../durable/agent-rpc';
import type { Execution } from '../schemas/execution';
import type { AgentRpc } from '../agents/registry';
import { fail, ok, type Result } from '../errors';
import { MAX_INPUT_BYTES } from '../schemas/common';
import { jsonLimitProblem } from '../lib/json-limits';

/** What an accepted delivery hands to its agent as the execution's input. */
export interface HookInput {
  hook: string;
  scheme: string;
  deliveryId: string;
  event?: string;
  payload: unknown;
}

/**
 * Why the execution input a delivery makes cannot be stored, or null: the same bounds as a REST
 * execution's `input` (256 KiB of JSON, 32 levels), so a signed body cannot skip them.
 */
export function hookInputProblem(input: HookInput): string | null {
  return jsonLimitProblem(input, { maxBytes: MAX_INPUT_BYTES });
}

/**
 * Starts the async execution of one delivery, at most once per delivery id. A delivery id seen
 * before answers its first execution even when the body differs (re-signed by the sender): the
 * id is what senders and the issue deduplicate on, and since senders retry every non-2xx, a
 * refusal would be retried forever. `bodyDiffered` tells the caller to log it.
 */
export async function startHookExecution(
  stub: AgentRpc,
  request: { intent: string; input: HookInput; idempotencyKey: string; fingerprint: string },
): Promise<Result<ExecuteResult & { bodyDiffered: boolean }>> {
  const started = await stub.execute({ ...request, mode: 'async' });
  if (started.ok) return ok({ ...started.value, bodyDiffered: false });
  if (started.code !== 'idempotency_key_reused') return started;
  const firstId = (started.details as { executionId?: unknown } | undefined)?.executionId;
  if (typeof firstId !== 'string') return fail('internal_error', 'a reused delivery id named no execution');
  const first = await stub.getExecution(firstId);
  return first.ok ? ok({ execution: first.value, replayed: true, bodyDiffered: true }) : first;
}

/**
 * The first execution of a delivery whose own input is out of bounds, or null when its id is new.
 * Only such a delivery asks (one lookup that stores nothing): a retry of a delivery already
 * started is a duplicate whatever its new body, while a new one is refused as it always was.
 */
export async function seenHookExecution(stub: AgentRpc, idempotencyKey: string): Promise<Result<Execution | null>> {
  const first = await stub.executionByKey(idempotencyKey);
  if (first.ok) return first;
  return first.code === 'not_found' ? ok(null) : first;
}
