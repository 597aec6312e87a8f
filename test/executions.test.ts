import { env, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { interceptAgentSql } from './support/agent-sql';

const mockUpstream = () => ({ kind: 'agent-http', url: mockUrl() });

async function mockRequests(key: string): Promise<{ count: number; requests: { body: any; headers: Record<string, string> }[] }> {
  const res = await fetch(`${env.MOCK_UPSTREAM_URL}/requests?key=${encodeURIComponent(key)}`);
  return res.json();
}

describe('executions: sync', () => {
  it('runs an intent on the builtin upstream and answers 200 with the finished execution', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'support.reply', input: { message: 'How long does shipping take?' } } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ agentId: id, intent: 'support.reply', status: 'succeeded', attempts: 1, upstream: 'builtin', output: { topic: 'shipping', answered: true } });
    expect(res.body.id).toMatch(/^ex_/);
    expect(res.body.durationMs).toBeGreaterThanOrEqual(0);
    expect(Date.parse(res.body.finishedAt)).toBeGreaterThanOrEqual(Date.parse(res.body.startedAt));
    expect(res.headers.get('location')).toBe(`/v1/agents/${id}/executions/${res.body.id}`);
  });

  it('sends the agent-http protocol with Idempotency-Key = execution id, and merges contextPatch', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'classify', input: { text: 'hi', mock: { contextPatch: { lastLabel: 'greeting' } } } } });
    expect(res.status).toBe(200);
    expect(res.body.output).toMatchObject({ intent: 'classify', attempt: 1 });
    const seen = await mockRequests(res.body.id);
    expect(seen.count).toBe(1);
    expect(seen.requests[0]?.body).toMatchObject({ executionId: res.body.id, agentId: id, intent: 'classify', context: {}, history: [] });
    const context = await api(`/v1/agents/${id}/context`, { key });
    expect(context.body).toEqual({ version: 1, data: { lastLabel: 'greeting' } });
    // The next call sees the conversation so far.
    const next = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'classify', input: { text: 'again' } } });
    expect(next.body.output.historyLength).toBe(2);
  });

  it('shows the upstream the newest 50 turns however long the conversation, and stores a bounded history', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    let last = '';
    for (let i = 0; i < 28; i++) {
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'turn', input: `turn ${i}` } });
      expect(res.status).toBe(200);
      last = res.body.id;
    }
    const { history } = (await mockRequests(last)).requests[0]!.body as { history: { role: string; content: string }[] };
    // 27 earlier executions made 54 turns: the oldest four are gone, the rest in order.
    expect(history).toHaveLength(50);
    expect(history[0]).toEqual({ role: 'user', content: 'turn 2' });
    expect(history[48]).toEqual({ role: 'user', content: 'turn 26' });
    expect(history[49]).toMatchObject({ role: 'assistant' });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const stored = await runInDurableObject(stub, (_i, state) => state.storage.sql.exec<{ n: number }>('SELECT count(*) AS n FROM history').one().n);
    expect(stored).toBeGreaterThanOrEqual(50);
    expect(stored).toBeLessThanOrEqual(66);
  });

  it('sends the context as last written, by a PATCH, an execution or a transaction', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const contextSeen = async (input: unknown) => {
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'look', input } });
      expect(res.status).toBe(200);
      return (await mockRequests(res.body.id)).requests[0]?.body.context;
    };
    expect(await contextSeen({ mock: { contextPatch: { a: 1 } } })).toEqual({});
    expect(await contextSeen({})).toEqual({ a: 1 });
    expect((await api(`/v1/agents/${id}/context`, { key, method: 'PATCH', body: { b: 2 } })).status).toBe(200);
    expect(await contextSeen({})).toEqual({ a: 1, b: 2 });
    const other = await newAgent(key);
    const tx = await api('/v1/transactions', { key, body: { operations: [{ agentId: id, patch: { c: 3 } }, { agentId: other, patch: { c: 3 } }] } });
    expect(tx.status).toBe(200);
    expect(await contextSeen({})).toEqual({ a: 1, b: 2, c: 3 });
  });

  it('retries 5xx and connection resets, then succeeds', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const flaky = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { failTimes: 2, failStatus: 503 } } } });
    expect(flaky.status).toBe(200);
    expect(flaky.body.attempts).toBe(3);
    const reset = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { failTimes: 1, reset: true } } } });
    expect(reset.status).toBe(200);
    expect(reset.body.attempts).toBe(2);
  });

  it('answers 502 upstream_failed with the execution id when the upstream keeps failing', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { failStatus: 500 } } } });
    expect(res.status).toBe(502);
    expect(res.body.error.code).toBe('upstream_failed');
    const eid = res.body.error.details.executionId;
    expect(res.body.error.details.execution).toMatchObject({ id: eid, status: 'failed', attempts: 3, error: { code: 'upstream_failed', status: 500 } });
    const stored = await api(`/v1/agents/${id}/executions/${eid}`, { key });
    expect(stored.body.status).toBe('failed');
  });

  it('does not retry a 4xx', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { status: 400 } } } });
    expect(res.status).toBe(502);
    expect(res.body.error.details.execution.attempts).toBe(1);
  });

  it('never calls an agent-http upstream again once it answered 200, even when the body broke off or stalled', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl(), timeoutMs: 500 } });
    for (const [mock, status, code] of [[{ cutBody: true }, 502, 'upstream_failed'], [{ stallBody: true }, 504, 'upstream_timeout']] as const) {
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock }, timeoutMs: 5_000 } });
      expect(res.status).toBe(status);
      expect(res.headers.get('x-should-retry')).toBe('false');
      expect(res.body.error.details.execution).toMatchObject({ status: 'failed', attempts: 1, error: { code, status: 200, retryable: false } });
      expect((await mockRequests(res.body.error.details.executionId)).count).toBe(1);
    }
  });

  it('answers 502 when the upstream reply is not the protocol', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { body: 'not json' } } } });
    expect(res.status).toBe(502);
    expect(res.body.error.details.execution.error.code).toBe('upstream_failed');
  });

  it('says an agent-http 2xx without a body is one (a 204), not that its body is no JSON', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { status: 204 } } } });
    expect(res.status).toBe(502);
    expect(res.body.error.details.execution).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'upstream_failed', status: 204, retryable: false, message: 'upstream reply is not JSON: its 204 has no body' } });
  });

  it('shows what an agent-http 200 without "output" said instead', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { body: JSON.stringify({ error: { message: 'model overloaded' } }) } } } });
    expect(res.status).toBe(502);
    expect(res.body.error.details.execution.error).toMatchObject({ code: 'upstream_failed', retryable: false, message: 'upstream reply has no "output": {"error":{"message":"model overloaded"}}' });
  });

  it('answers 504 upstream_timeout when the deadline passes', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', timeoutMs: 300, input: { mock: { hang: true } } } });
    expect(res.status).toBe(504);
    expect(res.body.error.code).toBe('upstream_timeout');
    expect(res.body.error.details.execution.status).toBe('failed');
  });

  it('answers 504 at its deadline, not a second later, when the execution is still queued', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 1 });
    const slow = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 10_000 }, mode: 'async' } });
    const started = Date.now();
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'waits', timeoutMs: 300 } });
    const waited = Date.now() - started;
    expect(res.status).toBe(504);
    expect(res.body.error).toMatchObject({ code: 'upstream_timeout', message: 'deadline passed while queued' });
    expect(res.body.error.details.execution).toMatchObject({ status: 'failed', attempts: 0 });
    expect(waited).toBeGreaterThanOrEqual(300);
    expect(waited).toBeLessThan(1_200); // it used to wait for the deadline plus a second
    await api(`/v1/agents/${id}/executions/${slow.body.id}/cancel`, { key, method: 'POST' });
  });

  it('uses the openai-chat protocol with the agent instructions', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { instructions: 'You are terse.', upstream: { kind: 'openai-chat', baseUrl: mockUrl('/v1'), model: 'mock-1', apiKey: 'sk-test-9999' } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'Say hi' } });
    expect(res.status).toBe(200);
    expect(res.body.output).toEqual({ reply: 'mock reply to: Say hi', model: 'mock-1', usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } });
    const seen = await mockRequests(res.body.id);
    expect(seen.requests[0]?.headers.authorization).toBe('Bearer sk-test-9999');
    expect(seen.requests[0]?.body.messages[0]).toEqual({ role: 'system', content: 'You are terse.' });
  });

  it('refuses sync work on a paused agent with 409 agent_paused', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { paused: true } });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('agent_paused');
  });

  it('validates the body', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    for (const body of [{}, { intent: '' }, { intent: 'x', mode: 'later' }, { intent: 'x', timeoutMs: 5 }, { intent: 'x', bogus: 1 }]) {
      const res = await api(`/v1/agents/${id}/executions`, { key, body });
      expect(res.status, JSON.stringify(body)).toBe(400);
    }
    expect((await api('/v1/agents/nobody/executions', { key, body: { intent: 'x' } })).status).toBe(404);
  });
});

