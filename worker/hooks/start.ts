import type { ExecuteResult, TokenCharge } from '../../durable/agent-rpc';
import type { Execution } from '../schemas/execution';
import type { AgentRpc } from '../agents/registry';
import { fail, ok, type Result } from '../errors';
import { MAX_INPUT_BYTES } from '../schemas/common';
import { jsonLimitProblem } from '../lib/json-limits';
import { sha256Hex } from '../lib/hash';
import type { HookScheme } from '../schemas/hook';

/** What an accepted delivery hands to its agent as the execution's input. */
export interface HookInput {
  hook: string;
  scheme: string;
  deliveryId: string;
  event?: string;
  payload: unknown;
}

/** Why a delivery cannot start an execution, and where in the delivery that is (`details[].path`). */
export interface DeliveryProblem {
  message: string;
  /** The message of its `details` entry: what is wrong there. */
  why: string;
  path: string[];
}

/** The longest delivery id taken: an `Idempotency-Key`'s bound, since the id is the execution's idempotency key. */
export const MAX_DELIVERY_ID_LENGTH = 255;

/** Where each scheme carries its delivery id. */
const DELIVERY_ID_AT: Record<HookScheme, string[]> = { standard: ['webhook-id'], github: ['x-github-delivery'], stripe: ['payload', 'id'] };

/**
 * Why a delivery cannot be stored, or null: an id longer than an idempotency key may be, or an
 * execution input past the bounds of a REST execution's `input` (256 KiB of JSON, 32 levels),
 * so a signed delivery cannot skip either.
 */
export function hookDeliveryProblem(scheme: HookScheme, input: HookInput): DeliveryProblem | null {
  if (input.deliveryId.length > MAX_DELIVERY_ID_LENGTH) {
    const why = `${input.deliveryId.length} characters, over the ${MAX_DELIVERY_ID_LENGTH} an idempotency key may have`;
    return { message: `the delivery id (${DELIVERY_ID_AT[scheme].join('.')}) is ${why}`, why, path: DELIVERY_ID_AT[scheme] };
  }
  const why = jsonLimitProblem(input, { maxBytes: MAX_INPUT_BYTES });
  return why === null ? null : { message: `the execution input this delivery makes is out of bounds: ${why}`, why, path: ['payload'] };
}

/** The keys a delivery is deduplicated by in its agent's object (`idempotency` table, kept a day). */
export interface DeliveryKeys {
  /** `hook:<hook id>:<delivery id>`: a repeated delivery id is a duplicate whatever its body. */
  idempotencyKey: string;
  /**
   * GitHub's only: `hook:<hook id>:sha256:<hex digest of the body's bytes>`. Its signature covers
   * the body alone, so a captured delivery re-sent under a new X-GitHub-Delivery would pass as
   * new; GitHub itself redelivers under the same id, so a body seen before under another id is
   * a replay. The other schemes sign the id (Standard Webhooks) or the event carries it
   * (Stripe) with a signed timestamp, and two events may have equal bodies, so only the id counts there.
   */
  alsoKeys: string[];
}

export async function deliveryKeys(hookId: string, scheme: string, deliveryId: string, body: Uint8Array): Promise<DeliveryKeys> {
  const idempotencyKey = `hook:${hookId}:${deliveryId}`;
  return { idempotencyKey, alsoKeys: scheme === 'github' ? [`hook:${hookId}:sha256:${await sha256Hex(body)}`] : [] };
}

/**
 * Starts the async execution of one delivery, at most once per delivery id (for GitHub, also
 * once per body). A delivery id seen before answers its first execution even when the body
 * differs (re-signed by the sender): the id is what senders and the issue deduplicate on, and
 * since senders retry every non-2xx, a refusal would be retried forever. `bodyDiffered` tells
 * the caller to log it.
 */
export async function startHookExecution(
  stub: AgentRpc,
  request: { intent: string; input: HookInput; fingerprint: string; executionId?: string; replayOnly?: boolean; charge?: TokenCharge } & DeliveryKeys,
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
 * The first execution of a delivery whose own input is out of bounds, or null when none of its
 * keys was seen. Only such a delivery asks (lookups that store nothing): a retry of a delivery
 * already started is a duplicate whatever its new body, while a new one is refused as it always was.
 */
export async function seenHookExecution(stub: AgentRpc, keys: DeliveryKeys): Promise<Result<Execution | null>> {
  for (const key of [keys.idempotencyKey, ...keys.alsoKeys]) {
    const first = await stub.executionByKey(key);
    if (first.ok || first.code !== 'not_found') return first;
  }
  return ok(null);
}
