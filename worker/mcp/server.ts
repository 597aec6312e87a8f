import { McpServer, type CallToolResult } from '@modelcontextprotocol/server';
import { z } from 'zod';
import type { Env, Principal } from '../env';
import { ApiError, envelope } from '../errors';
import type { TokenCharge } from '../../durable/agent-rpc';
import { startedWork, type WorkOutcome } from '../limits/work';
import { toApiError } from '../middleware/error-handler';
import { logs } from '../middleware/request-log';
import { cancelExecution, listAgents, onTenantAgent, readExecution, startExecution, syncFailure } from '../agents/operations';
import { AgentId, Cursor, IdempotencyKey, JsonValue, MAX_INPUT_BYTES, page, ResourceId } from '../schemas/common';
import { MAX_JSON_DEPTH } from '../lib/json-limits';
import { Execution, Intent } from '../schemas/execution';
import { Agent, AgentContext } from '../schemas/agent';
import { newId } from '../lib/ids';
import { argsOf, checkedArgs } from './tool-args';
import type { WaitingCalls } from './cancel';

/** Longest an `execute_intent` call with `wait` holds the MCP request open. */
export const MAX_WAIT_MS = 30_000;

/*
 * Refinements have no JSON Schema of their own: said here, so the schema tools/list shows
 * refuses what the tool refuses, and a client checking its arguments against it is not
 * answered invalid_request for arguments the schema accepted.
 */
const HOOK_KEYS_REFUSED = { not: { pattern: '^hook:' } };
const WAIT_BOUNDS_TIMEOUT = { if: { properties: { wait: { const: true } }, required: ['wait'] }, then: { properties: { timeoutMs: { maximum: MAX_WAIT_MS } } } };

const ListAgentsArgs = z
  .object({
    limit: z.number().int().min(1).max(100).default(20).describe('page size'),
    cursor: Cursor.describe('nextCursor of the previous page'),
  })
  .strict();

const ExecuteIntentArgs = z
  .object({
    agentId: AgentId,
    intent: Intent.describe("the intent to run, as in POST /v1/agents/{id}/executions, e.g. 'support.reply'"),
    input: JsonValue.optional().describe(`any JSON value, passed to the agent (at most ${MAX_INPUT_BYTES / 1024} KiB encoded and ${MAX_JSON_DEPTH} levels deep)`),
    wait: z.boolean().default(false).describe('true: wait for the end (at most 30 s) and return the finished execution; false: return it queued'),
    timeoutMs: z.number().int().min(100).max(300_000).optional().describe('deadline of the execution (with wait: at most 30000)'),
    idempotencyKey: IdempotencyKey.meta(HOOK_KEYS_REFUSED).optional().describe(
      'makes a retry safe: the same key for the same agent returns the first execution and never runs it twice (the Idempotency-Key of POST /v1/agents/{id}/executions; other arguments with a used key: idempotency_key_reused)',
    ),
  })
  .strict()
  .refine((a) => !a.wait || a.timeoutMs === undefined || a.timeoutMs <= MAX_WAIT_MS, { message: `with wait, timeoutMs is at most ${MAX_WAIT_MS}`, path: ['timeoutMs'] })
  .meta(WAIT_BOUNDS_TIMEOUT);

const ExecutionArgs = z.object({ agentId: AgentId, executionId: ResourceId }).strict();

const AgentArgs = z.object({ agentId: AgentId }).strict();

/** Who is calling and where their request is logged; one per HTTP request. */
export interface McpCaller {
  env: Env;
  principal: Principal;
  requestId: string;
  log: Record<string, string | number | boolean | undefined>;
  /** Tells the key's limits what a call that starts budgeted work did (worker/limits/work.ts). */
  work: (outcome: WorkOutcome) => void;
  /** The key's token reservation for the request's execution (a key with a token budget). */
  charge?: TokenCharge;
  /**
   * The key's budget refused the request's execution (the rate windows admitted it): an
   * `execute_intent` answers this refusal as its tool error and starts nothing, unless its
   * `idempotencyKey` finds the execution it started before (a replay costs no budget).
   */
  budgetRefusal?: ApiError;
  /** Where a call with `wait` registers, so a `notifications/cancelled` naming it can stop it (worker/mcp/cancel.ts). */
  calls?: WaitingCalls;
  /**
   * Aborts when the client goes away (2026-07-28 only): its transport makes closing a call's
   * response the cancel of that call, so a waiting `execute_intent` then cancels its execution.
   */
  disconnected?: AbortSignal;
}

