import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { interceptAgentSql } from './support/agent-sql';
import { describe, expect, it } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant, type ApiResponse } from './support/api';

describe('cancel', () => {
  it('cancels a queued execution: it never runs', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const running = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 1500 }, mode: 'async' } });
    const queued = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'next', mode: 'async' } });
    const cancelled = await api(`/v1/agents/${id}/executions/${queued.body.id}/cancel`, { key, method: 'POST' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ id: queued.body.id, status: 'cancelled', attempts: 0 });
    await eventually(async () => (await api(`/v1/agents/${id}/executions/${running.body.id}`, { key })).body.status === 'succeeded');
    const later = await api(`/v1/agents/${id}/executions/${queued.body.id}`, { key });
    expect(later.body).toMatchObject({ status: 'cancelled', attempts: 0 });
    // It never started: a finish time, but no start time and no duration.
    expect(later.body.finishedAt).toEqual(expect.any(String));
    expect(later.body).not.toHaveProperty('startedAt');
    expect(later.body).not.toHaveProperty('durationMs');
  });

  it('cancels a running execution and aborts its upstream call', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { mock: { delayMs: 5000 } }, mode: 'async' } });
    await eventually(async () => (await api(`/v1/agents/${id}/executions/${exec.body.id}`, { key })).body.status === 'running');
    const cancelled = await api(`/v1/agents/${id}/executions/${exec.body.id}/cancel`, { key, method: 'POST' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe('cancelled');
    await eventually(async () => {
      const seen = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${exec.body.id}`)).json()) as { requests: { aborted: boolean }[] };
      return seen.requests[0]?.aborted === true;
    });
    const status = await api(`/v1/agents/${id}/status`, { key });
    expect(status.body).toMatchObject({ running: 0, queued: 0, state: 'idle' });
  });

  it('discards a result that comes after the cancel: the execution stays cancelled, the context and history untouched', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    // The upstream has answered, but storage refuses the outcome's write for a moment (as when
    // SQLite runs out of memory): the run holds a result while the cancel lands.
    let refused = 0;
    let refusing = true;
    await runInDurableObject(stub, (instance) => {
      interceptAgentSql(instance, (query, params, real) => {
        if (refusing && query.startsWith('UPDATE executions SET status = ?') && params[0] === 'succeeded') {
          refused++;
          throw new Error('out of memory: SQLITE_NOMEM');
        }
        return real.exec(query, ...params);
      });
    });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'late', input: { mock: { contextPatch: { late: true } } }, mode: 'async' } });
    await eventually(async () => refused > 0, 5_000, 5);
    const cancelled = await api(`/v1/agents/${id}/executions/${exec.body.id}/cancel`, { key, method: 'POST' });
    expect(cancelled.status).toBe(200);
    refusing = false;
    await new Promise((resolve) => setTimeout(resolve, 1_500)); // past the run's last try to write its result
    const later = await api(`/v1/agents/${id}/executions/${exec.body.id}`, { key });
    expect(later.body).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
    expect(later.body).not.toHaveProperty('output');
    expect((await api(`/v1/agents/${id}/context`, { key })).body.version).toBe(0);
    const written = await runInDurableObject(stub, (_instance, state) => ({
      history: state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM history').one().n,
      events: state.storage.sql.exec<{ type: string }>("SELECT type FROM events WHERE type IN ('execution.succeeded', 'execution.cancelled')").toArray().map((e) => e.type),
    }));
    expect(written).toEqual({ history: 0, events: ['execution.cancelled'] });
  });

  it('races cancels against completions: each ends once, as the cancel\'s answer says, with one terminal event', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() }, concurrency: 8 });
    const rounds = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
      const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'race', input: { mock: { delayMs: 20 + (i % 4) * 10, contextPatch: { [`k${i}`]: i } } }, mode: 'async' } });
      await new Promise((resolve) => setTimeout(resolve, 10 + (i % 5) * 10));
      const cancel = await api(`/v1/agents/${id}/executions/${exec.body.id}/cancel`, { key, method: 'POST' });
      return { id: exec.body.id as string, cancel, i };
    }));
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    let succeeded = 0;
    const context = (await api(`/v1/agents/${id}/context`, { key })).body.data as Record<string, unknown>;
    for (const { id: executionId, cancel, i } of rounds) {
      expect([200, 409]).toContain(cancel.status);
      const final = await eventually(async () => {
        const got = await api(`/v1/agents/${id}/executions/${executionId}`, { key });
        return ['succeeded', 'failed', 'cancelled'].includes(got.body.status) && got.body;
      });
      if (cancel.status === 200) {
        expect(final).toMatchObject({ status: 'cancelled' });
        expect(final).not.toHaveProperty('output');
        expect(context).not.toHaveProperty(`k${i}`);
      } else {
        expect(cancel.body.error.code).toBe('already_finished');
        expect(final.status).toBe('succeeded');
        expect(context).toHaveProperty(`k${i}`, i);
        succeeded++;
      }
      const terminal = await runInDurableObject(stub, (_instance, state) =>
        state.storage.sql.exec<{ type: string }>("SELECT type FROM events WHERE type IN ('execution.succeeded', 'execution.failed', 'execution.cancelled') AND data LIKE ?", `%${executionId}%`).toArray().map((e) => e.type));
      expect(terminal).toEqual([`execution.${final.status}`]);
    }
    const history = await runInDurableObject(stub, (_instance, state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM history').one().n);
    expect(history).toBe(succeeded * 2);
    const status = await api(`/v1/agents/${id}/status`, { key });
    expect(status.body).toMatchObject({ running: 0, queued: 0 });
  });

  it('cancels an execution orphaned by a restart: it stays cancelled, its late answer lands nowhere, and it is not run again', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'orphan', input: { mock: { delayMs: 400, contextPatch: { late: true } } }, mode: 'async' } });
    const calls = async () => ((await (await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${exec.body.id}`)).json()) as { count: number }).count;
    await eventually(async () => (await calls()) === 1);
    await abortAllDurableObjects(); // the new instance finds the row running, its run gone
    const cancelled = await api(`/v1/agents/${id}/executions/${exec.body.id}/cancel`, { key, method: 'POST' });
    expect(cancelled.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 600)); // past any resumed call's answer
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const seen = await calls();
    await runDurableObjectAlarm(stub); // the watchdog finds nothing to resume
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await calls()).toBe(seen);
    expect((await api(`/v1/agents/${id}/executions/${exec.body.id}`, { key })).body).toMatchObject({ status: 'cancelled', error: { code: 'cancelled' } });
    expect((await api(`/v1/agents/${id}/context`, { key })).body.version).toBe(0);
  });

  it('frees the slot: the next queued execution starts', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const first = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 10_000 }, mode: 'async' } });
    const second = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello', mode: 'async' } });
    await api(`/v1/agents/${id}/executions/${first.body.id}/cancel`, { key, method: 'POST' });
    await eventually(async () => (await api(`/v1/agents/${id}/executions/${second.body.id}`, { key })).body.status === 'succeeded');
  });

  /** Cancels the agent's one running execution while `pending` waits for it; its answer and id. */
  async function cancelWhileWaiting(key: string, id: string, pending: Promise<ApiResponse>) {
    const running = await eventually(async () => {
      const status = await api(`/v1/agents/${id}/status`, { key });
      return status.body.running === 1 && (status.body.lastExecution.id as string);
    });
    await api(`/v1/agents/${id}/executions/${running}/cancel`, { key, method: 'POST' });
    const res = await pending;
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({ code: 'execution_cancelled', details: { executionId: running } });
    return { res, running };
  }

  it('answers a waiting sync caller with 409 execution_cancelled', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await cancelWhileWaiting(key, id, api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 10_000 } } }));
  });

  it('answers a chat through the agent with 409 execution_cancelled when its turn is cancelled', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?delayMs=10000') } });
    const { res, running } = await cancelWhileWaiting(key, id, api('/v1/chat/completions', { key, body: { model: `agent:${id}`, messages: [{ role: 'user', content: 'hi' }] } }));
    expect(res.headers.get('x-gateway-execution')).toBe(running);
  });

  it('answers 409 already_finished for a finished execution and 404 for an unknown one', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const done = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const res = await api(`/v1/agents/${id}/executions/${done.body.id}/cancel`, { key, method: 'POST' });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('already_finished');
    expect((await api(`/v1/agents/${id}/executions/ex_unknown/cancel`, { key, method: 'POST' })).status).toBe(404);
    expect((await api(`/v1/agents/${id}/executions/ex_unknown`, { key })).status).toBe(404);
  });
});
