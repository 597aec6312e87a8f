import { describe, expect, it } from 'vitest';
import { api, mockUrl, newAgent, newTenant } from './support/api';
import { connect } from './support/mcp';
import { agentStub } from './support/transactions';

/** Holds the agent with a prepared transaction until the returned function releases it. */
async function hold(tenantId: string, agentId: string, txId: string): Promise<() => Promise<unknown>> {
  const stub = agentStub(tenantId, agentId);
  const vote = await stub.prepare(txId, { coordinatorName: `${tenantId}/${txId}`, operation: { patch: { held: true } }, deadlineAt: Date.now() + 60_000 });
  expect(vote.ok).toBe(true);
  return () => stub.abort(txId);
}

describe('transactions beside the other intents on an agent', () => {
  it('replays a keyed sync execution the lock refused without Retry-After: waiting cannot change a recorded answer', async () => {
    const { key, tenantId } = await newTenant();
    const a = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const release = await hold(tenantId, a, 'tx_intents_1');
    const body = { intent: 'x', input: { mock: { contextPatch: { fromExecution: true } } } };
    const first = await api(`/v1/agents/${a}/executions`, { key, body, headers: { 'idempotency-key': 'locked-once' } });
    expect(first.status).toBe(409);
    expect(first.body.error.code).toBe('agent_locked');
    expect(first.headers.get('retry-after')).toBe('1');
    await release();

    // The key's recorded execution is the refusal: resending it with the same key a second (or
    // an hour) later answers the same, so the replay must not invite the client to wait and resend.
    const again = await api(`/v1/agents/${a}/executions`, { key, body, headers: { 'idempotency-key': 'locked-once' } });
    expect(again.status).toBe(409);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.error).toMatchObject({ code: 'agent_locked', details: { executionId: first.body.error.details.executionId } });
    expect(again.headers.get('retry-after')).toBeNull();
    expect(again.body.error.message).toMatch(/new Idempotency-Key/);

    // A new key runs it, now that the lock is gone.
    const fresh = await api(`/v1/agents/${a}/executions`, { key, body, headers: { 'idempotency-key': 'locked-twice' } });
    expect(fresh.status).toBe(200);
  });

  it('says so in the MCP tool error of a replayed execute_intent the lock refused, which names the same execution', async () => {
    const { key, tenantId } = await newTenant();
    const a = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl() } });
    const client = await connect(key);
    const args = { agentId: a, intent: 'x', input: { mock: { contextPatch: { fromMcp: true } } }, wait: true, idempotencyKey: 'mcp-locked' };
    const toolError = async () => {
      const result = (await client.callTool({ name: 'execute_intent', arguments: args })) as { isError?: boolean; content: { text?: string }[] };
      expect(result.isError).toBe(true);
      return JSON.parse(result.content[0]?.text ?? 'null').error;
    };
    const release = await hold(tenantId, a, 'tx_intents_2');
    const first = await toolError();
    expect(first.code).toBe('agent_locked');
    expect(first.message).not.toMatch(/Idempotency-Key/);
    await release();
    const again = await toolError();
    expect(again).toMatchObject({ code: 'agent_locked', details: { executionId: first.details.executionId } });
    expect(again.message).toMatch(/new Idempotency-Key/);
    await client.close();
  });
});
