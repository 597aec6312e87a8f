import { fail, ok, type Result } from '../worker/errors';
import { DEFAULT_COMPLETION_TOKENS } from '../worker/limits/usage';
import type { AgentConfig } from '../worker/schemas/agent';
import { chatMessages } from '../worker/upstream/openai-chat';
import type { HistoryEntry, UpstreamRequest } from '../worker/upstream/types';
import type { TokenCharge } from './agent-rpc';

/** What a run of the agent will send upstream, as far as it is known before the run. */
export type PromptParts = Pick<UpstreamRequest, 'intent' | 'input' | 'instructions' | 'context'> & { history: readonly HistoryEntry[] };

const tokensOf = (chars: number): number => Math.ceil(chars / 4);

/** What an openai-chat target reads: every message's content (instructions, history turns, the user turn). */
const chatChars = (parts: PromptParts): number =>
  chatMessages({ ...parts, executionId: '', agentId: '' }).reduce((sum, message) => sum + message.content.length, 0);

/**
 * What an agent-http target reads: the JSON body it is posted (context, history, intent,
 * input), without the ids, whose length does not depend on the agent.
 */
const httpChars = (parts: PromptParts): number =>
  JSON.stringify({ intent: parts.intent, input: parts.input ?? null, context: parts.context, history: parts.history }).length;

/**
 * Tokens an execution of an agent with `config` may use, at the same ~4 characters a token
 * as every other reservation, plus the answer allowance: the prompt its upstream will be sent.
 * A pool may pick a target of either kind, so it counts the larger. The built-in responder
 * calls no model and sends nothing: null (the edge's estimate of the request stands).
 */
export function executionEstimate(config: AgentConfig, store: { context(): { data: Record<string, unknown> }; history(): readonly HistoryEntry[] }, request: Pick<UpstreamRequest, 'intent' | 'input'>): number | null {
  const { upstream } = config;
  if (upstream.kind === 'builtin') return null;
  // The same cached context and history turns (the window the runner sends) a run reads.
  const parts: PromptParts = { intent: request.intent, input: request.input, instructions: config.instructions, context: store.context().data, history: store.history() };
  const chars = upstream.kind === 'openai-chat' ? chatChars(parts) : upstream.kind === 'agent-http' ? httpChars(parts) : Math.max(chatChars(parts), httpChars(parts));
  return tokensOf(chars) + DEFAULT_COMPLETION_TOKENS;
}

/**
 * The reservation an execution should hold once what it sends is known (the edge reserved its
 * request body only, not knowing the agent's instructions, context or history): `charge` raised
 * to the estimate when that is larger. The budget had `headroom` tokens free beyond the edge's
 * reservation when it was admitted; an estimate that does not fit in both is refused
 * `budget_exhausted` before anything starts, as the edge refuses one its reservation does not fit.
 */
export function fittedCharge(charge: TokenCharge, estimate: number | null): Result<TokenCharge> {
  if (estimate === null || estimate <= charge.reserved) return ok(charge);
  const headroom = charge.headroom ?? Number.POSITIVE_INFINITY;
  if (estimate > charge.reserved + headroom) return notCovered(charge, estimate, charge.reserved + headroom);
  return ok({ ...charge, reserved: estimate });
}

/** The refusal of an execution needing about `estimate` tokens of which only `free` are free (its own reservation included). */
export function notCovered(charge: TokenCharge, estimate: number, free: number): Result<never> {
  return fail('budget_exhausted', `this execution needs about ${estimate} tokens of the token budget (the agent's instructions, context and history with its input); ${free} are free`, {
    limit: 'budget.tokens',
    ...(charge.retryAfter !== undefined && { retryAfter: charge.retryAfter }),
  });
}
