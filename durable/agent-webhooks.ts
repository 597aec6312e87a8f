import { Webhook as Signer } from 'standardwebhooks';
import { fail, ok, type Result } from '../worker/errors';
import { newId } from '../worker/lib/ids';
import { iso } from '../worker/lib/time';
import type { CreateWebhookBody, Delivery, EventType, Webhook } from '../worker/schemas/webhook';
import { ALL_EVENTS } from '../worker/schemas/webhook';
import { checkOutboundUrl, type OutboundPolicy } from '../worker/upstream/outbound-guard';
import type { DeferredSchema } from './agent-schema';
import { selectDue, type DueDelivery } from './delivery-select';
import { DeliverySlots } from './delivery-slots';
import type { Sql } from './sql';

/**
 * Waits after a failed attempt, in the spirit of Standard Webhooks senders: 5 s, 5 min,
 * 30 min, 2 h, 5 h, 10 h, 10 h — about 27.6 h of retries before a delivery is dead.
 */
export const RETRY_SCHEDULE_MS: readonly number[] = [5_000, 5 * 60_000, 30 * 60_000, 2 * 3_600_000, 5 * 3_600_000, 10 * 3_600_000, 10 * 3_600_000];
const MAX_SCHEDULE_STEPS = 20;
const MAX_STEP_MS = 24 * 3_600_000;

/**
 * The retry schedule an operator set in `WEBHOOK_RETRY_SCHEDULE_MS` (comma-separated waits in
 * milliseconds, 1-20 of them, each 100 ms to 24 h), else the default. A malformed value falls
 * back to the default rather than failing deliveries: it is a tuning knob (the chaos suite
 * shortens it so a run ends in minutes), never needed for correctness.
 */
export function retrySchedule(setting: string | undefined): readonly number[] {
  if (setting === undefined || setting.trim() === '') return RETRY_SCHEDULE_MS;
  const steps = setting.split(',').map((s) => Number(s.trim()));
  const valid = steps.length <= MAX_SCHEDULE_STEPS && steps.every((ms) => Number.isInteger(ms) && ms >= 100 && ms <= MAX_STEP_MS);
  return valid ? steps : RETRY_SCHEDULE_MS;
}
export const DELIVERY_TIMEOUT_MS = 10_000;
/** Finished deliveries kept of each outcome (delivered, dead; webhooks' and A2A pushes' apart); pending ones are all kept. */
const KEEP_FINISHED_DELIVERIES = 1_000;
const PARALLEL = 6;
/**
 * Webhooks one agent may have. Every terminal execution writes a delivery per webhook, each
 * holding the execution (its output up to 1 MiB), in its outcome's transaction, and sends each:
 * unbounded, a few hundred webhooks made one execution write and send hundreds of megabytes.
 * GitHub allows 20 per event of a repository, Stripe 16 endpoints per account.
 */
export const MAX_WEBHOOKS_PER_AGENT = 20;

interface WebhookRow extends Record<string, string | number> {
  id: string;
  url: string;
  events: string;
  secret: string;
  created_at: number;
}

export interface DeliveryRow extends Record<string, string | number | null> {
  id: string;
  webhook_id: string;
  event_type: string;
  payload: string;
  status: string;
  attempts: number;
  next_at: number | null;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  delivered_at: number | null;
}

const isoOrNull = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

function toWebhook(row: WebhookRow): Webhook {
  return { id: row.id, url: row.url, events: JSON.parse(row.events) as EventType[], createdAt: new Date(row.created_at).toISOString() };
}

export function toDelivery(row: DeliveryRow): Delivery {
  return {
    id: row.id,
    webhookId: row.webhook_id,
    eventType: row.event_type as EventType,
    status: row.status as Delivery['status'],
    attempts: row.attempts,
    nextAttemptAt: row.status === 'pending' ? isoOrNull(row.next_at) : null,
    lastStatus: row.last_status,
    lastError: row.last_error,
    createdAt: new Date(row.created_at).toISOString(),
    deliveredAt: isoOrNull(row.delivered_at),
  };
}

