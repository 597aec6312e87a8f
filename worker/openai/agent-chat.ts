import type { Context } from 'hono';
import type { AppEnv } from '../env';
import { ApiError, unwrap } from '../errors';
import { newId } from '../lib/ids';
import { canonicalJson, sha256Hex } from '../lib/hash';
import { agentObjectId, callAgent, requireAgent } from '../agents/registry';
import { withChargeDoubt } from '../limits/charge-doubt';
import { syncFailure } from '../agents/operations';
import { answerWhileKeyValid } from '../auth/key-watch';
import { noteWork, startedWork } from '../limits/work';
import { executionUsage, wantsStreamUsage } from '../limits/usage';
import type { ChatCompletionRequest } from '../schemas/openai';
import { gatewayUpstream } from '../upstream/pool';
import { agentTurnInput } from './agent-turn';
import { SSE_HEADERS, completion, completionStream } from './completions';

/**
 * What tells a retried turn from its Idempotency-Key reused with another chat: the request as
 * sent, but for how its answer is delivered (`stream`, `stream_options`), which asks for no
 * other turn. It hashes another shape than a REST execution's, so one key used on both faces
 * of an agent is a key reused, as two different REST bodies are.
 */
export async function chatFingerprint(body: ChatCompletionRequest): Promise<string> {
  const turn: Record<string, unknown> = { ...body };
  delete turn.stream;
  delete turn.stream_options;
  return sha256Hex(canonicalJson({ chat: turn }));
}

/**
 * The content of an agent's answer: its output's `reply` (a builtin or openai-chat upstream's),
 * a string output as it is (an agent-http back end's text used to come quoted, as JSON), else
 * the output's JSON text.
 */
export function answerText(output: unknown): string {
  if (typeof output === 'string') return output;
  if (output && typeof output === 'object' && 'reply' in output && typeof output.reply === 'string') return output.reply;
  return JSON.stringify(output) ?? 'null';
}

/**
 * A chat through an agent's Durable Object: the agent's instructions, its stored history and
 * upstream answer the last user message, and the turn joins the agent's history. A stream
 * delivers the finished answer as SSE. Its usage is what the agent's upstream reported in the
 * execution's output (an openai-chat upstream records it there), else the estimate its execution
 * is charged: the gateway wrote this answer, so no model's usage comes with it. Against a token
 * budget the turn holds the key's reservation as an execution does (`tokenCharge`): its agent
 * fits it to what the run sends and settles it with that usage.
 *
 * With an `Idempotency-Key` the turn is a keyed execution as REST's are: the official client
 * resends a turn it got no answer to (a 5xx, a timeout), and the key makes that resend answer
 * the first run's execution instead of running the turn (and joining the history) again. A key's
 * budget used up (`replayOnly`) may still be answered that recorded turn, and nothing else.
 */
export async function agentChat(c: Context<AppEnv>, agentId: string, body: ChatCompletionRequest, idempotencyKey: string | undefined): Promise<Response> {
  const { tenantId, keyId } = c.get('principal');
  const refusal = c.get('replayOnly');
  if (refusal && idempotencyKey === undefined) throw refusal;
  const route = await requireAgent(c.env, tenantId, agentId);
  const input = agentTurnInput(body.messages);
  // Named here, so a retried delivery finds the execution rather than running it twice (and, with a key, is no replay).
  const executionId = newId('ex');
  const keyed = idempotencyKey === undefined ? { fingerprint: 'chat' } : { idempotencyKey, fingerprint: await chatFingerprint(body) };
  // The key's token reservation, which the agent fits to what its run sends (its instructions,
  // context and history: refused budget_exhausted when the budget cannot cover them) and settles.
  const charge = c.get('tokenCharge');
  let deliveries = 0;
  const call = withChargeDoubt(c.env, charge, () => agentObjectId(c.env, tenantId, agentId, route), () =>
    callAgent(c.env, tenantId, agentId, route, (stub) =>
      stub.execute({ intent: 'chat', input, mode: 'sync', executionId, ...keyed, freshKey: idempotencyKey === undefined && deliveries++ === 0, ...(refusal && { replayOnly: true }), ...(charge && { charge }) }),
    { retry: true }));
  // Streamed or not, the answer waits for the execution; a key revoked meanwhile gets none of
  // it (the execution goes on, in the agent's history like the others).
  const reply = await answerWhileKeyValid(c.env.DB, keyId, call, idempotencyKey === undefined ? { executionId } : { idempotencyKey }).catch((error: unknown) => {
    if (startedWork(error)) noteWork(c, 'started'); // a 401 gives the budget back, but this one's execution runs
    throw error;
  });
  if (!reply.ok && startedWork(ApiError.from(reply))) noteWork(c, 'started'); // deleted while it ran: a 404 that counts
  // REST's advice on a paused agent names its `mode`, which a chat has not: queueing is a REST (or MCP) call.
  if (!reply.ok && reply.code === 'agent_paused') throw new ApiError('agent_paused', `the agent is paused; a chat waits for its answer, so none runs until the agent is resumed (work can be queued with POST /v1/agents/{id}/executions, mode "async")`);
  const { execution, replayed } = unwrap(reply);
  // Counted even when it then answers a 4xx (a turn cancelled while it ran: 409), as a REST
  // execution is; it used to be given back as a refusal. A replay called no upstream: given back.
  noteWork(c, replayed ? 'replayed' : 'started');
  const upstream = gatewayUpstream(execution.upstream);
  const headers: Record<string, string> = { 'x-gateway-attempts': String(execution.attempts), 'x-gateway-execution': execution.id, ...(upstream !== undefined && { 'x-gateway-upstream': upstream }) };
  if (replayed) headers['idempotent-replayed'] = 'true';
  if (execution.status !== 'succeeded') {
    // Under a key the same request is answered this record for as long as the key is kept: the
    // official client's retries (of a 5xx, by default) would only fetch it again, and a lock's
    // "retry shortly" (Retry-After) is advice for a new key, which the replay's message gives.
    const failure = syncFailure(execution, replayed || idempotencyKey !== undefined);
    const final: Record<string, string> = idempotencyKey === undefined ? {} : { 'x-should-retry': 'false' };
    throw new ApiError(failure.code, failure.message, failure.details, { ...failure.headers, ...headers, ...final });
  }
  const output = execution.output;
  const content = answerText(output);
  const id = `chatcmpl-${execution.id}`;
  const model = `agent:${agentId}`;
  // What its execution is charged (by its agent, against a token budget): the usage its upstream
  // reported, else its input and answer at ~4 characters a token, so the answer says what was counted.
  const usage = executionUsage(JSON.stringify(execution.input ?? null), output);
  c.set('tokensUsed', usage.total_tokens);
  // The turn's time, streamed or not: a replay is the same answer (a stream's used to be now).
  const created = Math.floor(Date.parse(execution.createdAt) / 1000);
  if (body.stream) return new Response(completionStream(id, model, content, wantsStreamUsage(body) ? usage : undefined, 'stop', created), { status: 200, headers: { ...SSE_HEADERS, ...headers } });
  return Response.json(completion(id, model, content, usage, created), { headers });
}
