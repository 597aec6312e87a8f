import type { Agent, AgentConfig } from '../worker/schemas/agent';
import type { AgentCharges } from './agent-charges';
import type { AgentStore } from './agent-store';
import type { AgentWebhooks } from './agent-webhooks';
import type { OutboxRow } from './agent-rows';
import { drainOutbox, type AgentSnapshot, type ProjectionSink } from './outbox';

/** While work is queued or running the alarm wakes the object at least this often to resume anything orphaned. */
const WATCHDOG_MS = 30_000;
/**
 * While an execution waits on a remote upstream the alarm is kept at most this far out: should
 * the instance go away meanwhile (a restart, an eviction), nothing else starts a new one until a
 * request comes, and the new one must resume the run well before its deadline (30 s by default).
 */
const RUN_WATCHDOG_MS = 5_000;
/** Fallback delivery of the outbox when the immediate flush did not get it all out. */
const OUTBOX_RETRY_MS = 5_000;
/**
 * How far out a change arms the alarm for the rows it just queued. This instance's own flush
 * sends them within BUSY_FLUSH_DELAY_MS; the alarm only covers the instance going away first
 * (and the agent's next request, on a new instance, flushes them sooner). At OUTBOX_RETRY_MS a
 * busy agent's alarm fired every 5 s only to find its outbox already sent.
 */
const FLUSH_FALLBACK_MS = 30_000;
/** Changes within this window reach D1 in one batch: bounds D1 writes for busy agents. */
const FLUSH_DELAY_MS = 250;
/**
 * The window of a busy agent (one that flushed within BUSY_WINDOW_MS): D1 is the one writer
 * every agent's outbox shares, so under load each agent sends fewer, larger batches, and D1
 * lags the agent by up to this much instead of FLUSH_DELAY_MS.
 */
const BUSY_FLUSH_DELAY_MS = 1_000;
/** Flushes closer together than this mark the agent busy: its changes reach D1 in larger batches. */
const BUSY_WINDOW_MS = 2_000;
/** Retention (old keys, finished executions, transaction outcomes) at most this often. */
const RETAIN_EVERY_MS = 5 * 60_000;

/**
 * The agent's work off the request path: the outbox to D1 (with the agent's snapshot, written
 * once per flush), webhook deliveries, and the one alarm, re-armed to the earliest need.
 */
export class BackgroundWork {
  /** When the alarm is set for, as this instance last set or read it. */
  alarmAt: number | null = null;
  private flushChain: Promise<void> = Promise.resolve();
  private flushPending = false;
  /** A restart may have lost a snapshot that was due, so a new instance writes one. */
  private snapshotDirty = true;
  /** The snapshot this instance last handed over (or, refused, left in the outbox for the retry). */
  private lastSnapshot: string | undefined;
  /** When the last flush settled the alarm (an agent flushing again within BUSY_WINDOW_MS is busy). */
  private settledAt = 0;
  /** When retention last ran, in any instance (undefined: not read yet; it is kept in `meta`). */
  private retainedAt: number | undefined;
  /** Whether the last flush left rows in the outbox for a retry (or failed): the alarm must know. */
  private heldBack = true;
  /** A flush here had rows refused by an outage (D1 or the projection stage unreachable), not since followed by one that landed. */
  private outage = false;

  constructor(
    private readonly storage: DurableObjectStorage,
    /** The projection stage for this agent's rows (see durable/projector.ts). */
    private readonly projection: (tenantId: string, config: AgentConfig) => ProjectionSink,
    private readonly store: AgentStore,
    private readonly webhooks: AgentWebhooks,
    private readonly retain: (now: number) => void,
    /** The agent as the API shows it (counting running executions only when the runner cannot tell). */
    private readonly agentView: () => Agent,
    /** What executions owe their keys' token budgets, sent with the deliveries. */
    private readonly charges: AgentCharges,
  ) {
    // Never sooner than a second out, as `nextNeed` arms for deliveries.
    webhooks.onRetryScheduled = (at) => void this.armAt(Math.max(at, Date.now() + 1_000));
  }

  /**
   * A new instance reads its alarm, and sends at once what the last instance left undelivered
   * (outbox rows, deliveries due): the alarm covering them may be up to FLUSH_FALLBACK_MS out,
   * and until then D1 lists and webhook receivers would not see what the agent already shows.
   * No alarm armed means nothing was left (every change arms it), and costs no read.
   */
  async start(): Promise<void> {
    this.alarmAt = await this.storage.getAlarm();
    if (!this.store.agentRow()) return;
    // No alarm, yet a lock or a delivery waiting on one (it failed past the runtime's retries):
    // nothing else would ever ask the lock's coordinator, so the lock would be held for good.
    if (this.alarmAt === null && this.store.hasTimedFeatures()) return this.armAlarm();
    if (this.alarmAt === null) return;
    const { outboxAt, deliveryAt } = this.store.alarmNeeds();
    if (outboxAt !== null || (deliveryAt !== null && deliveryAt <= Date.now())) this.afterChange();
  }

