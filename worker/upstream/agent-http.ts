import { MAX_JSON_DEPTH, NON_FINITE, jsonShapeProblem } from '../lib/json-limits';
import { withoutCredential } from '../lib/masked-credential';
import { MAX_CONTEXT_KEY_CHARS } from '../schemas/agent';
import { MAX_OUTPUT_DEPTH } from '../schemas/execution';
import { postJson } from './http-attempt';
import { UpstreamError, type AttemptOptions, type Upstream, type UpstreamReply, type UpstreamRequest } from './types';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Why an upstream's context patch is outside a client's bounds (depth, numbers, member names),
 * or null. Merged unchecked, a patch some 20,000 levels deep made a context no read could carry
 * (GET …/context a 500, every later call failing), 1e400 was stored as null, and a member whose
 * name is over 256 characters could never be removed by a client's patch.
 */
function contextPatchProblem(patch: Record<string, unknown>): string | null {
  const long = Object.keys(patch).find((key) => key.length > MAX_CONTEXT_KEY_CHARS);
  if (long !== undefined) return `member name ${JSON.stringify(long.slice(0, 32))}… is over ${MAX_CONTEXT_KEY_CHARS} characters`;
  return jsonShapeProblem(patch, MAX_JSON_DEPTH, NON_FINITE);
}

/**
 * The patch without a top-level `__proto__` member, as a client's is (zod strips it there), or
 * undefined when that was all it held. Merged, it was stored as data that no client's patch
 * could ever remove: theirs loses the member before it is applied.
 */
function withoutProtoMember(patch: Record<string, unknown>): Record<string, unknown> | undefined {
  if (!Object.hasOwn(patch, '__proto__')) return patch;
  const rest = Object.fromEntries(Object.entries(patch).filter(([key]) => key !== '__proto__'));
  return Object.keys(rest).length > 0 ? rest : undefined;
}

/**
 * An agent back end speaking the gateway's own protocol: POST
 * `{executionId, agentId, intent, input, context, history}`, reply `{output, contextPatch?}`.
 * `Idempotency-Key` carries the execution id so a retried or resumed call can be deduplicated.
 * `apiKey` (a pool target's credential) goes as `Authorization: Bearer`, as the health probe sends it.
 */
export function agentHttpUpstream(url: string, timeoutMs?: number, apiKey?: string): Upstream {
  return {
    label: `agent-http ${new URL(url).host}`,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    async call(request: UpstreamRequest, { signal }: AttemptOptions): Promise<UpstreamReply> {
      const body = {
        executionId: request.executionId,
        agentId: request.agentId,
        intent: request.intent,
        input: request.input ?? null,
        context: request.context,
        history: request.history,
      };
      const headers: Record<string, string> = { 'idempotency-key': request.executionId };
      if (apiKey) headers.authorization = `Bearer ${apiKey}`;
      const reply = await postJson(url, body, headers, signal, { credential: apiKey });
      if (!isRecord(reply) || !('output' in reply)) {
        // What came instead (a back end's `{"error": …}` in a 200), as a 4xx's body is shown: masked, then cut.
        throw new UpstreamError('invalid_response', `upstream reply has no "output": ${withoutCredential(JSON.stringify(reply), apiKey).slice(0, 200)}`, false);
      }
      // One walk for both: a number beyond a double's range (1e400) was stored as null.
      const shape = jsonShapeProblem(reply.output, MAX_OUTPUT_DEPTH, NON_FINITE);
      if (shape === NON_FINITE) throw new UpstreamError('invalid_response', `upstream "output": ${NON_FINITE}`, false);
      if (shape) throw new UpstreamError('invalid_response', `upstream "output" is nested deeper than ${MAX_OUTPUT_DEPTH} levels`, false);
      const { contextPatch } = reply;
      if (contextPatch !== undefined && contextPatch !== null && !isRecord(contextPatch)) {
        throw new UpstreamError('invalid_response', 'upstream "contextPatch" is not an object', false);
      }
      const problem = isRecord(contextPatch) ? contextPatchProblem(contextPatch) : null;
      if (problem) throw new UpstreamError('invalid_response', `upstream "contextPatch": ${problem}`, false);
      const patch = isRecord(contextPatch) ? withoutProtoMember(contextPatch) : undefined;
      return patch ? { output: reply.output, contextPatch: patch } : { output: reply.output };
    },
  };
}
