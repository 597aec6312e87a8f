import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';

/**
 * A queued execution whose deadline passes while it waits is failed then, and that failure
 * reaches every view of it (status, the D1 list, webhooks), not only a poll of the execution.
 */
/** The execution `executionId` as the D1-backed list of the agent's failed executions shows it, once it does. */
const listedFailed = (key: string, agentId: string, executionId: string) =>
  eventually(async () => {
    const res = await api(`/v1/agents/${agentId}/executions?status=failed`, { key });
    return res.body.data.find((e: { id: string }) => e.id === executionId);
  });

describe('queued executions past their deadline', () => {
  it('fail at the deadline without a poll: status, the D1 list and the webhook all say failed', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 1 });
    await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook'), events: ['execution.failed'] } });
    const slow = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 20_000 }, mode: 'async' } });
    const late = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'late', mode: 'async', timeoutMs: 300 } });
    expect(late.body.status).toBe('queued');
    // Never polled: the watchdog alarm (30 s) used to be the first to notice.
    await eventually(async () => (await api(`/v1/agents/${id}/status`, { key })).body.queued === 0);
    const listed = await listedFailed(key, id, late.body.id);
    expect(listed).toMatchObject({ status: 'failed', attempts: 0, error: { code: 'upstream_timeout', message: 'deadline passed while queued' } });
    const delivery = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/deliveries?status=delivered`, { key });
      return res.body.data.find((d: { eventType: string }) => d.eventType === 'execution.failed');
    });
    expect(delivery).toMatchObject({ status: 'delivered' });
    expect((await api(`/v1/agents/${id}/executions/${slow.body.id}`, { key })).body.status).toBe('running');
    await api(`/v1/agents/${id}/executions/${slow.body.id}/cancel`, { key, method: 'POST' });
  });

  it('fail at the deadline on a paused agent too', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}`, { key, method: 'PATCH', body: { paused: true } });
    const late = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'late', mode: 'async', timeoutMs: 300 } });
    expect(late.body.status).toBe('queued');
    await eventually(async () => (await api(`/v1/agents/${id}/status`, { key })).body.queued === 0);
    const listed = await listedFailed(key, id, late.body.id);
    expect(listed).toMatchObject({ status: 'failed', attempts: 0 });
  });

  it('reach D1 soon after a poll has settled them', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 1 });
    await api(`/v1/agents/${id}`, { key, method: 'PATCH', body: { paused: true } });
    const late = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'late', mode: 'async', timeoutMs: 300 } });
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect((await api(`/v1/agents/${id}/executions/${late.body.id}`, { key })).body.status).toBe('failed');
    await listedFailed(key, id, late.body.id);
  });
});
