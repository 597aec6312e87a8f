import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, eventually, newAgent } from './support/api';
import { limitedKey } from './support/limits';

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
});