/**
 * Outgoing webhooks of one agent: registrations, and deliveries written in the same
 * transaction as the event they carry, sent signed (Standard Webhooks) from the object and
 * retried from its alarm until they land or die.
 */
export class AgentWebhooks {
  /** Deliveries a pass has taken (waiting for a slot or being sent), with their targets: no other pass sends them. */
  private readonly claimed = new Map<string, string>();
  /** Deliveries whose request is out now. */
  private readonly sending = new Set<string>();
  /**
   * Manual retries asked for while their delivery was in flight: the send's own outcome, written
   * when it ends, would otherwise overwrite the retry's reset, and the resend never happen.
   */
  private readonly resendAfter = new Set<string>();
  /**
   * Sends out at once, whichever pass they belong to; one target holds at most four, and its
   * further sends leave a slot free (delivery-slots.ts), so two slow receivers hold up no third.
   */
  private readonly slots = new DeliverySlots(PARALLEL, PARALLEL - 2);
  /** Registrations with their parsed event lists; dropped on every change. */
  private hooks: { row: WebhookRow; events: Set<string> }[] | undefined;
  /**
   * Deliveries were queued (fan-out, manual retry) since the last send. The send after a change
   * runs only then, so an agent without webhooks reads no deliveries per execution; retries and
   * a new instance's leftovers go out from the alarm, which always looks.
   */
  private queued = true;
  /**
   * Told when a failed delivery's retry is due, as it fails: the alarm must be armed for it then,
   * not when the pass ends, which waits for its slowest send (up to the 10 s timeout).
   */
  onRetryScheduled: ((at: number) => void) | null = null;

  /**
   * @param pushTarget where a delivery that belongs to no webhook goes (A2A push
   *   notifications: their own URL and auth headers instead of a signature), or null if gone.
   */
  constructor(
    private readonly sql: Sql,
    private readonly schema: DeferredSchema,
    private readonly policy: () => OutboundPolicy,
    private readonly pushTarget: (target: string) => { url: string; headers: Record<string, string> } | null = () => null,
    private readonly schedule: readonly number[] = RETRY_SCHEDULE_MS,
  ) {}

  /** Queues one delivery to a target that is not a webhook registration (same transaction as its event); with `failure`, recorded dead with that error. */
  queue(target: string, eventType: string, payload: string, now: number, failure?: string): void {
    this.schema.ensure('webhooks');
    this.sql.run(
      'INSERT INTO deliveries (id, webhook_id, event_type, payload, status, attempts, next_at, created_at, last_error) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)',
      newId('msg'), target, eventType, payload, failure === undefined ? 'pending' : 'dead', failure === undefined ? now : null, now, failure?.slice(0, 500) ?? null,
    );
  }

  /** Registers a webhook; `webhook_limit_reached` when the agent has MAX_WEBHOOKS_PER_AGENT already. */
  create(input: CreateWebhookBody, now: number): Result<Webhook & { secret: string }> {
    const count = this.schema.has('webhooks') ? (this.sql.one<{ n: number }>('SELECT count(*) AS n FROM webhooks')?.n ?? 0) : 0;
    if (count >= MAX_WEBHOOKS_PER_AGENT) {
      return fail('webhook_limit_reached', `this agent has ${count} webhooks, the most it may have (${MAX_WEBHOOKS_PER_AGENT}): delete one first`, { limit: MAX_WEBHOOKS_PER_AGENT, webhooks: count });
    }
    const id = newId('wh');
    // Standard Webhooks format: "whsec_" and base64 of the key bytes (32 here).
    const secret = input.secret ?? `whsec_${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))}`;
    // Each name once, in the order given: a repeated name subscribes to nothing more.
    const events = [...new Set(input.events ?? ALL_EVENTS)];
    this.schema.ensure('webhooks');
    this.sql.run('INSERT INTO webhooks (id, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?)', id, input.url, JSON.stringify(events), secret, now);
    this.hooks = undefined;
    return ok({ id, url: input.url, events, secret, createdAt: new Date(now).toISOString() });
  }

