import { env, runInDurableObject } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';

// Issue 8's logs name the agent, execution, upstream and latency. A sync execution's request
// line carries its outcome; an execution that ends after its request was answered (async, a
// hook's, an A2A send's) needs a line of its own, or an operator cannot find why it failed.

type Line = Record<string, unknown>;
const stubOf = (tenantId: string, agentId: string) => env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${agentId}`));

/** An agent on the mock upstream whose object logs at `info` (the tests' LOG_LEVEL logs errors only). */
async function loggingAgent() {
  const { key, tenantId } = await newTenant();
  const id = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent') } });
  await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
    (instance as { env: { LOG_LEVEL?: string } }).env.LOG_LEVEL = 'info';
  });
  return { key, tenantId, id };
}

/** The `execution finished` lines console.log is given from now on. */
function finishedLines(): Line[] {
  const lines: Line[] = [];
  const original = console.log.bind(console);
  vi.spyOn(console, 'log').mockImplementation((line: unknown, ...rest: unknown[]) => {
    if (typeof line === 'string' && line.includes('"msg":"execution finished"')) lines.push(JSON.parse(line) as Line);
    else original(line, ...rest);
  });
  return lines;
}

afterEach(() => vi.restoreAllMocks());

describe('an execution that ends after its request was answered is logged', () => {
  it('names the tenant, agent, execution, upstream, attempts, duration and error code of one that failed, at warn', async () => {
    const { key, tenantId, id } = await loggingAgent();
    const lines = finishedLines();
    const started = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'nightly.sync', mode: 'async', input: { mock: { failStatus: 500 } } } });
    expect(started.status).toBe(202);
    const line = await eventually(async () => lines.find((l) => l.execution === started.body.id));
    expect(line).toMatchObject({ level: 'warn', tenant: tenantId, agent: id, intent: 'nightly.sync', status: 'failed', attempts: 3, error: 'upstream_failed' });
    expect(line.upstream).toEqual(expect.any(String));
    expect(line.durationMs).toEqual(expect.any(Number));
    // The error's code only: its message may quote what the upstream answered.
    expect(JSON.stringify(line)).not.toContain('upstream answered');
  });

  it('logs one that succeeded at info, once', async () => {
    const { key, id } = await loggingAgent();
    const lines = finishedLines();
    const started = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', mode: 'async' } });
    await eventually(async () => lines.some((l) => l.execution === started.body.id));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(lines.filter((l) => l.execution === started.body.id)).toEqual([expect.objectContaining({ level: 'info', status: 'succeeded', attempts: 1 })]);
  });

  it('writes no line for a sync execution: its request line has the outcome', async () => {
    const { key, id } = await loggingAgent();
    const lines = finishedLines();
    const res = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x' } });
    expect(res.status).toBe(200);
    // An async one after it is logged: the sync one had its chance to be.
    const after = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', mode: 'async' } });
    await eventually(async () => lines.some((l) => l.execution === after.body.id));
    expect(lines.map((l) => l.execution)).toEqual([after.body.id]);
  });

  it("keeps to the operator's LOG_LEVEL: at warn, a success is not logged and a failure is", async () => {
    const { key, tenantId, id } = await loggingAgent();
    await runInDurableObject(stubOf(tenantId, id), (instance: unknown) => {
      (instance as { env: { LOG_LEVEL?: string } }).env.LOG_LEVEL = 'warn';
    });
    const lines = finishedLines();
    const ok = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', mode: 'async' } });
    const failed = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'x', mode: 'async', input: { mock: { status: 400 } } } });
    await eventually(async () => lines.some((l) => l.execution === failed.body.id));
    await eventually(async () => (await api(`/v1/agents/${id}/executions/${ok.body.id}`, { key })).body.status === 'succeeded');
    expect(lines.map((l) => l.execution)).toEqual([failed.body.id]);
  });
});
