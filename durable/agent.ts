import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env';
import { fail, ok, type Result } from '../worker/errors';
import { mergePatch } from '../worker/lib/json-merge-patch';
import { newId } from '../worker/lib/ids';
import { exceedsJsonBytes } from '../worker/lib/json-limits';
import type { Agent, AgentContext, AgentStatus, UpdateAgentBody } from '../worker/schemas/agent';
import type { Execution } from '../worker/schemas/execution';
import { outboundPolicy } from '../worker/upstream/outbound-guard';
import { keepMaskedCredential } from '../worker/upstream/resolve';
import { asAccepted, maskedCredential, toExecution } from './agent-rows';
import { unversioned, updateConfig, type VersionedAgent } from './agent-config';
import { AgentStore } from './agent-store';
import { ExecutionRunner, MAX_CONTEXT_BYTES } from './agent-runner';
import { AgentEvents } from './agent-events';
import { streamRefusal, streamsPerAgent } from './stream-slots';
import { AgentWebhooks, retrySchedule } from './agent-webhooks';
import type { CreateWebhookBody, Delivery, Webhook } from '../worker/schemas/webhook';
import { AgentTransactions, type PrepareInput } from './agent-transactions';
import { lockView, resolveLock, type LockRead, type ResolveLockBody, type Resolved } from './transaction-heuristics';
import { DeferredSchema, migrate } from './agent-schema';
import { BackgroundWork } from './agent-background';
import { ExecutionChanges } from './execution-changes';
import { projectorFor } from './projector';
import { agentDeletedWhileRunning, agentLocked, DEFAULT_TIMEOUT_MS, tellDecided, type CreateAgentInput, type ExecuteInput, type ExecuteResult } from './agent-rpc';
import { Sql } from './sql';
import { A2AServer, type A2AReply, type A2ARequest } from './a2a';
import { AgentCharges } from './agent-charges';
import { keyReused, priorExecution, recordKeys } from './execution-keys';
import { withSendCharge } from './a2a-charge';
import { withStreamSlot } from './a2a-stream-slots';
import { AgentDeletion, type Deleted } from './agent-deletion';

/**
 * One agent: config, context, history, executions, idempotency keys and outbox, all in this
 * object's SQLite storage. Its single writer: every state change is one synchronous SQLite
 * transaction, so concurrent requests serialise here.
 */
