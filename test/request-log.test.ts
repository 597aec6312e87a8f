import { env } from 'cloudflare:test';
import { describe, expect, it, vi } from 'vitest';
import { createApp } from '../worker/app';
import { newAgent, newTenant } from './support/api';

type Line = Record<string, unknown>;

/** Sends the requests through the app and returns their request log lines, in order. */
async function logLines(key: string, requests: [method: string, path: string, body?: unknown, contentType?: string][]): Promise<Line[]> {
  const app = createApp();
  const lines: Line[] = [];
  const spy = vi.spyOn(console, 'log').mockImplementation((line: unknown) => {
    if (typeof line === 'string' && line.includes('"msg":"request"')) lines.push(JSON.parse(line) as Line);
  });
  try {
    for (const [method, path, body, contentType = 'application/json'] of requests) {
      const res = await app.request(path, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body !== undefined && { 'content-type': contentType }) },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      }, { ...env, LOG_LEVEL: 'info' }); // the tests' own LOG_LEVEL logs errors only
      await res.arrayBuffer();
    }
  } finally {
    spy.mockRestore();
  }
  return lines;
}

describe('request log lines name the agent and execution they are about', () => {
  it('on every route below /v1/agents/:id, not only the execution POST: an operator finds an agent\'s requests by agent', async () => {
    const { key } = await newTenant();
    const agent = await newAgent(key);
    const app = createApp();
    const started = await app.request(`/v1/agents/${agent}/executions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ intent: 'x', mode: 'async', input: { simulateLatencyMs: 3_000 } }),
    }, env);
    const { id: execution } = (await started.json()) as { id: string };

    const lines = await logLines(key, [
      ['GET', `/v1/agents/${agent}`],
      ['PATCH', `/v1/agents/${agent}`, { name: 'logged' }],
      ['GET', `/v1/agents/${agent}/status`],
      ['GET', `/v1/agents/${agent}/context`],
      ['PATCH', `/v1/agents/${agent}/context`, { topic: 'x' }, 'application/merge-patch+json'],
      ['GET', `/v1/agents/${agent}/executions`],
      ['GET', `/v1/agents/${agent}/executions/${execution}`],
      ['POST', `/v1/agents/${agent}/executions/${execution}/cancel`],
      ['POST', `/v1/agents/${agent}/executions/${execution}/cancel`],
      ['GET', `/v1/agents/${agent}/executions/ex_missing`],
      ['DELETE', `/v1/agents/${agent}`],
    ]);
    expect(lines.map((line) => [line.method, line.status])).toEqual([
      ['GET', 200], ['PATCH', 200], ['GET', 200], ['GET', 200], ['PATCH', 200], ['GET', 200], ['GET', 200], ['POST', 200], ['POST', 409], ['GET', 404], ['DELETE', 204],
    ]);
    for (const line of lines) expect(line, `${String(line.method)} ${String(line.path)}`).toMatchObject({ agent });
    for (const line of lines.slice(6, 9)) expect(line, `${String(line.method)} ${String(line.path)}`).toMatchObject({ execution });
    expect(lines[9]).toMatchObject({ execution: 'ex_missing' });
    for (const line of lines.slice(0, 6)) expect(line).not.toHaveProperty('execution');
  });

  it('names the agent of an A2A call with the same field, beside its method', async () => {
    const { key } = await newTenant();
    const agent = await newAgent(key);
    const lines = await logLines(key, [['POST', `/a2a/${agent}/`, { jsonrpc: '2.0', id: 1, method: 'ListTasks', params: {} }]]);
    expect(lines).toEqual([expect.objectContaining({ status: 200, agent, a2aMethod: 'ListTasks' })]);
    expect(lines[0]).not.toHaveProperty('agentId');
  });

  it('names a created agent, and nothing on routes about other resources', async () => {
    const { key } = await newTenant();
    const lines = await logLines(key, [
      ['POST', '/v1/agents', { id: 'log-created' }],
      ['POST', '/v1/agents/batch', { agents: [{ id: 'log-batch' }] }],
      ['GET', '/v1/agents'],
      ['GET', '/v1/pools/log-pool'],
    ]);
    expect(lines.map((line) => line.status)).toEqual([201, 200, 200, 404]);
    expect(lines[0]).toMatchObject({ agent: 'log-created' });
    for (const line of lines.slice(1)) expect(line, String(line.path)).not.toHaveProperty('agent');
  });
});
