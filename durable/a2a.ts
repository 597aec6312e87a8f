import { AgentCard, formatSSEErrorEvent, formatSSEEvent } from '@a2a-js/sdk';
import { RequestMalformedError } from '@a2a-js/sdk/errors';
import { LegacyJsonRpcTransportHandler } from '@a2a-js/sdk/compat/v0_3/server';
import { DefaultExecutionEventBusManager, JsonRpcTransportHandler } from '@a2a-js/sdk/server';
import { agentCard } from '../worker/a2a/card';
import { jsonRpcError, type A2AVersion } from '../worker/a2a/rpc-error';
import type { AgentConfig } from '../worker/schemas/agent';
import { A2AStore, pushStore, type A2AStoreHooks } from './a2a-store';
import { A2A_TURN_TIMEOUT_MS, GatewayExecutor, type ExecutorHost, type TurnInput } from './a2a-executor';
import { GatewayRequestHandler } from './a2a-handler';
import { withLegacyBlocking, withLegacyConfigId, withLegacyFinal } from './a2a-legacy';
import { pushConfigProblem } from './a2a-push-limits';
import { pushContentType } from './a2a-push-wire';
import { queuePushes, type QueueDelivery } from './a2a-pushes';
import type { PushChange } from './a2a-push-audit';
import { paramsShapeProblem } from './a2a-params-shape';
import { TurnClaims } from './a2a-turn-claims';
import { A2AStreamSlots, type StreamSlot } from './a2a-stream-slots';
import { a2aStream } from './a2a-stream';
import { agentDeleted, callContext, deletedBeforeTurn, SENDS, shownAnswer, shownError, type TurnMark } from './a2a-internal';
import type { TokenCharge } from './agent-rpc';
import type { AgentStore } from './agent-store';
import type { DeferredSchema } from './agent-schema';
import type { Sql } from './sql';

export { A2A_STREAMS } from './a2a-stream';

/**
 * A JSON-RPC answer, or an SSE stream of them (SendStreamingMessage, SubscribeToTask).
 * `noTurn`: the answer is a send's -32001 for its agent deleted, and the send started no turn
 * (`deletedBeforeTurn`): the edge gives the key's budget back, as for every refusal, where the
 * same answer to a send whose turn had started counts.
 */
export type A2AReply = ({ kind: 'json'; body: unknown; noTurn?: true } | { kind: 'stream'; stream: ReadableStream<Uint8Array> }) & {
  /** The push configs the request saved or deleted, for the edge's audit log (a send saves its config before its first event). */
  pushChanges?: PushChange[];
};

export interface A2ARequest {
  body: unknown;
  /** "1.0", or "0.3" for the v0.3 method names (the edge has checked the A2A-Version header). */
  version: A2AVersion;
  /** The gateway's origin as the client sees it, for the card's interface URL. */
  origin: string;
  /** The gateway's request id, for the logs of an internal error. */
  requestId?: string;
  /** The key's token reservation for the turn a send starts (a key with a token budget). */
  charge?: TokenCharge;
  /** The calling key, which a stream's slot is counted for (its cap across agents). Absent from an edge of an earlier release. */
  keyId?: string;
}

export { pushDeliveryTarget } from './a2a-pushes';

export interface A2AHooks extends A2AStoreHooks {
  /** Runs `insert` (a turn's execution and its link) in one transaction with the change's records, then starts it. */
  startTurn(executionId: string, insert: (now: number) => void, charge?: TokenCharge): void;
  /** Queues one delivery in the webhook machinery (inside the caller's transaction); with `failure`, one failed for good. */
  queueDelivery: QueueDelivery;
}

/**
 * The agent as an A2A server: the SDK's JSON-RPC handlers (v1.0, and v0.3 through its
 * compatibility layer) over its request handler with the gateway's rules (a2a-handler.ts),
 * with the task store on this object's SQLite and executions run by the agent's own runner.
 */