describe('executions: async, polling and listing', () => {
  it('answers 202 with Location and status queued, then finishes', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: 'hello', mode: 'async' } });
    expect(res.status).toBe(202);
    expect(res.body.status).toBe('queued');
    expect(res.headers.get('location')).toBe(`/v1/agents/${id}/executions/${res.body.id}`);
    const done = await eventually(async () => {
      const poll = await api(res.headers.get('location') ?? '', { key });
      return poll.body.status === 'succeeded' && poll.body;
    });
    expect(done.output.topic).toBe('greeting');
  });

  it('runs at most `concurrency` at once and the rest in order', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 2 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: `job ${i}`, input: { simulateLatencyMs: 300 }, mode: 'async' } });
      ids.push(res.body.id);
    }
    const finished = await eventually(async () => {
      const all = await Promise.all(ids.map(async (eid) => (await api(`/v1/agents/${id}/executions/${eid}`, { key })).body));
      return all.every((e) => e.status === 'succeeded') && all;
    });
    // Never more than two running at any instant, judged from the recorded intervals.
    const edges = finished.flatMap((e) => [[Date.parse(e.startedAt), 1], [Date.parse(e.finishedAt), -1]] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    let running = 0;
    let most = 0;
    for (const [, delta] of edges) most = Math.max(most, (running += delta));
    expect(most).toBe(2);
    const starts = finished.map((e) => Date.parse(e.startedAt));
    expect([...starts].sort((a, b) => a - b)).toEqual(starts);
  });

  it('shows a queued execution failed to a poll once its deadline has passed, without waiting for a free slot', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 1 });
    const slow = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 10_000 }, mode: 'async' } });
    const late = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'late', mode: 'async', timeoutMs: 300 } });
    expect(late.body.status).toBe('queued');
    await new Promise((resolve) => setTimeout(resolve, 600));
    const polled = await api(`/v1/agents/${id}/executions/${late.body.id}`, { key });
    expect(polled.body).toMatchObject({ status: 'failed', attempts: 0, error: { code: 'upstream_timeout', message: 'deadline passed while queued' } });
    expect((await api(`/v1/agents/${id}/executions/${slow.body.id}`, { key })).body.status).toBe('running');
    await api(`/v1/agents/${id}/executions/${slow.body.id}/cancel`, { key, method: 'POST' });
  });

  it('reports running and queued counts while work waits', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { concurrency: 1 });
    const first = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', input: { simulateLatencyMs: 10_000 }, mode: 'async' } });
    await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'next', mode: 'async' } });
    const status = await api(`/v1/agents/${id}/status`, { key });
    expect(status.body).toMatchObject({ state: 'running', running: 1, queued: 1 });
    await api(`/v1/agents/${id}/executions/${first.body.id}/cancel`, { key, method: 'POST' });
  });

  it('lists executions newest first from D1, filtered by status, with a cursor', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const made: string[] = [];
    for (let i = 0; i < 3; i++) made.push((await api(`/v1/agents/${id}/executions`, { key, body: { intent: `n${i}` } })).body.id);
    const failing = await newAgent(key, { upstream: mockUpstream() });
    await api(`/v1/agents/${failing}/executions`, { key, body: { intent: 'x', input: { mock: { status: 400 } } } });
    const all = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/executions?limit=2`, { key });
      return res.body.data.length === 2 && res.body.nextCursor && res.body;
    });
    expect(all.data.map((e: { id: string }) => e.id)).toEqual([made[2], made[1]]);
    const rest = await api(`/v1/agents/${id}/executions?limit=2&cursor=${all.nextCursor}`, { key });
    expect(rest.body.data.map((e: { id: string }) => e.id)).toEqual([made[0]]);
    expect(rest.body.nextCursor).toBeNull();
    const failed = await eventually(async () => {
      const res = await api(`/v1/agents/${failing}/executions?status=failed`, { key });
      return res.body.data.length === 1 && res.body;
    });
    expect(failed.data[0].status).toBe('failed');
    expect((await api(`/v1/agents/${id}/executions?status=weird`, { key })).status).toBe(400);
    // A cursor of another list is refused, not read as a place in this one (an empty last page, or page one again).
    const agentsCursor = (await api('/v1/agents?limit=1', { key })).body.nextCursor as string;
    const auditCursor = (await api('/v1/audit?limit=1', { key })).body.nextCursor as string;
    expect(agentsCursor).toEqual(expect.any(String));
    expect(auditCursor).toEqual(expect.any(String));
    for (const path of [`/v1/agents/${id}/executions?cursor=${agentsCursor}`, `/v1/agents/${id}/executions?cursor=${auditCursor}`, `/v1/audit?cursor=${all.nextCursor}`, `/v1/agents/${id}/deliveries?cursor=${all.nextCursor}`]) {
      const res = await api(path, { key });
      expect(res.status, path).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', details: [{ path: ['cursor'] }] });
    }
  });

  it("refuses another agent's execution cursor, or another tenant's, with 400 param cursor: a cursor names its list", async () => {
    const { key } = await newTenant();
    const a = await newAgent(key);
    const b = await newAgent(key);
    for (const id of [a, b]) for (let i = 0; i < 3; i++) await api(`/v1/agents/${id}/executions`, { key, body: { intent: `n${i}` } });
    const pageOf = async (id: string) => eventually(async () => {
      const res = await api(`/v1/agents/${id}/executions?limit=1`, { key });
      return res.body.nextCursor && res.body;
    });
    const [pageA, pageB] = [await pageOf(a), await pageOf(b)];
    // Its own cursor still pages on.
    const next = await api(`/v1/agents/${a}/executions?limit=1&cursor=${pageA.nextCursor}`, { key });
    expect(next.status).toBe(200);
    expect(next.body.data).toHaveLength(1);
    expect(next.body.data[0].id < pageA.data[0].id).toBe(true);
    // B's cursor on A's list used to be read as a place in A's executions (by time).
    const other = await newTenant();
    const otherAgent = await newAgent(other.key, { id: a });
    const refused = [
      await api(`/v1/agents/${a}/executions?cursor=${pageB.nextCursor}`, { key }),
      await api(`/v1/agents/${b}/executions?cursor=${pageA.nextCursor}`, { key }),
      await api(`/v1/agents/${otherAgent}/executions?cursor=${pageA.nextCursor}`, { key: other.key }),
      await api(`/v1/agents?cursor=${pageA.nextCursor}`, { key }),
    ];
    for (const res of refused) {
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', param: 'cursor' });
    }
  });

  it("refuses a status-filtered page's cursor in the unfiltered list or another status's: it skipped every newer execution without a word", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const ran: string[] = [];
    for (let i = 0; i < 2; i++) ran.push((await api(`/v1/agents/${id}/executions`, { key, body: { intent: `n${i}` } })).body.id);
    const slow = (await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'slow', mode: 'async', input: { message: 'hi', simulateLatencyMs: 20_000 } } })).body.id as string;
    expect((await api(`/v1/agents/${id}/executions/${slow}/cancel`, { key, method: 'POST' })).status).toBe(200);
    const succeeded = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/executions?status=succeeded&limit=1`, { key });
      return res.body.nextCursor && res.body;
    });
    expect(succeeded.data.map((e: { id: string }) => e.id)).toEqual([ran[1]]);
    // The same filter pages on.
    const next = await api(`/v1/agents/${id}/executions?status=succeeded&limit=1&cursor=${succeeded.nextCursor}`, { key });
    expect(next.body.data.map((e: { id: string }) => e.id)).toEqual([ran[0]]);
    // Read without the filter it answered the older executions only: the cancelled one, newer, was skipped.
    for (const query of [`cursor=${succeeded.nextCursor}`, `status=cancelled&cursor=${succeeded.nextCursor}`]) {
      const res = await api(`/v1/agents/${id}/executions?${query}`, { key });
      expect(res.status, query).toBe(400);
      expect(res.body.error, query).toMatchObject({ code: 'invalid_request', param: 'cursor' });
    }
    // And the unfiltered list's cursor is not a filtered list's.
    const all = await eventually(async () => {
      const res = await api(`/v1/agents/${id}/executions?limit=1`, { key });
      return res.body.data[0]?.status === 'cancelled' && res.body;
    });
    expect((await api(`/v1/agents/${id}/executions?status=succeeded&cursor=${all.nextCursor}`, { key })).status).toBe(400);
    expect((await api(`/v1/agents/${id}/executions?cursor=${all.nextCursor}`, { key })).body.data).toHaveLength(2);
  });

  it('bounds a page of executions by its size as well as by limit: large outputs page on with nextCursor, never one answer of 100 of them', async () => {
    // Each record may hold a 1 MiB output and a 256 KiB input: a page of 100 was over 100 MB,
    // read into the Worker whole (its isolate has 128 MB).
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const made: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: `big${i}`, input: { mock: { outputBytes: 1_000_000 } } } });
      expect(res.status).toBe(200);
      made.unshift(res.body.id);
    }
    await eventually(async () => (await api(`/v1/agents/${id}/executions?limit=1&cursor=`, { key })).body.data[0]?.id === made[0]);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: any } = await api(`/v1/agents/${id}/executions?limit=100${cursor ? `&cursor=${cursor}` : ''}`, { key });
      expect(res.status).toBe(200);
      expect(res.body.data.length).toBeGreaterThan(0);
      expect(JSON.stringify(res.body).length).toBeLessThan(5 * 1024 * 1024);
      seen.push(...res.body.data.map((e: { id: string }) => e.id));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual(made);
    expect(pages).toBeGreaterThan(1);
  });

  it('reads an execution the list shows after the agent has let it go (it keeps the newest 1,000 finished), from D1, and still 404 for one never run; cancelling it is 409 already_finished', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const made: { id: string }[] = [];
    for (let i = 0; i < 3; i++) made.push((await api(`/v1/agents/${id}/executions`, { key, body: { intent: `n${i}` } })).body);
    await eventually(async () => (await api(`/v1/agents/${id}/executions`, { key })).body.data.length === 3);
    // Retention, as for an agent that has run a thousand more since: here only the newest is kept.
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    await runInDurableObject(stub, (instance) => (instance as unknown as { store: { prune(now: number, keep: number): void } }).store.prune(Date.now(), 1));
    const oldest = await api(`/v1/agents/${id}/executions/${made[0]?.id}`, { key });
    expect(oldest.status).toBe(200);
    expect(oldest.body).toEqual(made[0]);
    expect(oldest.headers.get('x-gateway-stale')).toBeNull();
    expect((await api(`/v1/agents/${id}/executions/${made[2]?.id}`, { key })).body).toEqual(made[2]);
    expect((await api(`/v1/agents/${id}/executions/ex_never_run`, { key })).status).toBe(404);
    // It had finished: cancelling it is 409 already_finished, as for any finished one, not 404.
    const cancel = await api(`/v1/agents/${id}/executions/${made[0]?.id}/cancel`, { key, method: 'POST' });
    expect(cancel.status).toBe(409);
    expect(cancel.body.error).toMatchObject({ code: 'already_finished', details: { execution: made[0] } });
    expect((await api(`/v1/agents/${id}/executions/ex_never_run/cancel`, { key, method: 'POST' })).status).toBe(404);
  });

  it('reports the agent status', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key);
    const idle = await api(`/v1/agents/${id}/status`, { key });
    expect(idle.body).toEqual({ state: 'idle', running: 0, queued: 0, contextVersion: 0, lastExecution: null });
    const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'hello' } });
    const after = await api(`/v1/agents/${id}/status`, { key });
    expect(after.body).toMatchObject({ state: 'idle', contextVersion: 1, lastExecution: { id: exec.body.id, status: 'succeeded' } });
  });
});

