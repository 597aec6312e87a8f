import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';

const control = (target: string, down: boolean) => fetch(`${env.MOCK_UPSTREAM_URL}/control?target=${target}&down=${down}`, { method: 'POST' });

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
});
