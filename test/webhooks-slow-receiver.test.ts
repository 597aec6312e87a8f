import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';

/**
 * Outgoing webhooks with a receiver slow to answer: it must hold up neither the other
 * deliveries of its pass nor the alarm for their retries (test/webhooks.test.ts has the rest).
 */

const stubOf = (tenantId: string, agentId: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));

const control = (target: string, down: boolean) => fetch(`${env.MOCK_UPSTREAM_URL}/control?target=${target}&down=${down}`, { method: 'POST' });

async function deliveries(key: string, agentId: string) {
  return (await api(`/v1/agents/${agentId}/deliveries`, { key })).body.data as { id: string; webhookId: string; status: string; attempts: number; lastError: string | null; nextAttemptAt: string | null }[];
}

/**
 * Registers a webhook at each of `urls` while the receivers `targets` are down, runs one
 * execution, and waits until each delivery has been tried once; then brings the receivers back.
 */
async function triedOnceWhileDown(key: string, agentId: string, targets: string[], urls: string[]): Promise<void> {
  await Promise.all(targets.map((t) => control(t, true)));
  try {
    for (const url of urls) await api(`/v1/agents/${agentId}/webhooks`, { key, body: { url, events: ['execution.succeeded'] } });
    await api(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'hello' } });
    await eventually(async () => {
      const list = await deliveries(key, agentId);
      return list.length === urls.length && list.every((d) => d.attempts === 1);
    });
  } finally {
    await Promise.all(targets.map((t) => control(t, false)));
  }
}

describe('outgoing webhooks: a slow receiver', () => {
  it("sends the rest of a pass while one receiver is slow to answer: a hanging receiver holds up no other webhook's delivery", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const slow = `hol-slow-${id}`;
    const fast = `hol-fast-${id}`;
    await triedOnceWhileDown(key, id, [slow, fast], [mockUrl(`/hook?target=${slow}&delayMs=6000`), ...Array.from({ length: 6 }, (_, i) => mockUrl(`/hook?target=${fast}&n=${i}`))]);
    // Seven due at once, the slow receiver's first: more than one pass sends at a time (six).
    const slowHook = (await api(`/v1/agents/${id}/webhooks`, { key })).body.data.find((w: { url: string }) => w.url.includes(slow)).id as string;
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown, state) => {
      state.storage.sql.exec("UPDATE deliveries SET next_at = CASE webhook_id WHEN ? THEN 0 ELSE 1 END WHERE status = 'pending'", slowHook);
      void (instance as { webhooks: { deliverDue(): Promise<number> } }).webhooks.deliverDue();
    });
    // The six fast ones land while the slow one's send is still out: the seventh used to wait
    // for the whole first batch of six, the slow send included.
    const all = await eventually(async () => {
      const list = await deliveries(key, id);
      return list.filter((d) => d.webhookId !== slowHook && d.status === 'delivered').length === 6 && list;
    });
    expect(all.find((d) => d.webhookId === slowHook)).toMatchObject({ status: 'pending', attempts: 1 });
  });

  it("arms the alarm for a failed delivery's retry as it fails, not once the pass's slowest send has ended", async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const slow = `arm-slow-${id}`;
    const failing = `arm-fail-${id}`;
    await triedOnceWhileDown(key, id, [slow, failing], [mockUrl(`/hook?target=${slow}&delayMs=4000`), mockUrl(`/hook?target=${failing}&status=500`)]);
    // Both due as new (a 5 s retry next), no alarm armed, and a delivery pass started as a change starts one.
    await runInDurableObject(stubOf(tenantId, id), async (instance: unknown, state) => {
      state.storage.sql.exec("UPDATE deliveries SET next_at = 0, attempts = 0 WHERE status = 'pending'");
      const background = (instance as { background: { alarmAt: number | null; deliver(): Promise<void> } }).background;
      await state.storage.deleteAlarm();
      background.alarmAt = null;
      void background.deliver();
    });
    const failed = await eventually(async () => (await deliveries(key, id)).find((d) => d.attempts === 1 && d.lastError === 'HTTP 500'));
    const retryAt = Date.parse(failed.nextAttemptAt ?? '');
    // The slow send is still out; the alarm already waits for the retry. It used to be armed only
    // when the pass ended, after the slowest send: a 5 s retry then went out after the 10 s timeout.
    const alarm = await runInDurableObject(stubOf(tenantId, id), async (_instance, state) => state.storage.getAlarm());
    expect((await deliveries(key, id)).find((d) => d.id !== failed.id)).toMatchObject({ status: 'pending', attempts: 0 });
    expect(alarm).not.toBeNull();
    expect(alarm ?? Infinity).toBeLessThanOrEqual(retryAt);
  });

  it('sends at most six deliveries at a time, also when a second delivery pass starts while the first is still sending', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const target = `six-${id}`;
    await control(target, true);
    try {
      // Six webhooks (a further send to one leaves a slot free, so six first sends fill the six), counted as one receiver.
      for (const n of [1, 2, 3, 4, 5, 6]) await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&gauge=${target}&delayMs=1500&n=${n}`), events: ['execution.succeeded'] } });
      for (let i = 0; i < 2; i++) await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
      await eventually(async () => {
        const list = await deliveries(key, id);
        return list.length === 12 && list.every((d) => d.attempts === 1);
      });
    } finally {
      await control(target, false);
    }
    // Six due and a pass sending them, then six more due and a second pass, as the next change's
    // flush (or the alarm) starts one while the first is still out: each pass sent six of its own.
    await runInDurableObject(stubOf(tenantId, id), async (instance: unknown, state) => {
      const hooks = (instance as { webhooks: { deliverDue(): Promise<number> } }).webhooks;
      state.storage.sql.exec("UPDATE deliveries SET next_at = CASE WHEN id IN (SELECT id FROM deliveries ORDER BY id LIMIT 6) THEN 0 ELSE 1e15 END WHERE status = 'pending'");
      void hooks.deliverDue();
      state.storage.sql.exec("UPDATE deliveries SET next_at = 0 WHERE status = 'pending' AND next_at > 0");
      void hooks.deliverDue();
    });
    await eventually(async () => (await deliveries(key, id)).every((d) => d.status === 'delivered'), 15_000);
    const gauge = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/gauge?name=${target}`)).json()) as { peak: number };
    expect(gauge.peak).toBe(6);
  });
});

