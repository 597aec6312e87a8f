import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import worker from '../worker/index';
import { api, chatTarget, mockUrl, newAgent, newTenant, uniqueId } from './support/api';

/**
 * The outgoing-request guard checks the URL a tenant stored (and what its name resolves to)
 * before each call; a redirect would send the call on to an address it never checked (say
 * http://169.254.169.254/), so no upstream call follows one. The redirect targets below are
 * the mock itself, so a followed redirect is visible in its per-target counts.
 */
async function counts(): Promise<Record<string, number>> {
  return (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json();
}

describe('upstream calls never follow redirects', () => {
  it('an agent-http upstream answering 307 fails the execution (502) and the Location is never called', async () => {
    const { key } = await newTenant();
    const dest = uniqueId('dest');
    const location = encodeURIComponent(mockUrl(`/agent?target=${dest}`));
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?target=${uniqueId('origin')}&status=307&location=${location}`) } });
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(run.status).toBe(502);
    expect(run.body.error.code).toBe('upstream_failed');
    const execution = await api(`/v1/agents/${id}/executions/${run.body.error.details.executionId}`, { key });
    expect(execution.body.error.message).toMatch(/307.*redirects are not followed/);
    expect((await counts())[dest]).toBeUndefined();
  });

  it('an openai-chat pool target answering 308 fails the chat (502) and the Location is never called', async () => {
    const { key } = await newTenant();
    const dest = uniqueId('dest');
    const location = `${env.MOCK_UPSTREAM_URL}/t/${dest}/ok/v1/chat/completions`;
    const pool = uniqueId('pool');
    const put = await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('origin'), `status=308,location=${location}`)] } });
    expect(put.status).toBe(201);
    const chat = await api('/v1/chat/completions', { key, body: { model: pool, messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(502);
    expect(chat.body.error).toMatchObject({ code: 'upstream_failed', details: { status: 308 } });
    expect(chat.body.error.message).toMatch(/redirects are not followed/);
    expect((await counts())[dest]).toBeUndefined();
  });

  it('a redirect whose body stalls fails at once, not at the end of the attempt\'s timeout (chat and execution)', async () => {
    const { key } = await newTenant();
    const pool = uniqueId('pool');
    // The attempt may wait 5 s for an answer: the redirect's headers are all the answer there is.
    await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(uniqueId('origin'), 'stallBody=1,stallStatus=302', { timeoutMs: 5_000 })] } });
    let started = Date.now();
    const chat = await api('/v1/chat/completions', { key, body: { model: pool, messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(502);
    expect(chat.body.error.message).toMatch(/302.*redirects are not followed/);
    expect(Date.now() - started).toBeLessThan(2_500);
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(`/agent?target=${uniqueId('origin')}&stallBody=1&stallStatus=307`), timeoutMs: 5_000 } });
    started = Date.now();
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(run.status).toBe(502);
    expect(Date.now() - started).toBeLessThan(2_500);
    const execution = await api(`/v1/agents/${id}/executions/${run.body.error.details.executionId}`, { key });
    expect(execution.body.error.message).toMatch(/307.*redirects are not followed/);
  });

  it('a health probe answered with a redirect reports it, not the health of the Location', async () => {
    const { key } = await newTenant();
    const healthyModels = `${env.MOCK_UPSTREAM_URL}/t/${uniqueId('dest')}/ok/v1/models`;
    const origin = uniqueId('origin');
    const pool = uniqueId('pool');
    await api(`/v1/pools/${pool}`, { method: 'PUT', key, body: { targets: [chatTarget(origin, `status=302,location=${healthyModels}`)] } });
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: '* * * * *' }), env, ctx);
    await waitOnExecutionContext(ctx);
    const read = await api(`/v1/pools/${pool}`, { key });
    expect(read.body.targets[0].health).toMatchObject({ healthy: false, probe: { ok: false, error: 'HTTP 302' } });
  });
});