const result = (value: Record<string, unknown>): CallToolResult => ({
  content: [{ type: 'text', text: JSON.stringify(value) }],
  structuredContent: value,
});

/**
 * Runs a tool's work and answers with its value, or with a tool error whose text is the
 * gateway's error envelope (the same code and message the REST API would answer with), so the
 * model can read why and the host can branch on the code.
 */
async function run(caller: McpCaller, tool: string, work: () => Promise<Record<string, unknown>>): Promise<CallToolResult> {
  const started = Date.now();
  let outcome: CallToolResult;
  let code: string | undefined;
  try {
    outcome = result(await work());
  } catch (error) {
    const apiError = toApiError(error, caller.requestId);
    code = apiError.code;
    // No structuredContent: when present it must match the tool's output schema, and clients
    // check that even on errors; the envelope travels as the text content.
    outcome = { content: [{ type: 'text', text: JSON.stringify(envelope(apiError, caller.requestId)) }], isError: true };
  }
  // Its own line: request-log may write a streamed (SSE) MCP response's line before the tool ends.
  const level = code === undefined ? 'info' : code === 'internal_error' ? 'error' : 'warn';
  if (logs(caller.env.LOG_LEVEL, level)) {
    console.log(JSON.stringify({ level, msg: 'mcp tool', requestId: caller.requestId, tenant: caller.principal.tenantId, tool, code, latencyMs: Date.now() - started, ...caller.log }));
  }
  return outcome;
}

/**
 * Runs a tool's budgeted work: refused before it says what it did (bad arguments, an unknown or
 * paused agent: a 4xx), the call gives the key's budget back as the REST API does, and so does
 * a replayed answer (a repeated idempotency key: nothing ran); once started, or after a 5xx,
 * whose work may have started, it counts even if it then fails.
 */
async function budgeted<T>(caller: McpCaller, work: (did: (outcome: 'started' | 'replayed') => void) => Promise<T>): Promise<T> {
  let said = false;
  const did = (outcome: 'started' | 'replayed') => {
    said = true;
    caller.work(outcome);
  };
  try {
    return await work(did);
  } catch (error) {
    if (!said) caller.work(error instanceof ApiError && error.status < 500 && !startedWork(error) ? 'refused' : 'started');
    throw error;
  }
}

/**
 * REST's wording names its own levers (`mode`, the `Idempotency-Key` header); an MCP caller's
 * are `wait` and `idempotencyKey`. A key is one namespace per agent for both faces, so a
 * reused one may have been taken by a REST call the model never saw: the message says so.
 */
function forMcp(error: unknown): unknown {
  if (error instanceof ApiError && error.code === 'agent_paused') {
    return new ApiError('agent_paused', 'the agent is paused; call execute_intent without wait to queue the work', error.details);
  }
  if (error instanceof ApiError && error.code === 'idempotency_key_reused') {
    return new ApiError(
      'idempotency_key_reused',
      'this idempotencyKey was used with other arguments (by execute_intent, or by the REST API\'s Idempotency-Key: one key names one execution per agent); retry with the same arguments, or use a new key',
      error.details,
    );
  }
  return error;
}

/**
 * The gateway's MCP server for one request, bound to the caller's tenant: every tool goes
 * through the same functions as the REST API (D1 registry for lists, the agent's Durable
 * Object by RPC for everything else), so tenant scoping and behaviour cannot drift apart.
 */
