import { createExecutionContext, createScheduledController, env, waitOnExecutionContext } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { d1Statements, type ProjectionRow } from '../durable/outbox';
import { executionRetention } from '../worker/agents/execution-retention-policy';
import { pruneExecutions, RETENTION_QUERY } from '../worker/agents/execution-retention';
import type { Env } from '../worker/env';
import worker from '../worker/index';
import { api, eventually, newAgent, newTenant, uniqueId } from './support/api';

// D1 keeps a finished execution's row for D1_EXECUTION_RETENTION_DAYS (default 90; 0 keeps every
// one) after it last changed there: the cron deletes older ones in bounded batches, never a
// queued or running one, and a late delivery of one it deleted does not bring it back.

const DAY = 24 * 3_600_000;
/**
 * Clocks of their own for the tests that count deletions (a file's tests share one database):
 * around 2000 no other test's rows exist, and each test's era lies before the one of the test
 * above it, with its rows at most 1,000 days back, so a test's cutoff is older than every row an
 * earlier test left, and every row older than it is the test's own.
 */
const Y2K = Date.UTC(2000, 5, 1);
const ERA_2 = Y2K - 2_000 * DAY;
const ERA_3 = Y2K - 4_000 * DAY;

const insert = (tenantId: string, agentId: string, id: string, status: string, updatedAt: number) =>
  env.DB.prepare('INSERT INTO executions (tenant_id, agent_id, id, status, intent, record, rev, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)')
    .bind(tenantId, agentId, id, status, 'kept.or.not', JSON.stringify({ id, agentId, status }), updatedAt, updatedAt);

const idsOf = async (tenantId: string): Promise<string[]> =>
  (await env.DB.prepare('SELECT id FROM executions WHERE tenant_id = ? ORDER BY id').bind(tenantId).all<{ id: string }>()).results.map((r) => r.id);

const withRetention = (days: string | undefined): Env => ({ ...env, D1_EXECUTION_RETENTION_DAYS: days });

async function runCron(on: Env): Promise<void> {
  const ctx = createExecutionContext();
  await worker.scheduled(createScheduledController({ cron: '* * * * *' }), on, ctx);
  await waitOnExecutionContext(ctx);
}

describe('D1 execution retention: the setting', () => {
  it('reads whole days (default 90, 0 keeps every execution) and refuses what is not one', () => {
    expect(executionRetention({})).toEqual({ ok: true, days: 90 });
    expect(executionRetention({ D1_EXECUTION_RETENTION_DAYS: ' ' })).toEqual({ ok: true, days: 90 });
    expect(executionRetention({ D1_EXECUTION_RETENTION_DAYS: '0' })).toEqual({ ok: true, days: 0 });
    expect(executionRetention({ D1_EXECUTION_RETENTION_DAYS: ' 30 ' })).toEqual({ ok: true, days: 30 });
    for (const bad of ['-1', '7.5', '1e2', '90d', 'ninety', '36501', '0x10']) expect(executionRetention({ D1_EXECUTION_RETENTION_DAYS: bad }).ok, bad).toBe(false);
  });
});

