import type { Env } from '../worker/env';
import { regionTags } from '../worker/agents/placement';
import { mergePatch } from '../worker/lib/json-merge-patch';
import { isTransientStorageError } from '../worker/lib/storage-errors';
import { exceedsJsonBytes } from '../worker/lib/json-limits';
import { CANCELLED_ERROR, MAX_OUTPUT_BYTES, TERMINAL, type Execution } from '../worker/schemas/execution';
import { MAX_CONTEXT_BYTES } from '../worker/schemas/agent';
import { messageOf } from '../worker/upstream/builtin';
import { invokeUpstream } from '../worker/upstream/invoke';
import { outboundPolicy } from '../worker/upstream/outbound-guard';
import { resolveUpstream } from '../worker/upstream/resolve';
import type { HistoryEntry, InvokeOutcome } from '../worker/upstream/types';
import type { AgentRow, ExecutionRow } from './agent-rows';
import type { AgentStore } from './agent-store';
import { runRequest } from './run-request';
import { runFault } from './run-fault';
import { logFinished } from './execution-log';

/** Upper bound on upstream attempts for one execution, across restarts of the object. */
export const MAX_TOTAL_ATTEMPTS = 5;
export { MAX_CONTEXT_BYTES, MAX_OUTPUT_BYTES };
/** Waits before writing an outcome again after storage refused it (its transaction rolled back). */
const FINISH_RETRY_MS = [50, 250, 1_000];

type Decision = {
  status: 'succeeded' | 'failed';
  result: Parameters<AgentStore['finishExecution']>[2];
  context?: Record<string, unknown>;
  turns?: HistoryEntry[];
};

/** What the runner needs from the agent object around it. */
export interface RunnerHooks {
  /** Records an execution's state change (outbox, event log, webhooks), inside its transaction; `row` as just written. */
  changed(id: string, now: number, row?: ExecutionRow): void;
  /** After changes, outside any transaction: deliver the outbox and keep the alarm armed. */
  settled(): void;
  /** A run is about to wait on a remote upstream: the alarm must be near enough to resume it after a restart. */
  waiting(): void;
  /** Whether a prepared transaction holds the context (a context patch must not land). */
  contextLocked(): boolean;
  /** The execution as the API shows it (from `row` when the caller has it), or null if the agent is gone. */
  view(id: string, row?: ExecutionRow): Execution | null;
}

/**
 * Runs one agent's executions: at most `concurrency` at once, the rest in order; each against
 * its upstream with retries and a deadline; every outcome written in one transaction. Running
 * work is tracked in memory, so a row `running` that this instance does not hold was left by an
 * earlier instance (a restart) and is run again, with the same Idempotency-Key upstream.
 */
