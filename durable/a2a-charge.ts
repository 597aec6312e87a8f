import { fail, ok, type Result } from '../worker/errors';
import type { AgentConfig } from '../worker/schemas/agent';
import type { HistoryEntry } from '../worker/upstream/types';
import type { A2ARequest } from './a2a';
import { SENDS } from './a2a-internal';
import { executionEstimate, type AgentCharges } from './agent-charges';


/**
 * What a send's turn will be given, as far as its request says (a2a-executor.ts `turnInput`
 * builds the same from the parsed message): the message's text and its parts.
 */
function sendInput(body: unknown): { message: string; parts: unknown[] } | undefined {
  const { method, params } = (body ?? {}) as { method?: unknown; params?: { message?: { parts?: unknown } } };
  if (typeof method !== 'string' || !SENDS.has(method)) return undefined;
  const parts = Array.isArray(params?.message?.parts) ? (params.message.parts as unknown[]) : [];
  const text = parts.flatMap((p) => (p && typeof p === 'object' && 'text' in p && typeof p.text === 'string' ? [p.text] : []));
  return { message: text.join('\n'), parts };
}

/**
 * Hands `request` to `handle` with a send's token reservation fitted to what its turn will
 * send upstream (the agent's instructions, context and history with the message), as an
 * execution's is in `execute`: raised to that estimate, or refused `budget_exhausted` before
 * the SDK starts anything when the budget cannot cover it (its headroom at admission, then the
 * key's limiter, which takes the raise). Other methods, and
 * requests without a reservation, pass as they came. A blocking send is answered once its
 * turn has ended: its settlement is sent before that answer, as a sync execution's is, so
 * the key's usage shows it spent and not still reserved (a send right after it would
 * otherwise meet a budget holding the whole reservation). `live`: whether the agent is still
 * there, not being deleted, after the limiter's await (a turn started then would be wiped).
 */
export async function withSendCharge<T extends { kind: 'json' | 'stream' }>(
  charges: AgentCharges,
  config: AgentConfig,
  store: { context(): { data: Record<string, unknown> }; history(): readonly HistoryEntry[] },
  request: A2ARequest,
  handle: (config: AgentConfig, request: A2ARequest) => Promise<T>,
  live: () => boolean,
): Promise<Result<T>> {
  const input = request.charge && sendInput(request.body);
  if (!request.charge || !input) return ok(await handle(config, request));
  const fitted = await charges.fit(request.charge, executionEstimate(config, store, { intent: 'a2a.message', input }));
  if (!fitted.ok) return fitted;
  if (!live()) return fail('not_found', 'agent not found');
  const reply = await handle(config, { ...request, charge: fitted.value });
  // A stream's turn goes on after this returns: it settles from the background, as an async execution's.
  if (reply.kind === 'json') await charges.send();
  return ok(reply);
}