  list(): Webhook[] {
    if (!this.schema.has('webhooks')) return [];
    return this.sql.all<WebhookRow>('SELECT * FROM webhooks ORDER BY created_at, id').map(toWebhook);
  }

  /**
   * Removes a registration. Its pending deliveries die now, with the reason a retry would have
   * found: they have nowhere to go, and used to read as pending, a retry due up to 10 h out.
   */
  delete(id: string): boolean {
    this.hooks = undefined;
    if (!this.schema.has('webhooks') || this.sql.run('DELETE FROM webhooks WHERE id = ?', id) === 0) return false;
    const ended = this.sql.all<{ id: string }>("UPDATE deliveries SET status = 'dead', last_error = 'the webhook was deleted', next_at = NULL WHERE webhook_id = ? AND status = 'pending' RETURNING id", id);
    // A manual retry asked for while one was out has nowhere to go now either.
    for (const delivery of ended) this.resendAfter.delete(delivery.id);
    return true;
  }

  /** Forgets cached registrations (after deleteAll). */
  invalidate(): void {
    this.hooks = undefined;
  }

  /** Queues a delivery of `event` to every webhook subscribed to its type (same transaction). */
  fanOut(type: EventType, data: unknown, now: number): number {
    // Without the tables there are no registrations (the usual agent: no read per event).
    this.hooks ??= !this.schema.has('webhooks') ? [] : this.sql.all<WebhookRow>('SELECT * FROM webhooks').map((row) => ({ row, events: new Set(JSON.parse(row.events) as string[]) }));
    const hooks = this.hooks.filter((h) => h.events.has(type)).map((h) => h.row);
    for (const hook of hooks) {
      const id = newId('msg');
      const payload = JSON.stringify({ type, timestamp: iso(now), data });
      this.sql.run(
        "INSERT INTO deliveries (id, webhook_id, event_type, payload, status, attempts, next_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
        id, hook.id, type, payload, now, now,
      );
    }
    if (hooks.length > 0) this.queued = true;
    return hooks.length;
  }

  listDeliveries(options: { status?: string | undefined; limit: number; before?: string | undefined }): Delivery[] {
    // A2A push notifications share the machinery but are not webhook deliveries.
    if (!this.schema.has('webhooks')) return [];
    const where: string[] = ["webhook_id NOT LIKE 'a2a:%'"];
    const params: (string | number)[] = [];
    if (options.status) { where.push('status = ?'); params.push(options.status); }
    if (options.before) { where.push('id < ?'); params.push(options.before); }
    const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
    return this.sql.all<DeliveryRow>(`SELECT * FROM deliveries ${clause} ORDER BY id DESC LIMIT ?`, ...params, options.limit).map(toDelivery);
  }

  /**
   * Sends a delivery again now, with a fresh retry schedule. Refused, changing nothing, when its
   * webhook was deleted: the retry could only die at once, overwriting the record of what
   * happened (a delivered one would read as dead).
   */
  retry(id: string, now: number): Result<Delivery> {
    const unknown = fail('not_found', `delivery ${id} not found`);
    if (!this.schema.has('webhooks')) return unknown;
    // A2A push deliveries share the table but are not webhook deliveries (as in listDeliveries).
    const found = this.sql.one<DeliveryRow & { hook: string | null }>(
      "SELECT d.*, w.id AS hook FROM deliveries d LEFT JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ? AND d.webhook_id NOT LIKE 'a2a:%'",
      id,
    );
    if (!found) return unknown;
    if (found.hook === null) return fail('conflict', `the webhook ${found.webhook_id} of delivery ${id} was deleted: there is nowhere to send it`);
    if (this.sending.has(id)) this.resendAfter.add(id);
    this.resetForRetry(id, now);
    return ok(toDelivery({ ...found, status: 'pending', attempts: 0, next_at: now, delivered_at: null }));
  }

  /** Due now as a new delivery (a fresh retry schedule); the next send picks it up. */
  private resetForRetry(id: string, now: number): void {
    this.sql.run("UPDATE deliveries SET status = 'pending', attempts = 0, next_at = ?, delivered_at = NULL WHERE id = ?", now, id);
    this.queued = true;
  }

