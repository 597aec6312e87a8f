import { abortAllDurableObjects, env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { interceptAgentSql } from './support/agent-sql';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { projectorFor } from '../durable/projector';
import type { Env } from '../worker/env';

const stubOf = (tenantId: string, agentId: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));

async function upstreamRequests(executionId: string): Promise<{ headers: Record<string, string> }[]> {
  const res = await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${executionId}`);
  return ((await res.json()) as { requests: { headers: Record<string, string> }[] }).requests;
}

describe('recovery and the outbox', () => {
  it('resumes an execution that was running when the object restarted, with the same Idempotency-Key', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'long', input: { mock: { delayMs: 2000 } }, mode: 'async', timeoutMs: 20_000 } });
    await eventually(async () => (await upstreamRequests(exec.body.id)).length === 1);
    // With no request to start it, a new instance starts at the alarm: it must come well before
    // the deadline (the default timeoutMs is 30 s), not at a 30 s watchdog that resumes only to fail.
    const alarm = await runInDurableObject(stubOf(tenantId, id), (_instance, state) => state.storage.getAlarm());
    expect((alarm ?? Infinity) - Date.now()).toBeLessThanOrEqual(5_000);

    await abortAllDurableObjects(); // the object restarts: in-memory work is gone, storage stays
    expect(await runDurableObjectAlarm(stubOf(tenantId, id))).toBe(true);

    const done = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/executions/${exec.body.id}`, { key });
      return res.body.status === 'succeeded' && res.body;
    });
    const requests = await upstreamRequests(exec.body.id);
    expect(requests.length).toBeGreaterThanOrEqual(2);
    expect(requests.every((r) => r.headers['idempotency-key'] === exec.body.id)).toBe(true);
    expect(done.attempts).toBeGreaterThanOrEqual(2);
  });

  it('takes up work left by a restart on the next request of any kind, not at the watchdog alarm', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    // A client's poll need not wait for the watchdog alarm (up to 5 s out).
    const running = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'a', input: { mock: { delayMs: 1000 } }, mode: 'async' } });
    const queued = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'b', mode: 'async' } });
    await eventually(async () => (await upstreamRequests(running.body.id)).length === 1);

    await abortAllDurableObjects();
    // No alarm is run here: polling the executions, as a client does, is what reaches the object.
    for (const eid of [running.body.id, queued.body.id]) {
      await eventually(async () => (await api(`/v1/agents/${id}/executions/${eid}`, { key })).body.status === 'succeeded', 8_000, 200);
    }
    expect((await upstreamRequests(running.body.id)).every((r) => r.headers['idempotency-key'] === running.body.id)).toBe(true);
  });

  it('starts executions that were queued when the object restarted', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const first = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'a', input: { mock: { delayMs: 2000 } }, mode: 'async' } });
    const second = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'b', mode: 'async' } });
    expect((await api(`/v1/agents/${id}/executions/${second.body.id}`, { key })).body.status).toBe('queued');
    await abortAllDurableObjects();
    await runDurableObjectAlarm(stubOf(tenantId, id));
    for (const eid of [first.body.id, second.body.id]) {
      await eventually(async () => (await api(`/v1/agents/${id}/executions/${eid}`, { key })).body.status === 'succeeded');
    }
  });

  it('carries executions to D1 through the outbox, in their final state', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const row = await eventually(() =>
      env.DB.prepare("SELECT status, record, rev FROM executions WHERE tenant_id = ? AND agent_id = ? AND id = ? AND status = 'succeeded'")
        .bind(tenantId, id, exec.body.id)
        .first<{ status: string; record: string; rev: number }>(),
    );
    expect(JSON.parse(row.record)).toEqual(exec.body);
    const snapshot = await eventually(() =>
      env.DB.prepare(`SELECT snapshot FROM agents WHERE tenant_id = ? AND id = ? AND json_extract(snapshot, '$.contextVersion') = 1`).bind(tenantId, id).first<{ snapshot: string }>(),
    );
    expect(JSON.parse(snapshot.snapshot).contextVersion).toBe(1);
  });

  it('keeps undelivered rows in the outbox when D1 refuses them, and delivers them from the alarm', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    // Break the projection table for a moment: the agent keeps working regardless.
    await env.DB.exec('ALTER TABLE executions RENAME TO executions_offline');
    let exec;
    try {
      exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
      expect(exec.status).toBe(200);
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await env.DB.exec('ALTER TABLE executions_offline RENAME TO executions');
    }
    const pending = await outboxSize(tenantId, id);
    expect(pending).toBeGreaterThan(0);
    await eventually(async () => {
      await runDurableObjectAlarm(stubOf(tenantId, id));
      return env.DB.prepare('SELECT 1 AS one FROM executions WHERE tenant_id = ? AND id = ?').bind(tenantId, exec.body.id).first();
    }, 15_000, 200);
  });

  it('sends the rows D1 refused while it could not answer as soon as it answers again, not at the end of their backoff', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const shard = projectorFor(env, tenantId, id);
    // D1 unreachable from the agent's projection stage, as in an outage.
    const restore = await runInDurableObject(shard, (instance) => {
      const own = (instance as unknown as { env: Env }).env;
      const down = new Proxy(own.DB, {
        get: (target, prop) => {
          if (prop === 'batch') return () => Promise.reject(new Error('D1_ERROR: Network connection lost.'));
          const value: unknown = Reflect.get(target, prop, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      Object.defineProperty(instance, 'env', { value: { ...own, DB: down }, configurable: true, writable: true });
      return () => Object.defineProperty(instance, 'env', { value: own, configurable: true, writable: true });
    });
    let firstId = '';
    try {
      const first = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'during the outage' } });
      expect(first.status).toBe(200);
      firstId = first.body.id;
      await eventually(() => runInDurableObject(stubOf(tenantId, id), (_instance, state) =>
        state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM outbox WHERE key = ? AND attempts > 0', `execution:${firstId}`).one().n > 0));
      // A long outage: the row has backed off for minutes by the time D1 answers.
      await runInDurableObject(stubOf(tenantId, id), (_instance, state) => {
        state.storage.sql.exec('UPDATE outbox SET attempts = 9, next_at = ?', Date.now() + 5 * 60_000);
      });
    } finally {
      await runInDurableObject(shard, () => restore());
    }
    // D1 answers again: the agent's next change lands, and the row it refused goes with it.
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after the outage' } })).status).toBe(200);
    await eventually(() => env.DB.prepare('SELECT 1 AS one FROM executions WHERE tenant_id = ? AND id = ?').bind(tenantId, firstId).first(), 5_000, 100);
    expect(await outboxSize(tenantId, id)).toBe(0);
  });

  it('writes an outcome again when storage refused it for a moment, instead of failing an execution whose upstream answered', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'warm' } })).status).toBe(200);
    // The first write of an outcome is refused as the runtime refuses it when a process runs
    // out of SQLite memory (seen in the bench at 10,000 agents); its transaction rolls back.
    await runInDurableObject(stubOf(tenantId, id), (instance) => {
      let refused = 0;
      interceptAgentSql(instance, (query, params, real) => {
        if (refused === 0 && query.startsWith('UPDATE executions SET status = ?') && params[0] === 'succeeded') {
          refused++;
          throw new Error('out of memory: SQLITE_NOMEM');
        }
        return real.exec(query, ...params);
      });
    });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'support.reply', input: { message: 'How do refunds work?' } } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'succeeded', attempts: 1 });
    const written = await runInDurableObject(stubOf(tenantId, id), (_instance, state) => ({
      history: state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM history').one().n,
      succeeded: state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM events WHERE type = 'execution.succeeded'").one().n,
    }));
    // Two executions, two turns each: the refused write left nothing behind.
    expect(written).toEqual({ history: 4, succeeded: 2 });
  });

  it('projects the agent running while an execution runs, and idle once it has finished', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const projectedState = () => env.DB.prepare('SELECT state FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ state: string }>().then((row) => row?.state);
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', mode: 'async', input: { message: 'hi', simulateLatencyMs: 2_500 } } });
    expect(exec.status).toBe(202);
    // The flush after the accept runs while the execution does.
    await eventually(async () => (await projectedState()) === 'running');
    await eventually(async () => (await api(`/v1/agents/${id}/executions/${exec.body.id}`, { key })).body.status === 'succeeded');
    await eventually(async () => (await projectedState()) === 'idle');
  });

  it('numbers the agent\'s snapshots upward within an instance and across instances, so D1 takes each', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const projected = () => env.DB.prepare('SELECT rev, json_extract(snapshot, \'$.contextVersion\') AS version FROM agents WHERE tenant_id = ? AND id = ?').bind(tenantId, id).first<{ rev: number; version: number }>();
    const revs: number[] = [];
    for (const restart of [false, false, true, false]) {
      if (restart) await abortAllDurableObjects();
      const version = revs.length + 1; // each builtin execution moves the context on by one
      expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'count' } })).status).toBe(200);
      revs.push((await eventually(async () => { const row = await projected(); return row?.version === version ? row : null; })).rev);
    }
    expect(revs).toEqual([...revs].sort((a, b) => a - b));
    expect(new Set(revs).size).toBe(revs.length);
  });

  it('projects the agent running while an execution whose outcome storage refused waits for the watchdog, and knows it idle again without counting once the watchdog has run it', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'warm' } })).status).toBe(200);
    // Every outcome write refused: the run gives up with its row still `running` and nothing
    // running it in this instance.
    let refusing = true;
    const recorded: string[] = [];
    await runInDurableObject(stubOf(tenantId, id), (instance) => {
      interceptAgentSql(instance, (query, params, real) => {
        if (refusing && query.startsWith('UPDATE executions SET status = ?')) throw new Error('out of memory: SQLITE_NOMEM');
        recorded.push(query);
        return real.exec(query, ...params);
      });
    });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'stuck', mode: 'async' } });
    expect(exec.status).toBe(202);
    const runningRows = () => runInDurableObject(stubOf(tenantId, id), (_i, state) => state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM executions WHERE status = 'running'").one().n);
    // Past the run's last try (its retries wait 50, 250 and 1,000 ms).
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(await runningRows()).toBe(1);
    // A later change's snapshot still says running: the agent does not take its own word for it.
    expect((await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { after: 'refusal' } })).status).toBe(200);
    await eventually(() => env.DB.prepare(`SELECT 1 AS one FROM agents WHERE tenant_id = ? AND id = ? AND state = 'running' AND json_extract(snapshot, '$.contextVersion') = 2`).bind(tenantId, id).first());

    // Storage takes writes again; the watchdog runs the execution to its end.
    refusing = false;
    await runDurableObjectAlarm(stubOf(tenantId, id));
    await eventually(async () => (await runningRows()) === 0);
    // Every running row has its run here again, so the agent knows without counting that
    // nothing runs: the next execution's snapshot says idle and needs no count of executions.
    recorded.length = 0;
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'after' } })).status).toBe(200);
    await eventually(async () => (await outboxSize(tenantId, id)) === 0);
    await eventually(() => env.DB.prepare(`SELECT 1 AS one FROM agents WHERE tenant_id = ? AND id = ? AND state = 'idle'`).bind(tenantId, id).first());
    expect(recorded.filter((query) => query.startsWith('SELECT status, count(*)'))).toEqual([]);
  });
});