export class A2AServer {
  readonly tasks: A2AStore;
  /** The streams this object holds open for A2A clients: slots of the agent's stream cap. */
  readonly streams = new A2AStreamSlots();
  private readonly executor: GatewayExecutor;
  private readonly buses = new DefaultExecutionEventBusManager();
  private readonly watchers = new Map<string, Set<() => void>>();
  private readonly claims = new TurnClaims();
  private handlers: { key: string; v1: JsonRpcTransportHandler; legacy: LegacyJsonRpcTransportHandler } | undefined;

  constructor(
    private readonly sql: Sql,
    schema: DeferredSchema,
    private readonly store: AgentStore,
    private readonly hooks: A2AHooks,
  ) {
    this.tasks = new A2AStore(sql, schema, store, hooks);
    const host: ExecutorHost = {
      store,
      tasks: this.tasks,
      startTurn: (turn) => this.startTurn(turn),
      watch: (id, listener) => this.watch(id, listener),
    };
    this.executor = new GatewayExecutor(host);
  }

  /** `slot`: the stream cap's slot a streaming method took (a2a-stream-slots.ts), given back when its stream ends. */
  async handle(config: AgentConfig, request: A2ARequest, slot?: StreamSlot): Promise<A2AReply> {
    const turn = SENDS.has((request.body as Record<string, unknown>).method) ? { started: false } : undefined;
    try {
      return await this.served(config, request, turn, slot);
    } finally {
      // Answered (a stream: its first event sent), the request's turn has started or never will.
      if (turn) this.claims.release(turn);
    }
  }

  private async served(config: AgentConfig, request: A2ARequest, turn: TurnMark | undefined, slot: StreamSlot | undefined): Promise<A2AReply> {
    this.tasks.ready();
    const { v1, legacy } = this.handlersFor(config, request.origin);
    const body = withoutTenant(request.body as Record<string, unknown>);
    const requestId = (body.id as string | number | null | undefined) ?? null;
    const logged = { requestId: request.requestId, method: body.method };
    const pushChanges: PushChange[] = [];
    const context = callContext(request.version, logged, request.charge, turn, pushChanges);
    const changes = () => (pushChanges.length > 0 ? { pushChanges: [...pushChanges] } : {});
    const json = (answer: unknown): A2AReply => ({ kind: 'json', body: answer, ...(deletedBeforeTurn(answer, turn) && { noTurn: true as const }), ...changes() });
    const mapError = (error: unknown) => shownError(jsonRpcError(request.version, error), error, logged);
    const problem = paramsShapeProblem(request.version, body.method, body.params) ?? pushConfigProblem(request.version, body.method, body.params);
    if (problem) return { kind: 'json', body: { jsonrpc: '2.0', id: requestId, error: mapError(new RequestMalformedError(problem)) } };
    const answer = request.version === '0.3'
      ? await legacy.handle(withLegacyBlocking(withLegacyConfigId(body, (taskId) => this.tasks.configs(taskId).map((c) => c.id))), context)
      : await v1.handle(body, context);
    if (!(Symbol.asyncIterator in answer)) return json(shownAnswer(answer, logged));
    // As the SDK's own HTTP layer does: an error before the first event is a plain JSON-RPC error.
    const iterator = answer[Symbol.asyncIterator]();
    let first: IteratorResult<unknown>;
    try {
      first = await iterator.next();
    } catch (error) {
      return json({ jsonrpc: '2.0', id: requestId, error: mapError(error) });
    }
    const encoder = new TextEncoder();
    const encode = request.version === '0.3' ? (event: unknown) => encoder.encode(formatSSEEvent(withLegacyFinal(event))) : (event: unknown) => encoder.encode(formatSSEEvent(event));
    const errorFrame = (error: unknown) => encoder.encode(formatSSEErrorEvent({ jsonrpc: '2.0', id: requestId, error: mapError(error) }));
    const stream = a2aStream({ first, iterator, encode, errorFrame }, slot);
    return { kind: 'stream', stream, ...changes() };
  }