  /**
   * Marks the agent's D1 snapshot out of date. The snapshot row is written once per flush, not
   * once per change: it only summarises state that is durable here already.
   */
  snapshotStale(): void {
    this.snapshotDirty = true;
  }

  /**
   * At creation: whether the D1 registry holds this agent's snapshot (the Worker wrote it with
   * its claim), or another request's (a claim taken over, see `adoptOrphanedClaim`), which
   * the agent's own snapshot then replaces through the outbox.
   */
  registryHolds(current: boolean): void {
    this.snapshotDirty = !current;
    if (!current) this.afterChange();
  }

  /**
   * After a change: deliver the outbox soon (off the request's path) and keep the alarm armed
   * as the fallback should this instance go away before then. An alarm already due within
   * FLUSH_FALLBACK_MS covers any change (a flush that leaves rows behind re-arms precisely), so
   * most changes of a busy agent cost no alarm bookkeeping at all. `queued`: the change put
   * rows in the outbox, so the alarm is needed exactly FLUSH_FALLBACK_MS out (the earliest
   * any row or running execution asks for) unless deliveries or a prepared transaction ask
   * for sooner; without those, no read is needed to know it.
   */
  afterChange(queued = false): void {
    if (!this.flushPending) {
      this.flushPending = true;
      setTimeout(() => {
        this.flushPending = false;
        void Promise.all([this.flush(), this.webhooks.hasQueued() ? this.deliver() : this.charges.send()]).then(() => {
          this.retainIfDue();
          return this.settle();
        });
      }, Date.now() - this.settledAt < BUSY_WINDOW_MS ? BUSY_FLUSH_DELAY_MS : FLUSH_DELAY_MS);
    }
    if (this.alarmAt === null || this.alarmAt > Date.now() + FLUSH_FALLBACK_MS) {
      void (queued && !this.store.hasTimedFeatures() ? this.armAt(Date.now() + FLUSH_FALLBACK_MS) : this.armAlarm(FLUSH_FALLBACK_MS));
    }
  }

  /**
   * An execution waits on a remote upstream: the alarm is brought within RUN_WATCHDOG_MS (one
   * storage write at most every RUN_WATCHDOG_MS per agent; the alarm handler calls this again
   * while such a run goes on). An in-process upstream never waits across a restart: its accept
   * and finish commit together.
   */
  watchRunning(): void {
    const due = Date.now() + RUN_WATCHDOG_MS;
    if (this.alarmAt === null || this.alarmAt > due) void this.armAt(due);
  }

  /**
   * Runs retention if it is due. From the flush as well as the alarm: a healthy agent's alarm
   * is deleted after each flush and may never fire, and retention must not depend on it.
   */
  retainIfDue(): void {
    const now = Date.now();
    if (!this.store.agentRow()) return;
    // Kept in storage, not per instance: an agent whose object is evicted and started again
    // between requests is pruned every RETAIN_EVERY_MS, not on every start.
    this.retainedAt ??= Number(this.store.meta('retained_at') ?? 0);
    if (now - this.retainedAt < RETAIN_EVERY_MS) return;
    this.retainedAt = now;
    this.storage.transactionSync(() => {
      this.retain(now);
      this.store.setMeta('retained_at', String(now));
    });
  }

  /** Resolves when the flush in progress (if any) has ended. */
  idle(): Promise<void> {
    return this.flushChain;
  }

  flush(): Promise<void> {
    this.flushChain = this.flushChain
      .then(async () => {
        this.heldBack = true;
        const row = this.store.agentRow();
        if (!row) return;
        const snapshot = this.snapshotDirty ? this.snapshotRow(Date.now()) : undefined;
        this.snapshotDirty = false;
        const config = this.store.config(row);
        const sink = this.projection(row.tenant_id, config);
        // A batch short of full (or refused) ends the flush: what is left waits for the next.
        let held = false;
        let pending = snapshot;
        try {
          for (;;) {
            const drained = await drainOutbox(sink, this.store, row.tenant_id, config.id, { pending });
            pending = undefined;
            held ||= drained.held;
            if (drained.outage) this.outage = true;
            else if (this.outage && drained.landed && !drained.held) {
              // D1 answers again: what it refused meanwhile goes now, not at the end of its
              // backoff (up to 5 minutes, which the lists would lag by).
              this.outage = false;
              this.store.outboxDueNow(Date.now());
              continue;
            }
            if (!drained.more) break;
          }
        } catch (error) {
          if (pending) this.snapshotDirty = true; // never handed over: the next flush builds it again
          throw error;
        }
        // Landed, or written to the outbox for a retry: either way not to be sent again.
        if (snapshot) this.lastSnapshot = snapshot.payload;
        this.heldBack = held;
      })
      .catch((error: unknown) => console.error(JSON.stringify({ level: 'error', msg: 'outbox flush failed', error: String(error) })));
    return this.flushChain;
  }