describe('what a restart leaves behind', () => {
  const poll = (key: string, id: string, eid: string) => api(`/v1/agents/${id}/executions/${eid}`, { key });

  it('keeps an execution\'s deadline: one resumed after it fails upstream_timeout without calling again, and its events and webhook say so', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    expect((await api(`/v1/agents/${id}/webhooks`, { key, body: { url: mockUrl('/hook') } })).status).toBe(201);
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'late', input: { mock: { delayMs: 5_000 } }, mode: 'async', timeoutMs: 1_000 } });
    await eventually(async () => (await upstreamRequests(exec.body.id)).length === 1);
    await abortAllDurableObjects();
    // Past the deadline with nothing running it; the poll then starts the instance that resumes it.
    await new Promise((resolve) => setTimeout(resolve, 1_300));
    const done = await eventually(async () => {
      const res = await poll(key, id, exec.body.id);
      return res.body.status !== 'running' && res.body;
    });
    expect(done).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'upstream_timeout' } });
    expect(await upstreamRequests(exec.body.id)).toHaveLength(1);
    const events = await runInDurableObject(stubOf(tenantId, id), (_instance, state) =>
      state.storage.sql.exec<{ type: string; data: string }>("SELECT type, data FROM events WHERE type LIKE 'execution.%' ORDER BY seq").toArray());
    expect(events.at(-1)?.type).toBe('execution.failed');
    expect(JSON.parse(events.at(-1)?.data ?? '{}')).toMatchObject({ id: exec.body.id, status: 'failed', error: { code: 'upstream_timeout' } });
    // README, "Availability": its webhooks say so too, one delivery of the failure.
    const deliveries = await runInDurableObject(stubOf(tenantId, id), (_instance, state) =>
      state.storage.sql.exec<{ event_type: string; payload: string }>('SELECT event_type, payload FROM deliveries').toArray());
    expect(deliveries.map((d) => d.event_type)).toEqual(['execution.failed']);
    expect(JSON.parse(deliveries[0]?.payload ?? '{}')).toMatchObject({ type: 'execution.failed', data: { id: exec.body.id, status: 'failed', error: { code: 'upstream_timeout' } } });
  });

  it('calls the upstream at most 5 times for one execution across restarts, 3 per run', async () => {
    const { key } = await newTenant();
    // Every attempt fails after a second: a run would make 3; two restarts leave 5 in all.
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'failing', input: { mock: { delayMs: 1_000, failStatus: 503 } }, mode: 'async', timeoutMs: 60_000 } });
    const calls = async () => (await upstreamRequests(exec.body.id)).length;
    await eventually(async () => (await calls()) === 2, 10_000, 20);
    await abortAllDurableObjects(); // the second attempt is lost with the instance, counted
    expect((await poll(key, id, exec.body.id)).body.status).toBe('running'); // the poll started the instance that resumes it
    await eventually(async () => (await calls()) === 4, 10_000, 20);
    await abortAllDurableObjects();
    const done = await eventually(async () => {
      const res = await poll(key, id, exec.body.id);
      return res.body.status !== 'running' && res.body;
    }, 10_000, 100);
    expect(done).toMatchObject({ status: 'failed', attempts: 5, error: { code: 'upstream_failed' } });
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(await calls()).toBe(5);
  });

  it('sends what the outbox held at the restart on the next request of any kind, not at the alarm', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    expect(exec.status).toBe(200);
    // Gone before its flush (due a quarter of a second after the change): the rows stay in the
    // outbox, and the alarm that covers them is half a minute out.
    await abortAllDurableObjects();
    expect((await api(`/v1/agents/${id}/status`, { key })).status).toBe(200);
    await eventually(() => env.DB.prepare("SELECT 1 AS one FROM executions WHERE tenant_id = ? AND id = ? AND status = 'succeeded'").bind(tenantId, exec.body.id).first(), 3_000);
  });
});

/** Number of rows waiting in the agent's outbox. */
function outboxSize(tenantId: string, agentId: string): Promise<number> {
  return runInDurableObject(stubOf(tenantId, agentId), (_instance, state) => {
    const row = state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM outbox').one();
    return row.n;
  });
}