export class AgentDO extends DurableObject<Env> {
  private readonly store: AgentStore;
  /** Which of the tables created on first use (A2A, webhooks, transactions) exist here. */
  private readonly schema: DeferredSchema;
  private readonly events: AgentEvents;
  private readonly webhooks: AgentWebhooks;
  private readonly tx: AgentTransactions;
  /** Executions this instance is running, by id: anything `running` but not here is orphaned. */
  private readonly runner: ExecutionRunner;
  private readonly background: BackgroundWork;
  private readonly a2aServer: A2AServer;
  /** What each execution state change records (outbox row, events, webhooks, A2A pushes, snapshot). */
  private readonly changes: ExecutionChanges;
  /** What executions owe their keys' token budgets (durable/agent-charges.ts). */
  private readonly charges: AgentCharges;
  private readonly deletion: AgentDeletion;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = new Sql(ctx.storage.sql);
    this.schema = new DeferredSchema(sql, ctx.storage);
    this.store = new AgentStore(sql, this.schema);
    this.charges = new AgentCharges(sql, this.schema, env);
    this.events = new AgentEvents(sql, ctx, env.DB);
    this.webhooks = new AgentWebhooks(sql, this.schema, () => outboundPolicy(env), (target) => this.a2aServer.pushTarget(target), retrySchedule(env.WEBHOOK_RETRY_SCHEDULE_MS));
    this.a2aServer = new A2AServer(sql, this.schema, this.store, {
      cancel: (id, at) => this.runner.cancel(id, at),
      outboundPolicy: () => outboundPolicy(env),
      live: () => this.tx.liveRow() !== undefined,
      startTurn: (id, insert, charge) => {
        const now = Date.now();
        if (charge) this.charges.prepare();
        this.ctx.storage.transactionSync(() => {
          insert(now);
          if (charge) this.charges.hold(id, charge);
          this.changes.record(id, now);
        });
        this.runner.pump({ queued: true });
        this.background.afterChange();
      },
      queueDelivery: (target, type, payload, now, failure) => this.webhooks.queue(target, type, payload, now, failure),
    });
    this.background = new BackgroundWork(ctx.storage, (tenant, config) => projectorFor(env, tenant, config.id, config.jurisdiction), this.store, this.webhooks, (now) => this.prune(now), () => this.view(), this.charges);
    this.changes = new ExecutionChanges(this.store, this.events, this.webhooks, this.a2aServer, () => this.background.snapshotStale(), this.charges);
    this.runner = new ExecutionRunner(ctx.storage, env, this.store, {
      changed: (id, now, row) => this.changes.record(id, now, row),
      settled: () => this.background.afterChange(),
      waiting: () => this.background.watchRunning(),
      contextLocked: () => this.tx.lock() !== undefined,
      view: (id, row) => this.store.executionOrNull(id, row),
    });
    this.tx = new AgentTransactions(ctx.storage, sql, this.schema, this.store, env, {
      maxContextBytes: MAX_CONTEXT_BYTES,
      enqueueAgent: () => this.background.snapshotStale(),
      publish: (type, data, now) => {
        this.events.record(type, data, now);
        this.webhooks.fanOut(type, data, now);
      },
    });
    this.deletion = new AgentDeletion(ctx.storage, this.store, this.tx, {
      abortRunning: () => this.runner.abortAll(),
      settle: async () => { await this.background.idle(); await this.charges.settleBeforeDelete(); },
      lastSeq: () => this.events.highestSeqEver(),
      wiped: (lastSeq) => {
        this.store.invalidate();
        this.schema.forget();
        this.webhooks.invalidate();
        this.background.alarmAt = null;
        this.store.seed(migrate(new Sql(ctx.storage.sql), ctx.storage));
        this.events.agentDeleted(lastSeq);
        this.a2aServer.agentDeleted();
      },
    });
    void ctx.blockConcurrencyWhile(async () => {
      this.store.seed(migrate(sql, ctx.storage));
      await this.background.start(); // what a restart left undelivered goes now, not at the alarm
      this.runner.wake(); // work a restart left resumes now, not at the watchdog alarm
    });
  }

  // --- agent ---

  async create(input: CreateAgentInput): Promise<Result<Agent>> {
    if (input.config.upstream && !keepMaskedCredential(input.config.upstream, undefined)) return maskedCredential(input.config.upstream);
    const existing = this.store.agentRow();
    if (existing) {
      // The same create again (an RPC retried after a transient error) succeeds once more.
      const same = existing.tenant_id === input.tenantId && existing.created_at === input.createdAt && existing.config === JSON.stringify(input.config);
      if (input.adoptedClaim) this.background.registryHolds(false); // lost a race for the claim
      return same ? ok(this.view()) : fail('conflict', `agent ${input.config.id} already exists`);
    }
    const now = input.createdAt;
    this.ctx.storage.transactionSync(() => {
      this.store.insertAgent(input.tenantId, input.config, now);
      if (input.locationHint) this.store.setMeta('location_hint', input.locationHint);
    });
    // The Worker registered the agent in D1 with this very snapshot before calling (unless it
    // took over a claim): a new agent has nothing to send, so creation costs no flush, no alarm.
    this.background.registryHolds(!input.adoptedClaim);
    return ok(this.view(0)); // nothing has run yet: no count needed
  }

  async get(): Promise<Result<Agent>> {
    return this.store.agentRow() ? ok(this.view()) : this.notFound();
  }

  async read(): Promise<Result<VersionedAgent>> {
    const row = this.store.agentRow();
    return row ? ok({ agent: this.view(), version: row.rev }) : this.notFound();
  }

  async update(patch: UpdateAgentBody): Promise<Result<Agent>> {
    return unversioned(await this.reconfigure(patch));
  }

  async reconfigure(patch: UpdateAgentBody, ifVersion?: readonly number[]): Promise<Result<VersionedAgent>> {
    const written = this.tx.closedForDelete() ? this.notFound() : updateConfig(this.store, patch, ifVersion, (update) => this.ctx.storage.transactionSync(() => { update(); this.background.snapshotStale(); }));
    if (written.ok) this.runner.pump();
    return written.ok ? this.changed(await this.read()) : written;
  }

  /** Deletes everything the agent holds, then the Worker its D1 rows; given `createdAt` (the DELETE's registry row), only the agent created then. */
  async destroy(createdAt?: number): Promise<Deleted> {
    return this.deletion.destroy(createdAt);
  }

  // --- executions ---

  async execute(request: ExecuteInput): Promise<Result<ExecuteResult>> {
    // Fitted before the lookup: asking the key's limiter awaits, and nothing may await between the lookup and the insert.
    const charge = request.charge && (await this.charges.fitExecution(request.charge, this.store, request));
    const row = this.tx.liveRow(); // none while a deletion under way would wipe it
    if (!row) return this.notFound();
    const agentId = this.store.config(row).id;
    // No await from lookup to insert, so concurrent deliveries of one call (or requests with one key) cannot both miss it; an edge-named call's first delivery skips the lookup unless it awaited its limiter.
    if (!request.freshKey || request.charge) {
      const prior = priorExecution(this.store, request);
      if (prior) {
        const { first } = prior;
        if (keyReused(prior, request)) return fail('idempotency_key_reused', 'this Idempotency-Key was used with a different request', { executionId: first.id });
        // A fresh instance (after a reset) resumes orphaned work now, not at the next watchdog alarm, so a replayed sync call does not wait for it.
        this.runner.pump();
        tellDecided(request, first.id !== request.executionId);
        const execution = request.mode === 'sync' ? await this.runner.waitForFinish(first.id) : toExecution(first, agentId);
        return execution ? ok({ execution, replayed: first.id !== request.executionId }) : this.notFound();
      }
    }
    if (request.replayOnly) return fail('not_found', 'no execution was started with this key');
    if (request.mode === 'sync' && row.paused) return fail('agent_paused', 'the agent is paused; use mode "async" to queue work');
    const now = Date.now();
    const id = request.executionId ?? newId('ex');
    if (charge && !charge.ok) return charge;
    const running = this.runner.mayStartAtOnce(row);
    const inserted = this.ctx.storage.transactionSync(() => {
      const written = this.store.insertExecution({
        id, intent: request.intent, input: request.input, idempotencyKey: request.idempotencyKey ?? null,
        deadlineAt: now + (request.timeoutMs ?? DEFAULT_TIMEOUT_MS), now, running,
      });
      recordKeys(this.store, request, id, now);
      if (charge) this.charges.hold(id, charge.value);
      this.changes.record(id, now, written, running);
      return written;
    });
    if (running) this.runner.start(id, inserted);
    else this.runner.pump({ queued: true });
    this.background.afterChange(true);
    tellDecided(request, false);
    if (request.mode === 'async') return ok({ execution: toExecution(asAccepted(inserted), agentId), replayed: false });
    const finished = await this.runner.waitForFinish(id, inserted);
    // Settled before the answer, so the key's usage shows a sync execution once it is answered.
    if (request.charge) await this.charges.send();
    return finished ? ok({ execution: finished, replayed: false }) : agentDeletedWhileRunning(id);
  }

  async getExecution(id: string): Promise<Result<Execution>> {
    if (!this.store.agentRow()) return this.notFound();
    const row = this.runner.settleExpired(this.store.execution(id));
    const execution = row ? this.store.executionOrNull(id, row) : null;
    return execution ? ok(execution) : fail('not_found', `execution ${id} not found`);
  }

  /** Whether an execution here holds a key's token reservation: its limiter asks when the edge's call went unanswered. */
  async holdsCharge(chargeId: string): Promise<boolean> {
    return this.charges.holds(chargeId);
  }

  /** The execution an idempotency key started, if the key is still kept: a lookup that starts nothing. */
  async executionByKey(key: string): Promise<Result<Execution>> {
    const seen = this.store.agentRow() ? this.store.idempotency(key) : undefined;
    return seen ? this.getExecution(seen.execution_id) : fail('not_found', 'no execution was started with this key');
  }

  async cancel(id: string): Promise<Result<Execution>> {
    const row = this.tx.liveRow();
    if (!row) return this.notFound();
    const execution = this.store.execution(id);
    if (!execution) return fail('not_found', `execution ${id} not found`);
    if (!this.runner.cancel(id)) return fail('already_finished', `execution ${id} already ${execution.status}`, { execution: toExecution(execution, this.store.config(row).id) });
    return ok(this.store.executionView(id));
  }

  // --- Agent2Agent (durable/a2a.ts): one JSON-RPC request, the caller authenticated and A2A-Version checked by the edge; a stream takes a slot of the stream cap before a send is charged (durable/a2a-stream-slots.ts) ---

  async a2a(request: A2ARequest): Promise<Result<A2AReply>> {
    const row = this.tx.liveRow();
    return row ? withStreamSlot(this.a2aServer.streams, request, this.streamRefusal, (slot) => withSendCharge(this.charges, this.store.config(row), this.store, request, (config, fitted) => this.a2aServer.handle(config, fitted, slot), () => this.tx.liveRow()?.created_at === row.created_at)) : this.notFound();
  }

  async status(): Promise<Result<AgentStatus>> {
    const row = this.store.agentRow();
    return row ? ok(this.store.statusView(row)) : this.notFound();
  }

  // --- context ---

  async getContext(): Promise<Result<AgentContext>> {
    return this.store.agentRow() ? ok(this.store.context()) : this.notFound();
  }

  /** `ifVersion`: the version (or any of the versions, an If-Match list; none: only weak tags) the patch applies to. */
  async patchContext(patch: Record<string, unknown>, ifVersion?: number | readonly number[]): Promise<Result<AgentContext>> {
    if (!this.tx.liveRow()) return this.notFound();
    const lock = this.tx.lock();
    if (lock) return agentLocked(lock.tx_id);
    const current = this.store.context();
    const expected = ifVersion === undefined ? undefined : [ifVersion].flat();
    if (expected && !expected.includes(current.version)) {
      return fail('version_mismatch', `context is at version ${current.version}, not ${expected.join(' or ') || 'a weak tag (If-Match compares strongly: W/"…" never matches)'}`, { version: current.version });
    }
    const data = mergePatch(current.data, patch) as Record<string, unknown>;
    if (exceedsJsonBytes(data, MAX_CONTEXT_BYTES)) return fail('payload_too_large', `context would exceed ${MAX_CONTEXT_BYTES} bytes`);
    const now = Date.now();
    const { version, committed } = this.ctx.storage.transactionSync(() => {
      this.background.snapshotStale();
      return this.store.writeContext(data, now);
    });
    committed();
    return this.changed(ok({ version, data })); // as written: no read back
  }

  // --- outgoing webhooks and the event stream ---

  async createWebhook(input: CreateWebhookBody): Promise<Result<Webhook & { secret: string }>> {
    return this.tx.liveRow() ? this.webhooks.create(input, Date.now()) : this.notFound();
  }

  async listWebhooks(): Promise<Result<Webhook[]>> {
    return this.store.agentRow() ? ok(this.webhooks.list()) : this.notFound();
  }

  /** `retried`: the edge's own retry, whose first delivery may have deleted it (its reply lost): gone is done. */
  async deleteWebhook(id: string, retried = false): Promise<Result<{ deleted: true }>> {
    if (!this.store.agentRow()) return this.notFound();
    return this.webhooks.delete(id) || retried ? ok({ deleted: true }) : fail('not_found', `webhook ${id} not found`);
  }

  async listDeliveries(options: { status?: string; limit: number; before?: string }): Promise<Result<Delivery[]>> {
    return this.store.agentRow() ? ok(this.webhooks.listDeliveries(options)) : this.notFound();
  }

  async retryDelivery(id: string): Promise<Result<Delivery>> {
    return this.tx.liveRow() ? this.changed(this.webhooks.retry(id, Date.now())) : this.notFound();
  }

  /** Server-sent events of the agent's lifecycle events, resuming after `lastEventId`; ended if `keyId` is revoked; refused past the agent's cap. `head`: a HEAD's answer, null, opening nothing. */
  async subscribe(lastEventId: number | null, keyId?: string, head = false): Promise<Result<ReadableStream<Uint8Array> | null>> {
    if (!this.store.agentRow()) return this.notFound();
    return this.streamRefusal() ?? ok(head ? null : this.events.stream(lastEventId, keyId));
  }

  /** WebSocket upgrades only (RPC cannot carry a socket), authenticated by the Worker; the socket hibernates between events. */
  override async fetch(request: Request): Promise<Response> {
    if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket' || !this.store.agentRow()) return new Response('not found', { status: 404 });
    const refused = this.streamRefusal();
    return refused ? Response.json(refused, { status: 429 }) : this.events.upgrade(request);
  }

  /** Counted and refused in this one turn with the stream's opening, so the cap is exact (durable/stream-slots.ts); A2A streams share it. */
  private streamRefusal = () => streamRefusal(this.events.openStreams() + this.a2aServer.streams.open(), streamsPerAgent(this.env));
  /** Streams of `keyId` open here (SSE, sockets, A2A): its limiter asks, to find leases whose stream ended (durable/key-stream-leases.ts). */
  async eventStreamsOf(keyId: string): Promise<number> { return this.events.openStreams(keyId) + this.a2aServer.streams.open(keyId); }

  // A client's message other than `ping` (the runtime answers that one, see AgentEvents): ignored.
  override async webSocketMessage(_socket: WebSocket, _message: string | ArrayBuffer): Promise<void> {}

  override async webSocketClose(socket: WebSocket, code: number): Promise<void> { this.events.socketClose(socket, code); }

  // --- two-phase commit participant (durable/agent-transactions.ts); an operator's read and resolve of its lock (durable/transaction-heuristics.ts) ---

  /** Phase one: validates the operation against the current context and, on a yes, locks the agent. */
  async prepare(txId: string, input: PrepareInput): Promise<Result<{ version: number }>> {
    if (!this.store.agentRow()) return this.notFound();
    const vote = this.tx.prepare(txId, input, Date.now());
    if (vote.ok) await this.background.armAlarm();
    return vote;
  }

  async commit(txId: string): Promise<ReturnType<AgentTransactions['commit']>> {
    return this.changed(this.tx.commit(txId, Date.now()));
  }

  async abort(txId: string, beganAt?: number): Promise<ReturnType<AgentTransactions['abort']>> {
    return this.changed(this.tx.abort(txId, Date.now(), false, beganAt));
  }

  async transactionLock(): Promise<Result<LockRead>> {
    return this.store.agentRow() ? ok(lockView(this.tx.lock())) : this.notFound();
  }

  async resolveTransaction(txId: string, body: ResolveLockBody): Promise<Result<Resolved>> {
    return this.store.agentRow() ? this.changed(await resolveLock(this.tx, txId, body)) : this.notFound();
  }

  // --- chaos testing ---

  /** Resets this object as a crash would (storage kept), for the chaos suite; only with `ENABLE_CHAOS="true"`, set by no wrangler.toml environment. */
  async chaosRestart(): Promise<Result<never>> {
    if (this.env.ENABLE_CHAOS !== 'true') return fail('not_found', 'chaos hooks are disabled');
    this.ctx.abort('restarted by the chaos suite');
    return fail('internal_error', 'the object did not abort');
  }

  // --- the alarm: watchdog for orphaned work, outbox delivery, prepared transactions ---

  override async alarm(): Promise<void> {
    this.background.alarmAt = null;
    this.runner.resumeOrphans();
    this.runner.pump();
    if (this.store.agentRow()) {
      await Promise.all([this.background.flush(), this.background.deliver()]);
      await this.tx.resolveExpired(Date.now());
      await this.background.flush();
      this.background.retainIfDue();
    }
    await this.background.armAlarm();
    if (this.runner.waitsRemote()) this.background.watchRunning();
  }

  /** Retention: old idempotency keys, finished executions and deliveries beyond the newest 1,000, transaction outcomes, A2A tasks of pruned executions. */
  private prune(now: number): void {
    this.store.prune(now);
    this.webhooks.prune();
    this.tx.prune(now);
    this.a2aServer.tasks.prune();
  }

  /** `running`: how many executions run, if the caller knows; the runner may know none do. Either spares a count. */
  private view(running?: number): Agent {
    const row = this.store.agentRow();
    if (!row) throw new Error('agent row vanished');
    return this.store.agentView(row, running ?? (this.runner.knowsNoneRunning() ? 0 : undefined));
  }

  /** A change that may have queued events, deliveries or a snapshot: sent soon, off the caller's path. */
  private changed<T>(result: Result<T>): Result<T> {
    if (result.ok && this.store.agentRow()) this.background.afterChange();
    return result;
  }

  private notFound = (): Result<never> => fail('not_found', 'agent not found');
}
