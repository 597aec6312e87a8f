import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, newAgent, newTenant } from './support/api';

describe('the chaos hook (ENABLE_CHAOS)', () => {
  it('refuses to reset an agent unless the operator enabled it, and the agent keeps working', async () => {
    const { key, tenantId } = await newTenant();
    const id = await newAgent(key);
    const stub = env.AGENTS.get(env.AGENTS.idFromName(`${tenantId}/${id}`));
    const result = await stub.chaosRestart();
    expect(result).toMatchObject({ ok: false, code: 'not_found' });
    const run = await api(`/v1/agents/${id}/executions`, { key, body: { intent: 'support.reply', input: { message: 'still there?' } } });
    expect(run.status).toBe(200);
  });
});