export function createGatewayMcpServer(caller: McpCaller): McpServer {
  const { env } = caller;
  const { tenantId } = caller.principal;
  // The tool set is fixed, and a server built per request could not announce a change anyway:
  // said so, a 2026-07-28 client's subscriptions/listen is acknowledged and ends instead of
  // holding an SSE stream open that would never carry a notification.
  const server = new McpServer({ name: 'edge-agent-gateway', version: '0.1.0' }, { capabilities: { tools: { listChanged: false } } });

  server.registerTool(
    'list_agents',
    {
      title: 'List agents',
      description: "Lists this tenant's agents, ordered by id, one page at a time (eventually consistent, like GET /v1/agents).",
      inputSchema: checkedArgs(ListAgentsArgs),
      outputSchema: page(Agent),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args) =>
      run(caller, 'list_agents', async () => {
        const { limit, cursor } = argsOf(args);
        return { ...(await listAgents(env, tenantId, limit, cursor)) };
      }),
  );

  server.registerTool(
    'execute_intent',
    {
      title: 'Execute an intent',
      description:
        'Runs an intent on an agent. With wait, answers with the finished execution (an error naming upstream_failed, upstream_timeout, execution_cancelled or agent_locked when it did not succeed); without, answers at once with the queued execution to poll with get_execution.',
      inputSchema: checkedArgs(ExecuteIntentArgs),
      outputSchema: Execution,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
    },
    (args, ctx) =>
      run(caller, 'execute_intent', () =>
        budgeted(caller, async (did) => {
          const { agentId, intent, input, wait, timeoutMs, idempotencyKey } = argsOf(args);
          // Waiting runs in sync mode with a deadline of at most MAX_WAIT_MS (queue time included),
          // so the call cannot outlive it whatever the agent's default deadline becomes.
          const deadline = wait ? (timeoutMs ?? MAX_WAIT_MS) : timeoutMs;
          const body = { intent, input, mode: wait ? ('sync' as const) : ('async' as const), ...(deadline !== undefined && { timeoutMs: deadline }) };
          const refusal = caller.budgetRefusal;
          if (refusal && idempotencyKey === undefined) throw refusal;
          // Over budget, only the recorded execution of the key may answer: anything else is the refusal.
          // A sync run is decided long before it ends: told then, the route can send a budgeted key's headers saying whether it counted.
          const decided = wait && caller.principal.limits?.budget !== undefined ? (replay: boolean) => caller.work(replay ? 'replayed' : 'started') : undefined;
          // Only a waiting call is registered (one round trip to the key's limiter before it
          // starts): without wait the answer names the execution at once, for cancel_execution.
          const executionId = newId('ex');
          const calls = wait ? caller.calls : undefined;
          const gone = wait ? caller.disconnected : undefined;
          const cancelledFirst = calls ? await calls.started(ctx.mcpReq.id, agentId, executionId) : false;
          if (cancelledFirst || gone?.aborted) {
            calls?.ended(executionId);
            throw new ApiError('execution_cancelled', 'the call was cancelled before its execution started');
          }
          const leave = () => calls?.cancel(agentId, executionId);
          gone?.addEventListener('abort', leave, { once: true });
          const started = startExecution(env, tenantId, agentId, body, idempotencyKey, refusal !== undefined, caller.charge, executionId, decided);
          const { execution, replayed } = await started.catch((error: unknown) => {
            throw refusal ?? forMcp(error);
          }).finally(() => {
            gone?.removeEventListener('abort', leave);
            calls?.ended(executionId);
          });
          did(replayed ? 'replayed' : 'started');
          Object.assign(caller.log, { agent: agentId, execution: execution.id, executionStatus: execution.status, ...(replayed && { replayed }) });
          if (wait && execution.status !== 'succeeded') throw syncFailure(execution, replayed);
          return execution;
        }),
      ),
  );

  server.registerTool(
    'get_execution',
    {
      title: 'Get an execution',
      description: "Reads one execution of an agent: status, output or error (strongly consistent; marked stale when served from the last snapshot).",
      inputSchema: checkedArgs(ExecutionArgs),
      outputSchema: Execution,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args) =>
      run(caller, 'get_execution', () => {
        const { agentId, executionId } = argsOf(args);
        return readExecution(env, tenantId, agentId, executionId);
      }),
  );

  server.registerTool(
    'cancel_execution',
    {
      title: 'Cancel an execution',
      description: 'Cancels a queued or running execution (a running upstream call is aborted); already_finished when it has ended.',
      inputSchema: checkedArgs(ExecutionArgs),
      outputSchema: Execution,
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    },
    (args) =>
      run(caller, 'cancel_execution', () => {
        const { agentId, executionId } = argsOf(args);
        return cancelExecution(env, tenantId, agentId, executionId);
      }),
  );

  server.registerTool(
    'get_context',
    {
      title: "Get an agent's context",
      description: "Reads the agent's context document and its version (what PATCH /v1/agents/{id}/context writes).",
      inputSchema: checkedArgs(AgentArgs),
      outputSchema: AgentContext,
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    (args) =>
      run(caller, 'get_context', () => {
        const { agentId } = argsOf(args);
        return onTenantAgent(env, tenantId, agentId, (stub) => stub.getContext(), { retry: true });
      }),
  );

  return server;
}
