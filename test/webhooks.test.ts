import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';

interface Received {
  raw: string;
  body: { type: string; data: { id: string; status: string } };
  headers: Record<string, string>;
}

const stubOf = (tenantId: string, agentId: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));

async function received(webhookId: string): Promise<Received[]> {
  return ((await (await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${webhookId}`)).json()) as { requests: Received[] }).requests;
}

const control = (target: string, down: boolean) => fetch(`${env.MOCK_UPSTREAM_URL}/control?target=${target}&down=${down}`, { method: 'POST' });

/** Makes every pending delivery due now and runs the agent's alarm: time passing, compressed. */
async function advance(tenantId: string, agentId: string): Promise<void> {
  await runInDurableObject(stubOf(tenantId, agentId), (_instance, state) => {
    state.storage.sql.exec("UPDATE deliveries SET next_at = 0 WHERE status = 'pending'");
  });
  await runDurableObjectAlarm(stubOf(tenantId, agentId));
}

/** How many sends the mock receiver has had for `target`. */
async function sentTo(target: string): Promise<number> {
  return ((await (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json()) as Record<string, number>)[target] ?? 0;
}

async function deliveries(key: string, agentId: string, status?: string) {
  return (await api(`/v1/agents/${agentId}/deliveries${status ? `?status=${status}` : ''}`, { key })).body.data as { id: string; status: string; attempts: number; eventType: string; lastError: string | null }[];
}

describe('outgoing webhooks', () => {
  it('registers a webhook with a generated whsec_ secret shown once', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook') } });
    expect(res.status).toBe(201);
    expect(res.body.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(res.body.events).toEqual(['execution.succeeded', 'execution.failed', 'execution.cancelled', 'transaction.committed', 'transaction.aborted']);
    const list = await api(`/v1/agents/${id}/webhooks`, { key });
    expect(list.body.data).toEqual([{ id: res.body.id, url: mockUrl('/hook'), events: res.body.events, createdAt: res.body.createdAt }]);
    expect((await api(`/v1/agents/${id}/webhooks/${res.body.id}`, { key, method: 'DELETE' })).status).toBe(204);
    expect((await api(`/v1/agents/${id}/webhooks/${res.body.id}`, { key, method: 'DELETE' })).status).toBe(404);
    expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), events: ['nope'] } })).status).toBe(400);
    expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), secret: 'plain' } })).status).toBe(400);
  });

  it('takes only Standard Webhooks secrets a strict base64 decoder reads, outgoing and incoming', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const bytes = (n: number) => btoa(String.fromCharCode(...Array.from({ length: n }, (_, i) => (i * 37) % 256)));
    // 32 bytes are 43 characters and one "=": without it (or with 33 characters) Python's decoder fails.
    for (const secret of [`whsec_${bytes(32).replace(/=+$/, '')}`, `whsec_${bytes(24)}A`, `whsec_${bytes(24)}=`, `whsec_${bytes(18)}`]) {
      const outgoing = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), secret } });
      expect(outgoing.status, secret).toBe(400);
      expect(outgoing.body.error.message, secret).toContain('padded');
      const incoming = await api('/v1/hooks/strict-secret', { method: 'PUT', key, body: { agentId: id, intent: 'x', scheme: 'standard', secret } });
      expect(incoming.status, secret).toBe(400);
    }
    for (const secret of [`whsec_${bytes(32)}`, `whsec_${bytes(24)}`, `whsec_${bytes(25)}`, `whsec_${bytes(64)}`]) {
      expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), secret } })).status, secret).toBe(201);
      expect([200, 201], secret).toContain((await api('/v1/hooks/strict-secret', { method: 'PUT', key, body: { agentId: id, intent: 'x', scheme: 'standard', secret } })).status);
    }
  });

  it('refuses a webhook past the 20 an agent may have with 409 webhook_limit_reached, and takes one again after a delete', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const made: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?n=${i}`), events: ['execution.succeeded'] } });
      expect(res.status).toBe(201);
      made.push(res.body.id);
    }
    // Every terminal execution writes one delivery per webhook, each holding the execution
    // (output up to 1 MiB), in the transaction of its outcome: without a bound, one agent's
    // webhooks multiplied every execution's writes and sends without end.
    const refused = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook?n=20') } });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: 'webhook_limit_reached', details: { limit: 20, webhooks: 20 } });
    expect((await api(`/v1/agents/${id}/webhooks`, { key })).body.data).toHaveLength(20);
    expect((await api(`/v1/agents/${id}/webhooks/${made[0]}`, { key, method: 'DELETE' })).status).toBe(204);
    expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook?n=21') } })).status).toBe(201);
  });

  it('stores an events list with each name once, in the order first given', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), events: ['execution.failed', 'execution.succeeded', 'execution.failed'] } });
    expect(res.status).toBe(201);
    expect(res.body.events).toEqual(['execution.failed', 'execution.succeeded']);
    expect((await api(`/v1/agents/${id}/webhooks`, { key })).body.data[0].events).toEqual(['execution.failed', 'execution.succeeded']);
    // Every event once and one again: six names, five events. The repeat used to be refused
    // (at most five names) although a repeated name is documented as kept once.
    const every = ['execution.succeeded', 'execution.failed', 'execution.cancelled', 'transaction.committed', 'transaction.aborted'];
    const all = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), events: [...every, 'execution.failed'] } });
    expect(all.status).toBe(201);
    expect(all.body.events).toEqual(every);
  });

  it("pages deliveries with a cursor that names the agent: another agent's cursor is 400 param cursor", async () => {
    const { key } = await newTenant();
    const agents = [await newAgent(key), await newAgent(key)];
    for (const id of agents) {
      expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), events: ['execution.succeeded'] } })).status).toBe(201);
      for (let i = 0; i < 2; i++) await api(`/v1/agents/${id}/executions`, { key, body: { intent: `n${i}` } });
    }
    const pages = [];
    for (const id of agents) {
      await eventually(async () => (await deliveries(key, id, 'delivered')).length === 2);
      pages.push((await api(`/v1/agents/${id}/deliveries?limit=1`, { key })).body);
    }
    const [a, b] = agents as [string, string];
    const next = await api(`/v1/agents/${a}/deliveries?limit=1&cursor=${pages[0].nextCursor}`, { key });
    expect(next.status).toBe(200);
    expect(next.body.data.map((d: { id: string }) => d.id)).not.toContain(pages[0].data[0].id);
    expect(next.body.data).toHaveLength(1);
    for (const res of [await api(`/v1/agents/${a}/deliveries?cursor=${pages[1].nextCursor}`, { key }), await api(`/v1/agents/${b}/executions?cursor=${pages[1].nextCursor}`, { key })]) {
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', param: 'cursor' });
    }
  });

  it("refuses a status-filtered page's cursor in the unfiltered list or another status's, as the executions list does", async () => {
    // Read without its filter, such a cursor answered the deliveries older than that page's last
    // and skipped every newer one of another status without a word.
    const { key } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), events: ['execution.succeeded'] } })).status).toBe(201);
    for (let i = 0; i < 2; i++) await api(`/v1/agents/${id}/executions`, { key, body: { intent: `n${i}` } });
    await eventually(async () => (await deliveries(key, id, 'delivered')).length === 2);
    const delivered = (await api(`/v1/agents/${id}/deliveries?status=delivered&limit=1`, { key })).body;
    expect(delivered.nextCursor).toEqual(expect.any(String));
    const next = await api(`/v1/agents/${id}/deliveries?status=delivered&limit=1&cursor=${delivered.nextCursor}`, { key });
    expect(next.status).toBe(200);
    expect(next.body.data).toHaveLength(1);
    for (const query of [`cursor=${delivered.nextCursor}`, `status=pending&cursor=${delivered.nextCursor}`]) {
      const res = await api(`/v1/agents/${id}/deliveries?${query}`, { key });
      expect(res.status, query).toBe(400);
      expect(res.body.error, query).toMatchObject({ code: 'invalid_request', param: 'cursor' });
    }
    const all = (await api(`/v1/agents/${id}/deliveries?limit=1`, { key })).body;
    expect((await api(`/v1/agents/${id}/deliveries?status=delivered&cursor=${all.nextCursor}`, { key })).status).toBe(400);
    expect((await api(`/v1/agents/${id}/deliveries?cursor=${all.nextCursor}`, { key })).body.data).toHaveLength(1);
  });

  it('delivers each execution result signed per Standard Webhooks, verified by the standardwebhooks package', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const hook = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=sig-${id}`), events: ['execution.succeeded', 'execution.failed'] } });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const [delivery] = await eventually(async () => {
      const list = await deliveries(key, id, 'delivered');
      return list.length === 1 && list;
    });
    expect(delivery).toMatchObject({ eventType: 'execution.succeeded', attempts: 1 });
    const [message] = await received(delivery?.id ?? '');
    const verified = new Webhook(hook.body.secret).verify(message?.raw ?? '', message?.headers ?? {}) as Received['body'];
    expect(verified).toMatchObject({ type: 'execution.succeeded', data: { id: exec.body.id, status: 'succeeded' } });
    expect(() => new Webhook(hook.body.secret).verify(`${message?.raw} `, message?.headers ?? {})).toThrow();
    expect(() => new Webhook(`whsec_${btoa('another secret of 24+ bytes!!')}`).verify(message?.raw ?? '', message?.headers ?? {})).toThrow();
  });

  it('retries a receiver that is down with the same webhook-id until it gets the event', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const target = `down-${id}`;
    await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&failTimes=3&failStatus=503`) } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const [first] = await eventually(async () => {
      const list = await deliveries(key, id);
      return list.length === 1 && list[0]?.attempts === 1 && list;
    });
    expect(first?.status).toBe('pending');
    for (let i = 0; i < 3; i++) await advance(tenantId, id);
    const [done] = await eventually(async () => {
      const list = await deliveries(key, id, 'delivered');
      return list.length === 1 && list;
    });
    expect(done?.attempts).toBe(4);
    const messages = await received(done?.id ?? '');
    expect(messages).toHaveLength(4);
    expect(new Set(messages.map((m) => m.headers['webhook-id']))).toEqual(new Set([done?.id]));
  });

  it('counts a redirect as a failed attempt: it is not followed, and the delivery is retried with its status', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    // Both targets answer 200: a 307 would repeat the POST there, a 302 would turn it into a GET.
    const landing = `landing-${id}`;
    const redirects = { 307: mockUrl(`/hook?target=${landing}`), 302: mockUrl(`/health?target=${landing}`) };
    for (const [status, location] of Object.entries(redirects)) {
      await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=redirect-${id}&status=${status}&location=${encodeURIComponent(location)}`) } });
    }
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const attempted = await eventually(async () => {
      const list = (await api(`/v1/agents/${id}/deliveries`, { key })).body.data as { status: string; attempts: number; lastStatus: number | null; lastError: string | null }[];
      return list.length === 2 && list.every((d) => d.attempts === 1) && list;
    });
    expect(attempted.map((d) => d.lastStatus).sort()).toEqual([302, 307]);
    for (const delivery of attempted) {
      expect(delivery).toMatchObject({ status: 'pending', lastError: expect.stringContaining('redirects are not followed') });
    }
    const counts = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json()) as Record<string, number>;
    expect(counts[`redirect-${id}`]).toBe(2);
    expect(counts[landing]).toBeUndefined();
  });

  it('ends in a dead letter when the receiver never recovers, and a manual retry delivers', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const target = `dead-${id}`;
    await control(target, true);
    try {
      await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}`) } });
      await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
      await eventually(async () => (await deliveries(key, id))[0]?.attempts === 1);
      for (let i = 0; i < 7; i++) await advance(tenantId, id);
      const [dead] = await eventually(async () => {
        const list = await deliveries(key, id, 'dead');
        return list.length === 1 && list;
      });
      expect(dead?.attempts).toBe(8);
    } finally {
      await control(target, false);
    }
    const [dead] = await deliveries(key, id, 'dead');
    const retried = await api(`/v1/agents/${id}/deliveries/${dead?.id}/retry`, { key, method: 'POST' });
    expect(retried.status).toBe(200);
    expect(retried.body.status).toBe('pending');
    await eventually(async () => (await deliveries(key, id, 'delivered')).length === 1);
    expect((await api(`/v1/agents/${id}/deliveries/msg_unknown/retry`, { key, method: 'POST' })).status).toBe(404);
  });

  it('sends a delivery again when its manual retry arrives while it is being sent', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const target = `inflight-${id}`;
    await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&delayMs=1500`), events: ['execution.succeeded'] } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const sent = () => sentTo(target);
    // The receiver has the first send and takes 1.5 s to answer it: the delivery is in flight.
    await eventually(async () => (await sent()) === 1);
    const [inFlight] = await deliveries(key, id);
    expect(inFlight).toMatchObject({ status: 'pending', attempts: 0 });

    const retried = await api(`/v1/agents/${id}/deliveries/${inFlight?.id}/retry`, { key, method: 'POST' });
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ status: 'pending', attempts: 0 });
    // The first send's answer does not swallow the retry: the receiver gets it a second time.
    await eventually(async () => (await sent()) === 2, 15_000);
    await eventually(async () => (await deliveries(key, id, 'delivered')).length === 1, 15_000);
    expect((await received(inFlight?.id ?? '')).length).toBe(2);
  });

  it('leaves the alarm of a delivery being sent for the end of its send, not a second out', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const target = `slow-${id}`;
    await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&delayMs=5000`), events: ['execution.succeeded'] } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const sent = () => sentTo(target);
    // The receiver has the send and holds it 5 s: the delivery is in flight, pending and due.
    await eventually(async () => (await sent()) === 1);
    expect(await runDurableObjectAlarm(stubOf(tenantId, id))).toBe(true);
    // The alarm found only that delivery, already being sent: it used to arm itself a second
    // out, and so again every second until the send ended.
    const lead = await runInDurableObject(stubOf(tenantId, id), async (_instance, state) => ((await state.storage.getAlarm()) ?? Infinity) - Date.now());
    expect(lead).toBeGreaterThan(2_000);
    expect(await sent()).toBe(1);
  });

  /**
   * Eight deliveries of an agent, failed once while their receiver (answering in 500 ms) was
   * down and due again: more than one delivery pass sends at once (four, to one webhook).
   */
  async function pileUp() {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const target = `overlap-${id}`;
    const count = () => sentTo(target);
    await control(target, true);
    let webhookId = '';
    try {
      webhookId = (await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&delayMs=500`), events: ['execution.succeeded'] } })).body.id;
      for (let i = 0; i < 8; i++) await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
      await eventually(async () => {
        const list = await deliveries(key, id);
        return list.length === 8 && list.every((d) => d.attempts === 1);
      });
    } finally {
      await control(target, false);
    }
    type Hooks = { deliverDue(): Promise<number>; delete(id: string): boolean };
    /** Runs `fn` in the object with its webhooks, every pending delivery due now. */
    const inObject = (fn: (hooks: Hooks) => Promise<void>) =>
      runInDurableObject(stubOf(tenantId, id), async (instance: unknown, state) => {
        state.storage.sql.exec("UPDATE deliveries SET next_at = 0 WHERE status = 'pending'");
        await fn((instance as { webhooks: Hooks }).webhooks);
      });
    return { key, id, webhookId, count, inObject };
  }

  it('sends each due delivery once when a second delivery pass starts while the first is still sending', async () => {
    const { key, id, count, inObject } = await pileUp();
    await inObject(async (hooks) => {
      const first = hooks.deliverDue();
      // The first pass has its first four in flight (one webhook's most); a second pass (as the
      // alarm or another change's flush would start) must leave the first pass's other four to it.
      await eventually(async () => (await count()) === 4);
      const second = hooks.deliverDue();
      await Promise.all([first, second]);
    });
    const delivered = await deliveries(key, id, 'delivered');
    expect(delivered).toHaveLength(8);
    for (const delivery of delivered) {
      expect(delivery.attempts).toBe(2);
      expect(await received(delivery.id)).toHaveLength(1);
    }
    expect(await count()).toBe(8);
  });

  it('does not send the deliveries still waiting in a pass when their webhook is deleted meanwhile', async () => {
    const { key, id, webhookId, count, inObject } = await pileUp();
    await inObject(async (hooks) => {
      const pass = hooks.deliverDue();
      await eventually(async () => (await count()) === 4);
      expect(hooks.delete(webhookId)).toBe(true);
      await pass;
    });
    expect(await count()).toBe(4);
    const dead = await deliveries(key, id, 'dead');
    expect(dead).toHaveLength(4);
    for (const delivery of dead) {
      expect(delivery).toMatchObject({ attempts: 1, lastError: 'the webhook was deleted' });
      expect(await received(delivery.id)).toHaveLength(0);
    }
  });

  it('keeps the newest 1,000 delivered deliveries and the newest 1,000 dead letters, and every pending one', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    // Subscribed to failures only: the execution below that runs retention adds no delivery.
    const hook = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=kept-${id}`), events: ['execution.failed'] } });
    const inObject = <T>(fn: (state: DurableObjectState) => T) => runInDurableObject(stubOf(tenantId, id), (_i, state) => fn(state));
    const count = (status: string) => inObject((state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM deliveries WHERE status = ?', status).one().n);
    await inObject((state) => {
      const insert = (status: string, n: number, nextAt: number | null) =>
        state.storage.sql.exec(
          `WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < ?)
           INSERT INTO deliveries (id, webhook_id, event_type, payload, status, attempts, next_at, created_at)
           SELECT printf('msg_0%s%05d', ?, n), ?, 'execution.failed', '{}', ?, 1, ?, 0 FROM i`,
          n, status, hook.body.id, status, nextAt,
        );
      insert('delivered', 1_003, null);
      insert('dead', 1_002, null);
      insert('pending', 2, Date.now() + 3_600_000);
      // Retention last ran five minutes ago, as far as the record says: the next flush runs it.
      state.storage.sql.exec("UPDATE meta SET value = '0' WHERE key = 'retained_at'");
    });
    await abortAllDurableObjects();
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } })).status).toBe(200);
    await eventually(async () => (await count('delivered')) === 1_000);
    expect(await count('dead')).toBe(1_000);
    expect(await count('pending')).toBe(2);
    // The oldest of each went.
    const oldest = (status: string) => inObject((state) => state.storage.sql.exec<{ id: string }>('SELECT min(id) AS id FROM deliveries WHERE status = ?', status).one().id);
    expect(await oldest('delivered')).toBe('msg_0delivered00004');
    expect(await oldest('dead')).toBe('msg_0dead00003');
  });

  it('refuses to retry a delivery whose webhook was deleted (409 conflict), and keeps its record as it was', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const hook = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=gone-${id}`) } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const [delivered] = await eventually(async () => {
      const list = await deliveries(key, id, 'delivered');
      return list.length === 1 && list;
    });
    expect((await api(`/v1/agents/${id}/webhooks/${hook.body.id}`, { key, method: 'DELETE' })).status).toBe(204);

    const retried = await api(`/v1/agents/${id}/deliveries/${delivered?.id}/retry`, { key, method: 'POST' });
    expect(retried.status).toBe(409);
    expect(retried.body.error.code).toBe('conflict');
    expect(retried.body.error.message).toMatch(/webhook .* was deleted/);
    // Not turned into a pending delivery that then dies: the record still says it was delivered.
    await new Promise((r) => setTimeout(r, 300));
    expect(await deliveries(key, id)).toEqual([expect.objectContaining({ id: delivered?.id, status: 'delivered', attempts: 1, lastError: null })]);
  });

  it('delivers after the object restarts mid-delivery (same webhook-id)', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=slow-${id}&delayMs=300`) } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const [pending] = await eventually(async () => {
      const list = await deliveries(key, id);
      return list.length === 1 && list;
    });
    await eventually(async () => (await received(pending?.id ?? '')).length === 1);
    await abortAllDurableObjects();
    await advance(tenantId, id);
    await eventually(async () => (await deliveries(key, id, 'delivered')).length === 1);
    const messages = await received(pending?.id ?? '');
    expect(messages.length).toBeGreaterThanOrEqual(1);
    expect(messages.every((m) => m.headers['webhook-id'] === pending?.id)).toBe(true);
  });
});