export class ExecutionRunner {
  private readonly inflight = new Map<string, AbortController>();
  /** The runs of `inflight` waiting on a remote upstream: a restart would orphan them. */
  private readonly remote = new Set<string>();
  /** Sync callers waiting for an execution; `null` tells them the agent is gone. */
  private readonly waiters = new Map<string, ((finished?: ExecutionRow | null) => void)[]>();
  private orphansResumed = false;
  /** Set once the queue was seen empty, cleared by every new execution: while set, pumping costs no statement. */
  private queueEmpty = false;
  /** A run ended without writing its outcome (storage refused): its row says `running` until the watchdog resumes it. */
  private outcomeUnwritten = false;
  /** The timer that fails the first queued execution at its deadline, and when it fires. */
  private expiry: { at: number; timer: ReturnType<typeof setTimeout> } | undefined;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly env: Env,
    private readonly store: AgentStore,
    private readonly hooks: RunnerHooks,
  ) {}

  /**
   * Whether no execution of this agent is running, known without a read: this instance took over
   * what an earlier one left running, runs nothing now, and wrote every outcome (every row marked
   * running has its run here from the same synchronous turn on).
   */
  knowsNoneRunning(): boolean {
    return this.orphansResumed && this.inflight.size === 0 && !this.outcomeUnwritten;
  }

  /** Whether a run waits on a remote upstream (the alarm must stay near: BackgroundWork.watchRunning). */
  waitsRemote(): boolean {
    return this.remote.size > 0;
  }

  /** Cancels an unfinished execution (REST and A2A alike), ended `now`; false if it had finished. */
  cancel(id: string, now = Date.now()): boolean {
    const execution = this.store.execution(id);
    if (!execution || TERMINAL.has(execution.status)) return false;
    this.storage.transactionSync(() => {
      this.store.finishExecution(execution, 'cancelled', { error: { ...CANCELLED_ERROR } }, now);
      this.hooks.changed(id, now);
    });
    this.abort(id);
    this.notify(id);
    this.pump();
    this.hooks.settled();
    return true;
  }

  /** Aborts the upstream call of a running execution (its state was written by the caller). */
  abort(id: string): void { this.inflight.get(id)?.abort(); }

  /**
   * Aborts everything in flight and releases every waiter as for a deleted agent (the agent is
   * being deleted): their rows are not finished, so waiting for that would last to the deadline.
   */
  abortAll(): void {
    // Its queue goes with it: the aborted runs' ends must not pump into tables being deleted.
    this.queueEmpty = true;
    clearTimeout(this.expiry?.timer);
    this.expiry = undefined;
    for (const controller of this.inflight.values()) controller.abort();
    const waiting = [...this.waiters.values()].flat();
    this.waiters.clear();
    for (const resolve of waiting) resolve(null);
  }

  /** Starts queued executions while slots are free (none while paused); fails expired ones. */
  pump(options: { queued?: boolean } = {}): void {
    if (options.queued) this.queueEmpty = false;
    const row = this.store.agentRow();
    if (!row) return;
    if (!this.orphansResumed) this.resumeOrphans();
    if (this.queueEmpty) return;
    // The head of the queue first: an empty queue (the usual case after a run) costs one read.
    let next = this.store.nextQueued();
    if (!next) {
      this.queueEmpty = true;
      return;
    }
    const now = Date.now();
    const expired = this.store.expiredQueued(now);
    for (const { id } of expired) {
      this.finish(id, { ok: false, attempts: 0, cancelled: false, error: { code: 'upstream_timeout', message: 'deadline passed while queued' } });
    }
    // Failures written here reach D1 and webhooks now, not at the watchdog alarm (a poll settles them too).
    if (expired.length > 0) this.hooks.settled();
    if (row.paused) {
      this.armExpiry();
      return;
    }
    const { concurrency } = this.store.config(row);
    let running = this.store.counts().running;
    if (expired.length > 0) next = this.store.nextQueued();
    while (running < concurrency && next) {
      const id = next.id;
      // The row as marked (RETURNING) goes to the run: it need not read it back.
      const marked = this.storage.transactionSync(() => {
        const written = this.store.markRunning(id, now);
        this.hooks.changed(id, now, written);
        return written;
      });
      running++;
      void this.run(id, marked);
      next = running < concurrency ? this.store.nextQueued() : undefined;
      if (!next && running < concurrency) this.queueEmpty = true;
    }
    if (!this.queueEmpty) this.armExpiry();
  }

  /**
   * Fails the first queued execution at its deadline while it waits (for a slot, or a paused
   * agent): otherwise status, the event stream, webhooks and D1 kept it `queued` until a poll
   * of it or the watchdog alarm, up to 30 s later. The alarm still covers an evicted instance.
   */
  private armExpiry(): void {
    const at = this.store.firstQueuedDeadline();
    if (at === null || (this.expiry && this.expiry.at <= at)) return;
    clearTimeout(this.expiry?.timer);
    const timer = setTimeout(() => {
      this.expiry = undefined;
      this.pump();
    }, Math.max(0, at - Date.now()));
    this.expiry = { at, timer };
  }

  /**
   * A new instance takes up at once what the last one left (runs orphaned by a restart, a
   * queue), on its first request of any kind: the watchdog alarm is up to 30 s out, as late as
   * a default deadline, so work left for it would be resumed only to fail. One read when
   * nothing was left, which the first execution would otherwise make (`learnQueue`).
   */
  wake(): void {
    this.learnQueue();
    if (!this.queueEmpty) this.pump();
  }

  /**
   * A queued row whose deadline has passed is failed now, as the next pump would fail it, so a
   * poll does not show it waiting until a slot frees; returns the row as it now is.
   */
  settleExpired(row: ExecutionRow | undefined): ExecutionRow | undefined {
    if (row?.status !== 'queued' || row.deadline_at > Date.now()) return row;
    this.pump();
    return this.store.execution(row.id);
  }

  /**
   * Whether an execution accepted now may start at once (not paused, nothing queued ahead of it
   * as far as this instance knows, a slot free): the caller then inserts it running, which
   * spares it the queued row's update and `pump` its queue reads, and calls `start`.
   */
  mayStartAtOnce(row: AgentRow): boolean {
    this.learnQueue();
    return this.orphansResumed && this.queueEmpty && !row.paused && this.inflight.size < this.store.config(row).concurrency;
  }

  /** Runs an execution inserted running (see `mayStartAtOnce`), once its transaction has committed. */
  start(id: string, row: ExecutionRow): void {
    void this.run(id, row);
  }

  /**
   * What a new instance does not know yet (work orphaned by the last one, a queue), learnt in
   * one read; with nothing unfinished, the usual case, its first execution starts at once too.
   */
  private learnQueue(): void {
    if (this.orphansResumed) return;
    const { running, queued } = this.store.counts();
    if (running > 0) this.resumeOrphans();
    else this.orphansResumed = true;
    if (queued === 0) this.queueEmpty = true;
  }

  /**
   * Executions left `running` by an earlier instance of this object, or by a run here whose
   * outcome storage refused, are run again: afterwards every running row has its run here.
   */
  resumeOrphans(): void {
    this.orphansResumed = true;
    this.outcomeUnwritten = false;
    for (const orphan of this.store.byStatus('running')) {
      if (!this.inflight.has(orphan.id)) void this.run(orphan.id, orphan);
    }
  }

  /** Runs one execution; `current` is its row as just read or written in this same turn. */
  private async run(id: string, current: ExecutionRow | undefined): Promise<void> {
    const controller = new AbortController();
    this.inflight.set(id, controller);
    try {
      const row = this.store.agentRow();
      // Kept as written (each attempt's count too), so the finish need not read it back.
      let execution = current;
      if (!row || !execution || execution.status !== 'running') return;
      const config = this.store.config(row);
      const remaining = MAX_TOTAL_ATTEMPTS - execution.attempts;
      if (remaining <= 0) {
        this.finish(id, { ok: false, attempts: execution.attempts, cancelled: false, error: { code: 'upstream_failed', message: 'attempts exhausted across restarts' } });
        return;
      }
      // Before the upstream is resolved (a pool read may wait on D1 for seconds): a restart then
      // left the accepted run to the 30 s watchdog, as late as its default deadline.
      if (config.upstream.kind !== 'builtin') {
        this.remote.add(id);
        this.hooks.waiting();
      }
      const { upstream, maxAttempts, totalMs } = await resolveUpstream(config.upstream, {
        env: this.env,
        tenantId: row.tenant_id, deadlineAt: execution.deadline_at,
        regions: regionTags(config.region ?? this.store.locationHint()),
        policy: outboundPolicy(this.env),
      });
      // Cancelled (or the agent deleted) while the pool loaded: both abort this controller.
      if (controller.signal.aborted) return;
      const outcome = await invokeUpstream(
        upstream,
        runRequest(this.store, {
          executionId: id, agentId: config.id, intent: execution.intent, input: JSON.parse(execution.input ?? 'null') as unknown,
          instructions: config.instructions, history: this.store.history(),
        }),
        {
          deadlineAt: totalMs === undefined ? execution.deadline_at : Math.min(execution.deadline_at, Date.now() + totalMs),
          signal: controller.signal,
          maxAttempts: Math.min(maxAttempts ?? 3, remaining),
          onAttempt: (_attempt, label) => {
            if (execution) execution = this.store.recordAttempt(execution, label);
          },
        },
      );
      await this.finishRetrying(id, outcome, execution);
    } catch (error) {
      try {
        this.finish(id, { ok: false, attempts: 0, cancelled: false, error: runFault(id, error) });
      } catch (unwritten) {
        // The row stays `running`: the watchdog alarm runs it again later.
        this.outcomeUnwritten = true;
        console.error(JSON.stringify({ level: 'error', msg: 'outcome not written; left to the watchdog', executionId: id, error: String(unwritten) }));
      }
    } finally {
      this.inflight.delete(id);
      this.remote.delete(id);
      this.notify(id);
      this.pump();
      this.hooks.settled();
    }
  }

  /**
   * Records an outcome in one transaction: the execution, and on success the context and
   * history. `known`: the execution's row as the run started, if the caller has it (its
   * status may be stale: the update only finishes an execution still unfinished).
   */
  finish(id: string, outcome: InvokeOutcome, known?: ExecutionRow): void {
    if (!outcome.ok && outcome.cancelled) return; // cancel() already wrote the terminal state
    const execution = known ?? this.store.execution(id);
    if (!execution || TERMINAL.has(execution.status)) return;
    const now = Date.now();
    const decided = this.decide(execution, outcome);
    const committed: (() => void)[] = [];
    let finished: ExecutionRow | undefined;
    this.storage.transactionSync(() => {
      finished = this.store.finishExecution(execution, decided.status, decided.result, now);
      if (!finished) return; // finished meanwhile (cancelled while the upstream answered)
      if (decided.context) committed.push(this.store.writeContext(decided.context, now).committed);
      if (decided.turns) committed.push(this.store.appendHistory(id, decided.turns, now));
      this.hooks.changed(id, now, finished);
    });
    for (const after of committed) after();
    // No request waits for it (async, a hook's, A2A's): no request's log line names its outcome.
    if (finished && !this.waiters.has(id)) logFinished(this.env, this.store, finished);
    this.notify(id, finished);
  }

  /**
   * `finish`, written again after a transient refusal of storage (SQLite out of memory, say):
   * the upstream has answered, and failing the execution for a write the runtime refused
   * would make the client run it again, upstream side effects included.
   */
  private async finishRetrying(id: string, outcome: InvokeOutcome, known: ExecutionRow | undefined): Promise<void> {
    for (const delay of FINISH_RETRY_MS) {
      try {
        this.finish(id, outcome, known);
        return;
      } catch (error) {
        if (!isTransientStorageError(error)) throw error;
        console.warn(JSON.stringify({ level: 'warn', msg: 'outcome not written; retrying', executionId: id, error: String(error) }));
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
    this.finish(id, outcome, known);
  }

  /** What an outcome makes of an execution: its end, and on success the new context and turns. */
  private decide(execution: ExecutionRow, outcome: InvokeOutcome): Decision {
    const failed = (code: string, message: string): Decision => ({ status: 'failed', result: { error: code === 'agent_locked' ? { code, message } : { code, message, retryable: false } } });
    if (!outcome.ok) return { status: 'failed', result: { error: outcome.error } };
    const { output, contextPatch } = outcome.reply;
    if (contextPatch && this.hooks.contextLocked()) {
      // The context belongs to a prepared transaction: writing over it would be lost or
      // overwritten by the commit, so the execution fails and the client may run it again.
      return failed('agent_locked', 'a transaction holds this agent\'s context; the context patch was not applied');
    }
    if (exceedsJsonBytes(output ?? null, MAX_OUTPUT_BYTES)) return failed('output_too_large', `the upstream's output exceeds ${MAX_OUTPUT_BYTES} bytes`);
    let context: Record<string, unknown> | undefined;
    if (contextPatch) {
      context = mergePatch(this.store.context().data, contextPatch) as Record<string, unknown>;
      if (exceedsJsonBytes(context, MAX_CONTEXT_BYTES)) return failed('context_too_large', `context would exceed ${MAX_CONTEXT_BYTES} bytes`);
    }
    const reply = typeof output === 'object' && output !== null && 'reply' in output && typeof output.reply === 'string' ? output.reply : JSON.stringify(output);
    const turns: HistoryEntry[] = [
      { role: 'user', content: messageOf({ intent: execution.intent, input: JSON.parse(execution.input ?? 'null') as unknown }) },
      { role: 'assistant', content: reply },
    ];
    return { status: 'succeeded', result: { output }, context, turns };
  }

  /**
   * Resolves with the execution once it is finished (or its deadline has passed), or null if
   * the agent was deleted meanwhile.
   */
  waitForFinish(id: string, known?: ExecutionRow): Promise<Execution | null> {
    // An execution this instance is running is unfinished (its end notifies): no read needed.
    const current = known && this.inflight.has(id) ? known : this.store.execution(id);
    if (!current || TERMINAL.has(current.status)) return Promise.resolve(this.hooks.view(id, current));
    return new Promise((resolve) => {
      // At the deadline a pump fails the execution if it is still queued (which notifies this
      // waiter); one that runs gets a second more to end on its own deadline timer.
      let timer = setTimeout(() => {
        this.pump();
        timer = setTimeout(done, 1_000);
      }, Math.max(0, current.deadline_at - Date.now()));
      const done = (finished?: ExecutionRow | null) => { clearTimeout(timer); resolve(finished === null ? null : this.hooks.view(id, finished)); };
      this.waiters.set(id, [...(this.waiters.get(id) ?? []), done]);
    });
  }

  /** Releases the waiters of an execution once it is finished (`finished`: its final row, if the caller has it). */
  notify(id: string, finished?: ExecutionRow): void {
    const waiting = this.waiters.get(id);
    if (!waiting) return;
    const execution = finished ?? this.store.execution(id);
    if (execution && !TERMINAL.has(execution.status)) return;
    this.waiters.delete(id);
    for (const resolve of waiting) resolve(execution);
  }
}