describe('D1 execution retention: the cron', () => {
  it('deletes finished rows older than the cutoff in bounded batches, oldest first; recent, queued and running ones stay', async () => {
    const { tenantId } = await newTenant();
    const cutoff = Y2K - 90 * DAY;
    const old = ['succeeded', 'failed', 'cancelled', 'succeeded', 'failed', 'cancelled', 'succeeded'].map((status, i) => insert(tenantId, 'a', `old-${i}`, status, cutoff - (10 - i) * DAY));
    await env.DB.batch([
      ...old,
      insert(tenantId, 'a', 'old-queued', 'queued', cutoff - 200 * DAY),
      insert(tenantId, 'a', 'old-running', 'running', cutoff - 200 * DAY),
      insert(tenantId, 'a', 'recent-0', 'succeeded', cutoff + 1),
      insert(tenantId, 'a', 'recent-1', 'failed', Y2K),
    ]);

    expect(await pruneExecutions(env, Y2K, { batch: 3, statements: 2 })).toEqual({ days: 90, deleted: 6, more: true });
    // The newest of the old rows is what a full tick left.
    expect(await idsOf(tenantId)).toEqual(['old-6', 'old-queued', 'old-running', 'recent-0', 'recent-1']);
    expect(await pruneExecutions(env, Y2K, { batch: 3, statements: 2 })).toEqual({ days: 90, deleted: 1, more: false });
    expect(await idsOf(tenantId)).toEqual(['old-queued', 'old-running', 'recent-0', 'recent-1']);
    expect(await pruneExecutions(env, Y2K)).toEqual({ days: 90, deleted: 0, more: false });
  });

  it("handles every tenant's rows, each by its own rows' age: the same agent and execution ids of another tenant are not touched", async () => {
    const [a, b] = [(await newTenant()).tenantId, (await newTenant()).tenantId];
    const cutoff = ERA_2 - 30 * DAY;
    await env.DB.batch([
      insert(a, 'shared', 'ex-1', 'succeeded', cutoff - DAY),
      insert(a, 'shared', 'ex-2', 'succeeded', cutoff + DAY),
      insert(b, 'shared', 'ex-1', 'succeeded', cutoff + DAY),
      insert(b, 'shared', 'ex-2', 'failed', cutoff - DAY),
      insert(b, 'other', 'ex-3', 'cancelled', cutoff - 2 * DAY),
    ]);

    expect(await pruneExecutions(withRetention('30'), ERA_2)).toEqual({ days: 30, deleted: 3, more: false });
    expect(await idsOf(a)).toEqual(['ex-2']);
    expect(await idsOf(b)).toEqual(['ex-1']);
  });

  it('keeps every row when set to 0, and deletes nothing but reports an error for a setting it cannot read', async () => {
    const { tenantId } = await newTenant();
    await env.DB.batch([insert(tenantId, 'a', 'ancient', 'succeeded', ERA_3 - 900 * DAY), insert(tenantId, 'a', 'old', 'failed', ERA_3 - 100 * DAY)]);

    expect(await pruneExecutions(withRetention('0'), ERA_3)).toBeNull();
    await expect(pruneExecutions(withRetention('90d'), ERA_3)).rejects.toThrow(/D1_EXECUTION_RETENTION_DAYS must be whole days/);
    expect(await idsOf(tenantId)).toEqual(['ancient', 'old']);
    // A year's setting keeps the 100-day-old row.
    expect(await pruneExecutions(withRetention('365'), ERA_3)).toEqual({ days: 365, deleted: 1, more: false });
    expect(await idsOf(tenantId)).toEqual(['old']);
  });

  it('reaches its rows through the partial index of finished executions, not by scanning the table', async () => {
    const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${RETENTION_QUERY}`).bind(Y2K, 1_000).all<{ detail: string }>();
    const plan = results.map((r) => r.detail).join('\n');
    expect(plan).toMatch(/SEARCH executions USING INDEX executions_done_by_update \(updated_at<\?\)/);
    expect(plan).not.toMatch(/SCAN executions/);
  });

  it("runs from the Worker's cron: an agent's list loses its executions finished past retention, and keeps the rest and its running one", async () => {
    const { key, tenantId } = await newTenant();
    const agentId = await newAgent(key);
    const run = async (body: Record<string, unknown>) => (await api<{ id: string }>(`/v1/agents/${agentId}/executions`, { key, body: { intent: 'retention.run', ...body } })).body.id;
    const aged = await run({ input: { message: 'old' } });
    const fresh = await run({ input: { message: 'new' } });
    const running = await run({ input: { message: 'slow', simulateLatencyMs: 20_000 }, mode: 'async' });
    const listed = async () => (await api<{ data: { id: string; status: string }[] }>(`/v1/agents/${agentId}/executions`, { key })).body.data.map((e) => `${e.id}:${e.status}`).sort();
    const all = [`${aged}:succeeded`, `${fresh}:succeeded`, `${running}:running`].sort();
    await eventually(async () => JSON.stringify(await listed()) === JSON.stringify(all));
    // As if those two had last changed 100 days ago.
    await env.DB.prepare('UPDATE executions SET updated_at = updated_at - ? WHERE tenant_id = ? AND id IN (?, ?)').bind(100 * DAY, tenantId, aged, running).run();

    await runCron(withRetention(undefined));
    expect(await listed()).toEqual([`${fresh}:succeeded`, `${running}:running`].sort());
    // The agent itself still keeps its newest 1,000 finished executions, this one among them.
    expect((await api(`/v1/agents/${agentId}/executions/${aged}`, { key })).status).toBe(200);
    expect((await api(`/v1/agents/${agentId}/executions/${running}/cancel`, { key, method: 'POST' })).status).toBe(200);
  });
});

describe('D1 execution retention: late deliveries', () => {
  const finishedRow = (tenantId: string, agentId: string, id: string, status: string, finishedAt: number, rev: number): ProjectionRow => {
    const at = new Date(finishedAt).toISOString();
    const payload = JSON.stringify({ id, agentId, intent: 'late', status, createdAt: at, ...(status === 'running' ? {} : { finishedAt: at }) });
    return { tenant_id: tenantId, agent_id: agentId, key: `execution:${id}`, kind: 'execution', rev, payload };
  };
  const inD1 = (tenantId: string, id: string) =>
    env.DB.prepare('SELECT status, rev FROM executions WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ status: string; rev: number }>();
  const projector = () => env.PROJECTOR.get(env.PROJECTOR.idFromName(uniqueId('retention-projector')));

  it('never inserts again a finished execution older than the cutoff (answered as landed), but still ends one D1 shows running', async () => {
    const { key, tenantId } = await newTenant();
    const agentId = await newAgent(key);
    const longAgo = Date.now() - 100 * DAY;
    // D1 still shows this one running: its late end must land, or it would show running forever.
    await env.DB.batch([insert(tenantId, agentId, 'ex-unended', 'running', longAgo)]);
    const rows = [
      finishedRow(tenantId, agentId, 'ex-pruned', 'succeeded', longAgo, 3),
      finishedRow(tenantId, agentId, 'ex-unended', 'failed', longAgo, 3),
      finishedRow(tenantId, agentId, 'ex-recent', 'succeeded', Date.now() - DAY, 3),
    ];

    // As a set (one statement for the hand-over) and alone (each row its own statement).
    expect(await projector().write(rows)).toEqual({ failed: [] });
    // Larger than a set may hold, so it goes as a statement of its own.
    const big = finishedRow(tenantId, agentId, 'ex-pruned-alone', 'cancelled', longAgo, 2);
    const alone = { ...big, payload: JSON.stringify({ ...(JSON.parse(big.payload) as object), output: 'x'.repeat(700_000) }) };
    expect(await projector().write([alone])).toEqual({ failed: [] });

    expect(await inD1(tenantId, 'ex-pruned')).toBeNull();
    expect(await inD1(tenantId, 'ex-pruned-alone')).toBeNull();
    expect(await inD1(tenantId, 'ex-unended')).toEqual({ status: 'failed', rev: 3 });
    expect(await inD1(tenantId, 'ex-recent')).toEqual({ status: 'succeeded', rev: 3 });
  });

  it('inserts them as before while D1 keeps every execution', async () => {
    const { key, tenantId } = await newTenant();
    const agentId = await newAgent(key);
    const row = finishedRow(tenantId, agentId, 'ex-kept', 'succeeded', Date.now() - 5_000 * DAY, 1);
    await env.DB.batch(d1Statements(env.DB, [row], Date.now(), null));
    expect(await inD1(tenantId, 'ex-kept')).toEqual({ status: 'succeeded', rev: 1 });
  });
});
