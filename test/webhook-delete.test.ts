import { env } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';

const control = (target: string, down: boolean) => fetch(`${env.MOCK_UPSTREAM_URL}/control?target=${target}&down=${down}`, { method: 'POST' });

/** What the mock receiver answered each send of delivery `id` (null while it is still out). */
async function outcomes(id: string): Promise<(number | string | null)[]> {
  const { requests } = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${id}`)).json()) as { requests: { outcome: number | string | null }[] };
  return requests.map((r) => r.outcome);
}

type Listed = { id: string; status: string; attempts: number; nextAttemptAt: string | null; lastStatus: number | null; lastError: string | null };

describe('deleting an outgoing webhook', () => {
  it('ends its pending deliveries as dead letters at once, leaving delivered ones and other webhooks alone', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const target = `down-${id}`;
    await control(target, true);
    try {
      const down = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}`) } });
      await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook') } });
      await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
      // One delivery per webhook: the healthy one lands, the other waits for its retry (5 s, then 5 min …).
      const pending = await eventually(async () => {
        const list = (await api(`/v1/agents/${id}/deliveries`, { key })).body.data as { id: string; webhookId: string; status: string; attempts: number }[];
        const waiting = list.find((d) => d.webhookId === down.body.id && d.status === 'pending' && d.attempts === 1);
        return list.some((d) => d.status === 'delivered') && waiting;
      });
      expect((await api(`/v1/agents/${id}/webhooks/${down.body.id}`, { key, method: 'DELETE' })).status).toBe(204);
      const after = (await api(`/v1/agents/${id}/deliveries`, { key })).body.data as { id: string; status: string; nextAttemptAt: string | null; lastError: string | null }[];
      expect(after.find((d) => d.id === pending.id)).toMatchObject({ status: 'dead', nextAttemptAt: null, lastError: 'the webhook was deleted' });
      expect(after.filter((d) => d.status === 'delivered')).toHaveLength(1);
      expect((await api(`/v1/agents/${id}/deliveries?status=pending`, { key })).body.data).toEqual([]);
    } finally {
      await control(target, false);
    }
  });

  it('keeps a delivery that was out when its webhook was deleted dead when that send fails, not pending for a retry', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const target = `inflight-delete-${id}`;
    const hook = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&delayMs=1500&failStatus=500`), events: ['execution.succeeded'] } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    // The receiver has the send and holds it 1.5 s before answering 500: the delivery is out.
    const [out] = await eventually(async () => {
      const list = (await api(`/v1/agents/${id}/deliveries`, { key })).body.data as Listed[];
      return list.length === 1 && (await outcomes(list[0]?.id ?? '')).length === 1 && list;
    });
    expect((await api(`/v1/agents/${id}/webhooks/${hook.body.id}`, { key, method: 'DELETE' })).status).toBe(204);
    await eventually(async () => (await outcomes(out?.id ?? ''))[0] === 500);
    const after = await eventually(async () => {
      const [delivery] = (await api(`/v1/agents/${id}/deliveries`, { key })).body.data as Listed[];
      return delivery?.attempts === 1 && delivery;
    });
    // It used to go back to pending with a retry due (up to 10 h out on the default schedule).
    expect(after).toMatchObject({ status: 'dead', nextAttemptAt: null, lastStatus: 500, lastError: 'the webhook was deleted' });
    expect((await api(`/v1/agents/${id}/deliveries?status=pending`, { key })).body.data).toEqual([]);
  });

  it('drops the manual retry asked for while a delivery was out when its webhook is deleted before that send ends', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const target = `inflight-retry-delete-${id}`;
    const hook = await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&delayMs=1500&failStatus=500`), events: ['execution.succeeded'] } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const [out] = await eventually(async () => {
      const list = (await api(`/v1/agents/${id}/deliveries`, { key })).body.data as Listed[];
      return list.length === 1 && (await outcomes(list[0]?.id ?? '')).length === 1 && list;
    });
    expect((await api(`/v1/agents/${id}/deliveries/${out?.id}/retry`, { key, method: 'POST' })).status).toBe(200);
    expect((await api(`/v1/agents/${id}/webhooks/${hook.body.id}`, { key, method: 'DELETE' })).status).toBe(204);
    await eventually(async () => (await outcomes(out?.id ?? ''))[0] === 500);
    // Long enough for the alarm's pass (a second out) that the resend used to wake: it found the
    // webhook gone and wrote the dead letter again, the send's answer lost.
    await new Promise((r) => setTimeout(r, 2_500));
    const [after] = (await api(`/v1/agents/${id}/deliveries`, { key })).body.data as Listed[];
    expect(after).toMatchObject({ status: 'dead', attempts: 1, nextAttemptAt: null, lastStatus: 500, lastError: 'the webhook was deleted' });
    expect(await outcomes(out?.id ?? '')).toHaveLength(1);
  });
});

describe('deleting the agent while one of its deliveries is out', () => {
  it("ends that send quietly: nothing is left to record, no error is logged, and the agent created again under the id has no such delivery", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const target = `inflight-agent-delete-${id}`;
    await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl(`/hook?target=${target}&delayMs=1500&failStatus=500`), events: ['execution.succeeded'] } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const [out] = await eventually(async () => {
      const list = (await api(`/v1/agents/${id}/deliveries`, { key })).body.data as Listed[];
      return list.length === 1 && (await outcomes(list[0]?.id ?? '')).length === 1 && list;
    });
    const errors = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      expect((await api(`/v1/agents/${id}`, { key, method: 'DELETE' })).status).toBe(204);
      await newAgent(key, { id });
      await eventually(async () => (await outcomes(out?.id ?? ''))[0] === 500);
      // The send's answer reaches the object a moment after the receiver gave it.
      await new Promise((r) => setTimeout(r, 1_000));
      // Its outcome used to be written into the wiped tables: "no such table: deliveries", logged as a failed delivery pass.
      const logged = errors.mock.calls.map((call) => String(call[0])).filter((line) => line.includes('webhook delivery failed'));
      expect(logged).toEqual([]);
      expect((await api(`/v1/agents/${id}/deliveries`, { key })).body.data).toEqual([]);
    } finally {
      errors.mockRestore();
    }
  });
});