describe("executions: an upstream's fields and its reply", () => {
  it('drops a top-level "__proto__" member of an upstream\'s contextPatch, as from a client\'s patch: stored, no client could ever remove it', async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const run = (reply: string) => api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { body: reply } } } });
    const res = await run('{"output":1,"contextPatch":{"__proto__":{"admin":true},"a":1}}');
    expect(res.status).toBe(200);
    expect((await api(`/v1/agents/${id}/context`, { key })).body).toEqual({ version: 1, data: { a: 1 } });
    // A patch of nothing else writes nothing; deeper down the name is ordinary data.
    expect((await run('{"output":2,"contextPatch":{"__proto__":{"admin":true}}}')).status).toBe(200);
    expect((await run('{"output":3,"contextPatch":{"b":{"__proto__":1}}}')).status).toBe(200);
    const context = await api(`/v1/agents/${id}/context`, { key });
    expect(context.body.version).toBe(2);
    expect(Object.keys(context.body.data)).toEqual(['a', 'b']);
    expect(Object.keys(context.body.data.b)).toEqual(['__proto__']);
  });

  it("fails an execution whose output holds a number beyond a double's range, as a contextPatch with one does: it was stored as null", async () => {
    const { key } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { body: '{"output":{"total":1e400,"items":[-1e999]}}' } } } });
    expect(res.status).toBe(502);
    expect(res.body.error.details.execution).toMatchObject({ status: 'failed', attempts: 1, error: { code: 'upstream_failed', retryable: false } });
    expect(res.body.error.details.execution.error.message).toBe('upstream "output": a number is beyond the range of a double (such as 1e400): it would be stored as null');
    expect((await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: { mock: { body: '{"output":{"total":1e300}}' } } } })).body.output).toEqual({ total: 1e300 });
  });

  it('refuses a member the upstream kind does not have (an agent-http apiKey, a misspelt api_key), as pool targets do: it used to be dropped silently', async () => {
    const { key } = await newTenant();
    const chat = { kind: 'openai-chat', baseUrl: 'https://api.example.com/v1', model: 'gpt' };
    const http = { kind: 'agent-http', url: 'https://agent.example.com/run' };
    for (const upstream of [{ ...http, apiKey: 'sk-secret-abcd1234' }, { ...chat, api_key: 'sk-secret-abcd1234' }, { ...chat, headers: { 'x-api-key': 'k' } }, { kind: 'builtin', url: http.url }, { kind: 'pool', pool: 'p', model: 'm' }]) {
      const res = await api('/v1/agents', { key, body: { upstream } });
      expect(res.status, JSON.stringify(upstream)).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(res.body.error.details[0]).toMatchObject({ path: ['upstream'], code: 'unrecognized_keys' });
    }
    const id = await newAgent(key);
    const patched = await api(`/v1/agents/${id}`, { method: 'PATCH', key, body: { upstream: { ...http, apiKey: 'sk-secret-abcd1234' } } });
    expect(patched.status).toBe(400);
    expect((await api(`/v1/agents/${id}`, { key })).body.upstream).toEqual({ kind: 'builtin' });
  });
});