describe('transaction events', () => {
  it("sends transaction.committed and transaction.aborted to each participant's webhooks and event log, once", async () => {
    const { key } = await newTenant();
    const a = await newAgent(key);
    const b = await newAgent(key);
    await api(`/v1/agents/${a}/webhooks`, { key, body: { url: mockUrl(`/hook?target=tx-${a}`), events: ['transaction.committed', 'transaction.aborted'] } });
    const committed = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, patch: { x: 1 } }, { agentId: b, patch: { y: 1 } }] } });
    expect(committed.status).toBe(200);
    const aborted = await api('/v1/transactions', { key, body: { operations: [{ agentId: a, patch: { x: 2 } }, { agentId: b, patch: { y: 2 }, ifVersion: 0 }] } });
    expect(aborted.status).toBe(409);
    const delivered = await eventually(async () => {
      const list = await deliveries(key, a, 'delivered');
      return list.length === 2 && list;
    });
    expect(delivered.map((d) => d.eventType).sort()).toEqual(['transaction.aborted', 'transaction.committed']);
    const [message] = await received(delivered.find((d) => d.eventType === 'transaction.committed')?.id ?? '');
    expect(JSON.parse(message?.raw ?? '{}')).toMatchObject({ type: 'transaction.committed', data: { transactionId: committed.body.id, agentId: a, status: 'committed', contextVersion: 1 } });
    const { SELF } = await import('cloudflare:test');
    const stream = await SELF.fetch(`https://gateway.test/v1/agents/${b}/events?lastEventId=0`, { headers: { authorization: `Bearer ${key}` } });
    const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
    let text = '';
    while (!text.includes('transaction.aborted')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    expect(text.match(/event: transaction\.committed/g)).toHaveLength(1);
    expect(text.match(/event: transaction\.aborted/g)).toHaveLength(1);
  });
});
