import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, eventually, newAgent } from './support/api';
import { limitedKey, settledRequests, toolError } from './support/limits';

/**
 * Deleting an agent settles what its executions owe the keys' token budgets before its storage
 * goes: an execution that never ran is charged nothing, instead of its reservation being held
 * for 15 minutes and then charged in full.
 */

const LIMITS = { budget: { tokens: 10_000, period: 'day' } };
const ASYNC_BODY = { intent: 'support.reply', input: { message: 'Where is my order?' }, mode: 'async' };
const chatUpstream = () => ({ kind: 'openai-chat', baseUrl: `${env.MOCK_UPSTREAM_URL}/t/deleted-agent/ok/v1`, model: 'mock-1' });
const budget = async (key: string) => (await api('/v1/usage', { key })).body.budget;

describe('deleting an agent with budgeted executions', () => {
  it('gives back the reservations of executions that never ran', async () => {
    const { key, otherKey } = await limitedKey(LIMITS);
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: true } })).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await api(`/v1/agents/${agent}/executions`, { key, body: ASYNC_BODY })).status).toBe(202);
    expect((await budget(key)).reservedTokens).toBeGreaterThan(0);

    expect((await api(`/v1/agents/${agent}`, { method: 'DELETE', key: otherKey })).status).toBe(204);
    const after = await eventually(async () => {
      const now = await budget(key);
      return now.reservedTokens === 0 && now;
    });
    expect(after).toMatchObject({ tokens: 0, requests: 2 });
  });

  it('charges a builtin execution cut short (its agent deleted, or cancelled, while it thinks) nothing: it calls out to no one, so there are no unreported tokens to cover', async () => {
    const { key, otherKey } = await limitedKey(LIMITS);
    const thinking = { intent: 'support.reply', input: { message: 'Where is my order?', simulateLatencyMs: 20_000 }, mode: 'async' };
    const running = async (agent: string) => eventually(async () => (await api(`/v1/agents/${agent}/status`, { key: otherKey })).body.running === 1);

    const deleted = await newAgent(otherKey);
    expect((await api(`/v1/agents/${deleted}/executions`, { key, body: thinking })).status).toBe(202);
    await running(deleted);
    expect((await api(`/v1/agents/${deleted}`, { method: 'DELETE', key: otherKey })).status).toBe(204);

    const cancelled = await newAgent(otherKey);
    const started = await api(`/v1/agents/${cancelled}/executions`, { key, body: thinking });
    await running(cancelled);
    expect((await api(`/v1/agents/${cancelled}/executions/${started.body.id}/cancel`, { method: 'POST', key })).status).toBe(200);

    const after = await eventually(async () => {
      const now = await budget(key);
      return now.reservedTokens === 0 && now;
    });
    expect(after).toMatchObject({ tokens: 0, requests: 2 });
  });

  it('counts a sync execution whose agent is deleted while it runs against the request budget, on every face that waits for one', async () => {
    const { key, otherKey } = await limitedKey({ concurrency: 10, budget: { requests: 100, period: 'day' } });
    // An upstream that takes its time, so the agent can be deleted while the call is out.
    const slow = { kind: 'openai-chat', baseUrl: `${env.MOCK_UPSTREAM_URL}/t/deleted-while-running/delayMs=1500/v1`, model: 'mock-1' };
    const message = { messageId: 'm-deleted', role: 'ROLE_USER', parts: [{ text: 'Where is my order?' }] };
    const faces: [string, (agent: string) => Promise<unknown>][] = [
      ['REST', async (agent) => {
        const res = await api(`/v1/agents/${agent}/executions`, { key, body: { intent: 'support.reply', input: { message: 'Where is my order?' } } });
        return [res.status, res.body.error?.code, res.body.error?.details?.executionId];
      }],
      ['chat', async (agent) => (await api('/v1/chat/completions', { key, body: { model: `agent:${agent}`, messages: [{ role: 'user', content: 'Where is my order?' }] } })).status],
      ['MCP', async (agent) => {
        const res = await api('/mcp', { key, headers: { accept: 'application/json, text/event-stream' }, body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: agent, intent: 'support.reply', wait: true } } } });
        return toolError(JSON.parse(/^data: (.*)$/m.exec(res.body)?.[1] ?? 'null'));
      }],
      ['A2A', async (agent) => (await api(`/a2a/${agent}/`, { key, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message } } })).body],
    ];
    const answers: Record<string, unknown> = {};
    for (const [face, run] of faces) {
      const agent = await newAgent(otherKey, { upstream: slow });
      const answer = run(agent);
      await eventually(async () => (await api(`/v1/agents/${agent}/status`, { key: otherKey })).body.running === 1);
      expect((await api(`/v1/agents/${agent}`, { method: 'DELETE', key: otherKey })).status).toBe(204);
      answers[face] = await answer;
    }
    expect(answers).toMatchObject({
      REST: [404, 'not_found', expect.stringMatching(/^ex_/)],
      chat: 404,
      MCP: 'not_found',
      A2A: { error: { code: -32001, message: expect.stringMatching(/the agent was deleted$/) } },
    });
    // The upstream was called for each: the work started, so it counts, as a cancelled one does.
    expect(await settledRequests(key)).toBe(faces.length);
  });
});