  async deliver(): Promise<void> {
    try {
      await this.webhooks.deliverDue();
    } catch (error) {
      console.error(JSON.stringify({ level: 'error', msg: 'webhook delivery failed', error: String(error) }));
    }
    await this.charges.send();
  }

  /** Arms the alarm for the earliest need; `outboxLead`: how long due outbox rows are left to a flush first. */
  async armAlarm(outboxLead = OUTBOX_RETRY_MS): Promise<void> {
    const now = Date.now();
    // Nothing is ever due sooner than a second from now: an alarm that close needs no checks.
    if (this.alarmAt !== null && this.alarmAt <= now + 1_000) return;
    await this.armAt(this.nextNeed(now, outboxLead));
  }

  /** Arms the alarm for `due` unless it is already set as early (Infinity: nothing to arm). */
  private async armAt(due: number): Promise<void> {
    if (due === Infinity || (this.alarmAt !== null && this.alarmAt <= due)) return;
    this.alarmAt = due;
    await this.storage.setAlarm(due);
  }

  /**
   * After a flush: when nothing is left for the alarm (outbox delivered, no work in flight, no
   * delivery or prepared transaction waiting), the fallback alarm of an agent not otherwise in
   * use is removed, so an agent used once does not wake again later only to find nothing to
   * do; otherwise it is armed for the earliest need.
   */
  private async settle(): Promise<void> {
    const now = Date.now();
    // Flushed before within the alarm's own lead: the agent is in use, if not busy.
    const inUse = now - this.settledAt < FLUSH_FALLBACK_MS;
    this.settledAt = now;
    // An agent in use keeps its armed alarm as it is, unread, when this flush left nothing
    // behind: every change leaves the alarm at most FLUSH_FALLBACK_MS out (`afterChange`), which
    // covers the watchdog of anything still running, and a row written since the flush read the
    // outbox has a flush of its own scheduled. Deliveries and prepared transactions have timings
    // of their own that only the read knows: agents with those read.
    if (inUse && this.alarmAt !== null && !this.heldBack && !this.charges.held && !this.store.hasTimedFeatures()) return;
    if (this.alarmAt !== null && this.nextNeed(now) === Infinity) {
      // An agent in use keeps its armed alarm: removing it after every flush only to set it
      // again at the next change cost two storage operations per execution for an agent used
      // every few seconds. It fires at most once per FLUSH_FALLBACK_MS, finds nothing to do, and
      // is not set again until the next change.
      if (inUse) return;
      this.alarmAt = null;
      await this.storage.deleteAlarm();
      return;
    }
    await this.armAlarm();
  }

  /** When the alarm is next needed (Infinity: never, as things stand). */
  private nextNeed(now: number, outboxLead = OUTBOX_RETRY_MS): number {
    if (!this.store.agentRow()) return Infinity;
    const { active, outboxAt, deliveryAt, preparedExpiry } = this.store.alarmNeeds();
    const chargeAt = this.charges.nextAt();
    return Math.min(
      chargeAt === null ? Infinity : Math.max(chargeAt, now + 1_000),
      active > 0 ? now + WATCHDOG_MS : Infinity,
      outboxAt === null ? Infinity : Math.max(outboxAt, now + outboxLead),
      deliveryAt === null ? Infinity : Math.max(this.webhooks.nextDueAt(deliveryAt, now), now + 1_000),
      preparedExpiry ?? Infinity,
    );
  }

  /**
   * The agent's snapshot as a row for this flush, or nothing if D1 has it already. It is built
   * here and handed over with the flush, not written to the outbox first: it only summarises
   * state that is durable here already, and a new instance sends one anyway. So a flush costs
   * no transaction of its own; only a refused snapshot is written, for the retry.
   */
  private snapshotRow(now: number): OutboxRow | undefined {
    if (!this.store.agentRow()) return undefined;
    const snapshot: AgentSnapshot = { agent: this.agentView(), contextVersion: this.store.contextVersion() };
    const json = JSON.stringify(snapshot);
    // A busy agent is mostly idle again by the time its flush runs, with the same context:
    // the same snapshot as last time, already in D1 or in the outbox, need not go again.
    if (json === this.lastSnapshot) return undefined;
    // The snapshot changes with context and execution state too, so it has its own counter.
    return { key: 'agent', kind: 'agent', rev: this.store.nextCounter('agent_snapshot_rev'), payload: json, attempts: 0, next_at: now };
  }
}