  /**
   * Retention: finished deliveries beyond the newest `keep` of their outcome. Each holds its
   * event's payload (an execution with its output, up to 1 MiB), and nothing else ever removed
   * them: an agent with a webhook grew its storage by every execution it ran, to the object's limit.
   */
  prune(keep = KEEP_FINISHED_DELIVERIES): void {
    if (!this.schema.has('webhooks')) return;
    this.sql.run(
      `DELETE FROM deliveries WHERE id IN (SELECT id FROM (
         SELECT id, row_number() OVER (PARTITION BY status, webhook_id LIKE 'a2a:%' ORDER BY id DESC) AS n
         FROM deliveries WHERE status IN ('delivered', 'dead')) WHERE n > ?)`,
      keep,
    );
  }

  /** Whether deliveries were queued since the last send (see `queued`). */
  hasQueued(): boolean {
    return this.queued;
  }

  /**
   * When the alarm is next needed for deliveries, given the earliest pending one's `next_at`:
   * a delivery in flight here stays pending and due until its send ends, and counted, it kept
   * the alarm due within a second, again and again, for a whole pass. So the earliest one not
   * in flight counts, and those in flight only as a fallback once their sends must have ended
   * (should the instance go away meanwhile); the pass re-arms the alarm when it settles.
   */
  nextDueAt(earliest: number, now: number): number {
    if (this.claimed.size === 0 || earliest > now) return earliest;
    const rows = this.sql.all<{ id: string; next_at: number }>(
      "SELECT id, next_at FROM deliveries WHERE status = 'pending' ORDER BY next_at LIMIT ?",
      this.claimed.size + 1,
    );
    const free = rows.find((row) => !this.claimed.has(row.id));
    return Math.min(free?.next_at ?? Infinity, now + DELIVERY_TIMEOUT_MS);
  }

  /** Sends every due delivery (not already in flight here); returns how many landed. */
  async deliverDue(now = Date.now()): Promise<number> {
    this.queued = false;
    if (!this.schema.has('webhooks')) return 0;
    const due = selectDue(this.sql, now, this.claimed, 50);
    // Claimed before the first send, not as each batch starts: a second pass meanwhile (the
    // alarm, another change's flush) would otherwise send the later batches too, and this pass
    // send them again after they landed, overwriting their record with stale attempt counts.
    for (const d of due) this.claimed.set(d.id, d.webhook_id);
    let landed = 0;
    try {
      // PARALLEL sends in flight, each done starting the next, not batches of PARALLEL: a batch
      // waited for its slowest send, so a receiver that hung for the 10 s timeout held up every
      // delivery behind it, to other receivers too. The slots are the agent's, not the pass's:
      // passes overlap (each change's flush, the alarm), and each used to send six of its own.
      // One target takes at most four of them, and further sends to one leave a slot free, so
      // two receivers' backlogs leave a slot to a third.
      const sends = await Promise.allSettled(due.map((d) => this.slots.run(d.webhook_id, async () => {
        if (await this.send(d)) landed++;
      })));
      const failed = sends.find((s) => s.status === 'rejected');
      if (failed) throw failed.reason;
    } finally {
      // A pass that failed part way leaves its unsent deliveries to the next one.
      for (const d of due) if (!this.sending.has(d.id)) this.claimed.delete(d.id);
    }
    return landed;
  }