  /**
   * After every state change of an execution (inside its transaction): wakes the executor
   * following it, and queues a push notification of the task to each of its configs.
   */
  executionChanged(executionId: string, now: number): void {
    const listeners = this.watchers.get(executionId);
    if (listeners) queueMicrotask(() => { for (const listener of [...listeners]) listener(); });
    queuePushes(this.tasks, this.hooks.queueDelivery, executionId, now);
  }

  /**
   * After the agent's storage was deleted: the requests following its tasks look again now
   * (and end, the task gone) rather than at their next recheck.
   */
  agentDeleted(): void {
    this.tasks.invalidate();
    const listeners = [...this.watchers.values()].flatMap((set) => [...set]);
    queueMicrotask(() => { for (const listener of listeners) listener(); });
  }

  /** The URL and headers of a push delivery (A2A's auth, not Standard Webhooks signing); null if the config is gone. */
  pushTarget(target: string): { url: string; headers: Record<string, string> } | null {
    const [, taskId, configId] = /^a2a:([^:]+):(.+)$/.exec(target) ?? [];
    const found = taskId && configId ? this.tasks.pushConfigs(taskId).find((c) => c.config.id === configId) : undefined;
    if (!found) return null;
    const { config } = found;
    const headers: Record<string, string> = { 'content-type': pushContentType(found.wire) };
    if (config.token) headers['x-a2a-notification-token'] = config.token;
    if (config.authentication?.scheme && config.authentication.credentials) headers.authorization = `${config.authentication.scheme} ${config.authentication.credentials}`;
    return { url: config.url, headers };
  }

  private startTurn(turn: TurnInput): void {
    // The SDK may have awaited since the request came (a push URL's check), and a deletion of the
    // agent begun or ended meanwhile would wipe the turn: it fails as a send open at the deletion does.
    if (!this.hooks.live()) throw agentDeleted(turn.taskId);
    this.hooks.startTurn(turn.executionId, (now) => {
      this.store.insertExecution({ id: turn.executionId, intent: 'a2a.message', input: turn.input, idempotencyKey: null, deadlineAt: now + A2A_TURN_TIMEOUT_MS, now, running: false });
      this.tasks.link(turn.taskId, turn.contextId, turn.executionId, turn.turn, turn.task, now);
    }, turn.charge);
  }

  private watch(executionId: string, listener: () => void): () => void {
    const set = this.watchers.get(executionId) ?? new Set();
    set.add(listener);
    this.watchers.set(executionId, set);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.watchers.delete(executionId);
    };
  }

  /** The handlers for the current card; rebuilt when the config or origin changes it. */
  private handlersFor(config: AgentConfig, origin: string) {
    const card = agentCard(config, origin);
    const key = JSON.stringify(card);
    if (this.handlers?.key === key) return this.handlers;
    const handler = new GatewayRequestHandler(AgentCard.fromJSON(card), this.tasks, this.executor, this.buses, pushStore(this.tasks, this.sql), this.claims);
    this.handlers = { key, v1: new JsonRpcTransportHandler(handler), legacy: new LegacyJsonRpcTransportHandler(handler) };
    return this.handlers;
  }
}

/**
 * The request without A2A's `tenant` param. The SDK scopes its event buses by it, so a send
 * naming a tenant was followed only by requests naming the same one: a SubscribeToTask without
 * it ended at once, and a CancelTask without it took the SDK's no-listener path (two cancel
 * messages in the history). Here the tenant is the API key's, and this object serves one
 * tenant's one agent: the param has nothing to scope.
 */
function withoutTenant(body: Record<string, unknown>): Record<string, unknown> {
  const params = body.params;
  if (typeof params !== 'object' || params === null || !('tenant' in params)) return body;
  const { tenant: _tenant, ...rest } = params as Record<string, unknown>;
  return { ...body, params: rest };
}