describe('executions: a fault of the gateway inside a run', () => {
  it('fails the execution internal_error with a generic message, and logs the fault with the execution id: never echoed', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key, { upstream: mockUpstream() });
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const detail = 'database disk image is malformed: page 7 of /var/secret/do.sqlite';
    // The upstream answered, but storage fails the outcome's write with an error that is not transient.
    await runInDurableObject(stub, (instance) => {
      interceptAgentSql(instance, (query, params, real) => {
        if (query.startsWith('UPDATE executions SET status = ?') && params[0] === 'succeeded') throw new Error(detail);
        return real.exec(query, ...params);
      });
    });
    const lines: string[] = [];
    const errors = vi.spyOn(console, 'error').mockImplementation((line: unknown) => { lines.push(String(line)); });
    try {
      const exec = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', input: {}, mode: 'async' } });
      expect(exec.status).toBe(202);
      await eventually(async () => (await api(`/v1/agents/${id}/executions/${exec.body.id}`, { key })).body.status === 'failed');
      const failed = await api(`/v1/agents/${id}/executions/${exec.body.id}`, { key });
      expect(failed.body.error.code).toBe('internal_error');
      expect(failed.body.error.message).not.toContain('malformed');
      expect(failed.body.error.message).toMatch(/logged/);
      const logged = lines.map((line) => { try { return JSON.parse(line) as Record<string, unknown>; } catch { return {}; } })
        .find((entry) => entry.executionId === exec.body.id && String(entry.error).includes(detail));
      expect(logged).toMatchObject({ level: 'error' });
    } finally {
      errors.mockRestore();
    }
  });
});