  /** Sends one delivery claimed by `deliverDue`, and releases the claim. */
  private async send(selected: DueDelivery): Promise<boolean> {
    // Read again: while it waited for its batch, its webhook may have been deleted (it is dead
    // now) or a manual retry may have reset its attempts.
    let delivery = selected;
    try {
      const current = this.sql.one<{ status: string; attempts: number }>('SELECT status, attempts FROM deliveries WHERE id = ?', selected.id);
      if (current?.status !== 'pending') return false;
      delivery = { ...selected, attempts: current.attempts };
      this.sending.add(delivery.id);
      const push = delivery.url === null ? this.pushTarget(delivery.webhook_id) : null;
      const url = push?.url ?? delivery.url;
      if (url === null || (push === null && delivery.secret === null)) {
        this.settle(delivery, { dead: true, error: 'the webhook was deleted' });
        return false;
      }
      // Checked again right before the call: the name may point elsewhere since it was stored.
      // A URL that can never pass is dead at once; a refused answer fails this attempt only.
      const check = await checkOutboundUrl(url, this.policy());
      if (!check.ok) {
        this.settle(delivery, { dead: check.stage === 'url', error: `webhook URL refused: ${check.reason}` });
        return false;
      }
      const response = await fetch(url, {
        method: 'POST',
        headers: push ? { 'user-agent': 'edge-agent-gateway a2a', ...push.headers } : this.signedHeaders(delivery),
        body: delivery.payload,
        // Only the receiver's own 2xx counts: a redirect is not followed (its target was never
        // checked by the outbound guard, and a 302 would turn the POST into a GET) but fails the attempt.
        redirect: 'manual',
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      });
      await response.body?.cancel();
      if (response.ok) {
        this.settle(delivery, { delivered: true, status: response.status });
        return true;
      }
      const redirected = response.status >= 300 && response.status < 400;
      this.settle(delivery, { status: response.status, error: `HTTP ${response.status}${redirected ? ' (redirects are not followed)' : ''}` });
    } catch (error) {
      this.settle(delivery, { error: error instanceof Error ? error.message : String(error) });
    } finally {
      this.sending.delete(delivery.id);
      this.claimed.delete(delivery.id);
      // Its outcome is recorded above; the retry asked for meanwhile still goes out.
      // (Unless its agent was deleted meanwhile: then there is nothing to send again.)
      if (this.resendAfter.delete(delivery.id) && this.schema.has('webhooks')) this.resetForRetry(delivery.id, Date.now());
    }
    return false;
  }

  private signedHeaders(delivery: DeliveryRow & { secret: string | null }): Record<string, string> {
    const timestamp = new Date();
    return {
      'content-type': 'application/json',
      'user-agent': 'edge-agent-gateway webhooks',
      'webhook-id': delivery.id,
      'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
      'webhook-signature': new Signer(delivery.secret ?? '').sign(delivery.id, timestamp, delivery.payload),
    };
  }

  private settle(delivery: DeliveryRow, outcome: { delivered?: boolean; dead?: boolean; status?: number; error?: string }): void {
    const now = Date.now();
    const attempts = delivery.attempts + 1;
    // Gone with its agent, deleted while this send was out: there is nothing left to record it
    // in (the tables were wiped, or belong to an agent created again under the id since).
    const current = this.schema.has('webhooks') ? this.sql.one<{ status: string }>('SELECT status FROM deliveries WHERE id = ?', delivery.id) : undefined;
    if (!current) return;
    if (outcome.delivered) {
      this.sql.run("UPDATE deliveries SET status = 'delivered', attempts = ?, last_status = ?, last_error = NULL, delivered_at = ?, next_at = NULL WHERE id = ?", attempts, outcome.status ?? null, now, delivery.id);
      return;
    }
    // Its webhook was deleted while it was out: it stays the dead letter the delete made it,
    // not pending again with a retry hours away (it would only die then, as "deleted").
    if (current.status === 'dead') {
      this.sql.run('UPDATE deliveries SET attempts = ?, last_status = ? WHERE id = ?', attempts, outcome.status ?? null, delivery.id);
      return;
    }
    const wait = this.schedule[attempts - 1];
    const dead = outcome.dead === true || wait === undefined;
    const jitter = wait === undefined ? 0 : Math.round(wait * 0.1 * Math.random());
    const nextAt = now + (wait ?? 0) + jitter;
    this.sql.run(
      'UPDATE deliveries SET status = ?, attempts = ?, last_status = ?, last_error = ?, next_at = ? WHERE id = ?',
      dead ? 'dead' : 'pending', attempts, outcome.status ?? null, (outcome.error ?? '').slice(0, 500), dead ? null : nextAt, delivery.id,
    );
    if (!dead) this.onRetryScheduled?.(nextAt);
  }
}