describe("outgoing webhooks: a slow receiver's backlog", () => {
  it('holds up no delivery to another receiver: a slow webhook with many due deliveries leaves a slot, and a pass, to the others', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const slow = `backlog-slow-${id}`;
    const fast = `backlog-fast-${id}`;
    const slowHook = (await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${slow}&gauge=${slow}&delayMs=3000`), events: ['execution.succeeded'] } })).body.id as string;
    // Sixty due at once for the slow receiver: more than a pass takes (50), and more than its
    // four senders (of six) take at a time.
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown, state) => {
      for (let i = 0; i < 60; i++) {
        state.storage.sql.exec(
          "INSERT INTO deliveries (id, webhook_id, event_type, payload, status, attempts, next_at, created_at) VALUES (?, ?, 'execution.succeeded', '{}', 'pending', 0, ?, ?)",
          `msg_00backlog${String(i).padStart(3, '0')}`, slowHook, i, Date.now(),
        );
      }
      void (instance as { webhooks: { deliverDue(): Promise<number> } }).webhooks.deliverDue();
    });
    try {
      await eventually(async () => ((await (await fetch(`${env.MOCK_UPSTREAM_URL}/gauge?name=${slow}`)).json()) as { open: number }).open >= 4);
      await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${fast}`), events: ['execution.succeeded'] } });
      const started = Date.now();
      expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } })).status).toBe(200);
      // The new execution's delivery to the fast receiver goes out with its change's pass. It
      // used to wait for the slow receiver's whole backlog: a pass selected the 50 earliest due,
      // all already taken by the first pass, and sent in the order they were taken.
      const delivered = await eventually(async () => (await deliveries(key, id)).find((d) => d.webhookId !== slowHook && d.status === 'delivered'), 20_000);
      expect(delivered).toBeTruthy();
      expect(Date.now() - started).toBeLessThan(2_500);
      const gauge = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/gauge?name=${slow}`)).json()) as { peak: number };
      // Four of the six: the other two are for receivers with none out.
      expect(gauge.peak).toBe(4);
    } finally {
      await api(`/v1/agents/${id}/webhooks/${slowHook}`, { key, method: 'DELETE' });
    }
  }, 40_000);
});

describe('outgoing webhooks: two slow receivers with backlogs', () => {
  it('hold up no third receiver: sends to a webhook that has one out leave slots for webhooks with none out', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const slow = [`two-slow-a-${id}`, `two-slow-b-${id}`];
    const fast = `two-slow-fast-${id}`;
    const slowHooks: string[] = [];
    for (const target of slow) {
      slowHooks.push((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&gauge=${target}&delayMs=4000`), events: ['execution.succeeded'] } })).body.id as string);
    }
    // Ten due at once for each slow receiver, the first one's earliest, so it takes its slots first.
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown, state) => {
      for (const [h, hook] of slowHooks.entries()) {
        for (let i = 0; i < 10; i++) {
          state.storage.sql.exec(
            "INSERT INTO deliveries (id, webhook_id, event_type, payload, status, attempts, next_at, created_at) VALUES (?, ?, 'execution.succeeded', '{}', 'pending', 0, ?, ?)",
            `msg_00twoslow${h}${String(i).padStart(3, '0')}`, hook, h * 100 + i, Date.now(),
          );
        }
      }
      void (instance as { webhooks: { deliverDue(): Promise<number> } }).webhooks.deliverDue();
    });
    const gauge = async (target: string) => (await (await fetch(`${env.MOCK_UPSTREAM_URL}/gauge?name=${target}`)).json()) as { open: number; peak: number };
    try {
      await eventually(async () => (await gauge(slow[0] ?? '')).open >= 1 && (await gauge(slow[1] ?? '')).open >= 1);
      await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${fast}`), events: ['execution.succeeded'] } });
      const started = Date.now();
      expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } })).status).toBe(200);
      // The new delivery to the healthy receiver goes out at once. Both slow receivers together
      // used to hold all six slots (five and one), so it waited for one of their sends to end.
      const delivered = await eventually(async () => (await deliveries(key, id)).find((d) => !slowHooks.includes(d.webhookId) && d.status === 'delivered'), 20_000);
      expect(delivered).toBeTruthy();
      expect(Date.now() - started).toBeLessThan(3_000);
      const peaks = await Promise.all(slow.map(async (t) => (await gauge(t)).peak));
      expect(peaks[0]! + peaks[1]!).toBeLessThanOrEqual(5);
    } finally {
      for (const hook of slowHooks) await api(`/v1/agents/${id}/webhooks/${hook}`, { key, method: 'DELETE' });
    }
  }, 40_000);
});
