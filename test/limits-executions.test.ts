import { env, abortAllDurableObjects, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { startExecution } from '../worker/agents/operations';
import type { Env } from '../worker/env';
import { ApiError } from '../worker/errors';
import { limiter, limiterName } from '../worker/limits/limiter';
import { tokenCharge } from '../worker/limits/middleware';
import { estimateExecutionTokens } from '../worker/limits/usage';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { limitedKey } from './support/limits';
import { agentStub } from './support/transactions';

/**
 * Executions are charged against a key's token budget like chats: reserved before they are
 * accepted, settled with what their upstream reported once they have ended (async ones long
 * after their 202), by the agent, from its own SQLite, across restarts.
 */

/** The mock's openai-chat answer reports 10 prompt and 5 completion tokens. */
const REPORTED = 15;
/** An openai-chat upstream on the mock (faults in its path, `ok` for none). */
const chatUpstream = (faults = 'ok') => ({ kind: 'openai-chat', baseUrl: `${env.MOCK_UPSTREAM_URL}/t/exec-tokens/${faults}/v1`, model: 'mock-1' });

const BODY = { intent: 'support.reply', input: { message: 'Where is my order?' } };
const ASYNC_BODY = { ...BODY, mode: 'async' };
/** What an execution request reserves: its body at ~4 characters a token and the 256 allowance. */
const reservation = (body: unknown) => estimateExecutionTokens(JSON.stringify(body)).tokens;

const execute = (key: string, agent: string, body: unknown = BODY, headers: Record<string, string> = {}) => api(`/v1/agents/${agent}/executions`, { key, body, headers });

/** The key's budget once nothing is reserved any more (every execution settled). */
async function settled(key: string): Promise<{ tokens: number; requests: number; reservedTokens: number }> {
  const usage = await eventually(async () => {
    const res = await api('/v1/usage', { key });
    return res.body.budget.reservedTokens === 0 && res.body;
  });
  return usage.budget;
}

async function pausedAgent(otherKey: string): Promise<string> {
  const agent = await newAgent(otherKey, { upstream: chatUpstream() });
  expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: true } })).status).toBe(200);
  return agent;
}

const chargeTable = (tenantId: string, agent: string) =>
  runInDurableObject(agentStub(tenantId, agent), (_instance, state) => {
    const exists = [...state.storage.sql.exec("SELECT name FROM sqlite_master WHERE name = 'token_charges'")].length > 0;
    return exists ? [...state.storage.sql.exec('SELECT execution_id, used, attempts FROM token_charges')] : null;
  });

describe('executions against a token budget', () => {
  it('a sync execution on an openai-chat upstream is charged the usage it reported', async () => {
    const { key, otherKey, tenantId } = await limitedKey({ budget: { tokens: 10_000, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    const res = await execute(key, agent);
    expect(res.status).toBe(200);
    expect(res.body.output.usage.total_tokens).toBe(REPORTED);
    expect(await settled(key)).toMatchObject({ tokens: REPORTED, requests: 1, reservedTokens: 0 });
    // Settled: nothing is left owing in the agent.
    expect(await chargeTable(tenantId, agent)).toEqual([]);
  });

  it('an async execution holds its reservation past its 202 and settles once it has run', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 10_000, period: 'day' } });
    const agent = await pausedAgent(otherKey);
    const accepted = await execute(key, agent, ASYNC_BODY);
    expect(accepted.status).toBe(202);
    // The request has ended; its execution waits on the paused agent, its tokens still reserved.
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ tokens: 0, reservedTokens: reservation(ASYNC_BODY), requests: 1 });

    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: false } })).status).toBe(200);
    const done = await eventually(async () => {
      const res = await api(`/v1/agents/${agent}/executions/${accepted.body.id}`, { key });
      return res.body.status === 'succeeded' && res.body;
    });
    expect(done.output.usage.total_tokens).toBe(REPORTED);
    expect(await settled(key)).toMatchObject({ tokens: REPORTED, reservedTokens: 0, requests: 1 });
  });

  it('refuses an execution its budget cannot cover with 429 budget_exhausted, starting nothing', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 100, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    const res = await execute(key, agent);
    expect(res.status).toBe(429);
    expect(res.body.error.code).toBe('budget_exhausted');
    expect(res.body.error.details.limit).toBe('budget.tokens');
    expect(res.headers.get('ratelimit-limit')).toBe('100');
    expect(res.headers.get('ratelimit-remaining')).toBe('100');
    expect(res.headers.get('retry-after')).not.toBeNull();
    expect((await api(`/v1/agents/${agent}/status`, { key: otherKey })).body.lastExecution).toBeNull();
    expect(await settled(key)).toMatchObject({ tokens: 0, requests: 0 });
  });

  it('admits only the concurrent executions whose reservations fit, and gives back those cancelled before they ran', async () => {
    const each = reservation(ASYNC_BODY);
    const { key, otherKey } = await limitedKey({ budget: { tokens: 3 * each + each - 1, period: 'day' } });
    const agent = await pausedAgent(otherKey);
    const results = await Promise.all(Array.from({ length: 8 }, () => execute(key, agent, ASYNC_BODY)));
    const admitted = results.filter((r) => r.status === 202);
    expect(admitted).toHaveLength(3);
    for (const refused of results.filter((r) => r.status !== 202)) {
      expect(refused.status).toBe(429);
      expect(refused.body.error.code).toBe('budget_exhausted');
    }
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ tokens: 0, reservedTokens: 3 * each, requests: 3 });

    // Cancelled while queued: no upstream call started, so the reservations are given back.
    for (const r of admitted) expect((await api(`/v1/agents/${agent}/executions/${r.body.id}/cancel`, { method: 'POST', key })).status).toBe(200);
    expect(await settled(key)).toMatchObject({ tokens: 0, reservedTokens: 0, requests: 3 });
    expect((await execute(key, agent, ASYNC_BODY)).status).toBe(202);
  });

  it('a repeated Idempotency-Key replays without charging again', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 10_000, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    const headers = { 'idempotency-key': `tokens-${crypto.randomUUID()}` };
    expect((await execute(key, agent, BODY, headers)).status).toBe(200);
    expect(await settled(key)).toMatchObject({ tokens: REPORTED, requests: 1 });
    const replay = await execute(key, agent, BODY, headers);
    expect(replay.status).toBe(200);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(await settled(key)).toMatchObject({ tokens: REPORTED, requests: 1, reservedTokens: 0 });
  });

  it('a failed execution is charged nothing; an upstream without usage is charged an estimate of its text', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 10_000, period: 'day' } });
    const failing = await newAgent(otherKey, { upstream: chatUpstream('status=400') });
    expect((await execute(key, failing)).status).toBe(502);
    expect(await settled(key)).toMatchObject({ tokens: 0, requests: 1 });

    const quiet = await newAgent(otherKey, { upstream: chatUpstream('omitUsage=true') });
    const res = await execute(key, quiet);
    expect(res.status).toBe(200);
    expect(res.body.output.usage).toBeUndefined();
    const estimate = Math.ceil(JSON.stringify(BODY.input).length / 4) + Math.ceil(res.body.output.reply.length / 4);
    expect(await settled(key)).toMatchObject({ tokens: estimate, requests: 2 });
  });

  it('A2A sends and MCP execute_intent calls are charged too', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 10_000, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    const sent = await api(`/a2a/${agent}/`, {
      key, headers: { 'a2a-version': '1.0' },
      body: { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: crypto.randomUUID(), role: 'ROLE_USER', parts: [{ text: 'hi' }] } } },
    });
    expect(sent.status).toBe(200);
    expect(sent.body.error).toBeUndefined();
    expect(await settled(key)).toMatchObject({ tokens: REPORTED, requests: 1 });

    const called = await api('/mcp', {
      key, headers: { accept: 'application/json, text/event-stream' },
      body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: agent, intent: 'support.reply', input: { message: 'hi' }, wait: true } } },
    });
    expect(called.status).toBe(200);
    expect(JSON.stringify(called.body)).not.toContain('"isError":true');
    expect(await settled(key)).toMatchObject({ tokens: 2 * REPORTED, requests: 2 });
  });

  it('a blocking A2A send is settled before it is answered, as a sync execution is (both versions)', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 10_000, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    const sends: { headers: Record<string, string>; method: string; message: Record<string, unknown> }[] = [
      { headers: { 'a2a-version': '1.0' }, method: 'SendMessage', message: { messageId: crypto.randomUUID(), role: 'ROLE_USER', parts: [{ text: 'hi' }] } },
      { headers: {}, method: 'message/send', message: { kind: 'message', messageId: crypto.randomUUID(), role: 'user', parts: [{ kind: 'text', text: 'hi' }] } },
    ];
    for (const [i, { headers, method, message }] of sends.entries()) {
      const sent = await api(`/a2a/${agent}/`, { key, headers, body: { jsonrpc: '2.0', id: 1, method, params: { message } } });
      expect(sent.body.error, method).toBeUndefined();
      // Read at once: the turn has ended, so its reservation is no longer held (it used to be
      // settled only after the answer, so back-to-back sends met a budget still reserved).
      expect((await api('/v1/usage', { key })).body.budget, method).toMatchObject({ tokens: (i + 1) * REPORTED, reservedTokens: 0, requests: i + 1 });
    }
  });

  it('a settlement the limiter refused is kept in the agent and delivered from its alarm after a restart', async () => {
    const { key, keyId, otherKey, tenantId } = await limitedKey({ budget: { tokens: 10_000, period: 'day' } });
    const agent = await pausedAgent(otherKey);
    const accepted = await execute(key, agent, ASYNC_BODY);
    expect(accepted.status).toBe(202);

    // The limiter cannot settle anything now.
    const limiterStub = env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(`key:${keyId}`));
    const rename = (from: string, to: string) => runInDurableObject(limiterStub, (_instance, state) => { state.storage.sql.exec(`ALTER TABLE ${from} RENAME TO ${to}`); });
    await rename('charges', 'charges_gone');
    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: false } })).status).toBe(200);
    const owed = await eventually(async () => {
      const rows = await chargeTable(tenantId, agent);
      return rows?.length === 1 && Number(rows[0]?.attempts) > 0 && rows;
    });
    expect(owed[0]).toMatchObject({ execution_id: accepted.body.id, used: REPORTED });

    await rename('charges_gone', 'charges');
    await abortAllDurableObjects();
    await eventually(async () => {
      await runDurableObjectAlarm(agentStub(tenantId, agent));
      return (await chargeTable(tenantId, agent))?.length === 0;
    });
    expect(await settled(key)).toMatchObject({ tokens: REPORTED, reservedTokens: 0, requests: 1 });
  });
});

describe('what an execution reserves: what its run sends, not only its request', () => {
  it("refuses one whose agent's instructions or context the budget cannot cover, starting nothing, and an A2A send to it too", async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 1_000, period: 'day' } });
    // Each request is small; what the run would send is not: ~1,000 tokens of instructions for
    // a chat upstream, ~1,000 of context for an agent-http one (which is posted the context).
    const chat = await newAgent(otherKey, { upstream: chatUpstream(), instructions: 'Be helpful. '.repeat(340) });
    const http = await newAgent(otherKey, { upstream: { kind: 'agent-http', url: mockUrl() } });
    expect((await api(`/v1/agents/${http}/context`, { method: 'PATCH', key: otherKey, body: { notes: 'n'.repeat(4_000) } })).status).toBe(200);
    // An A2A send (either version) is a turn of the same agent: it reserves the same way.
    const sends: { headers: Record<string, string>; method: string; message: Record<string, unknown> }[] = [
      { headers: { 'a2a-version': '1.0' }, method: 'SendMessage', message: { messageId: 'm-1', role: 'ROLE_USER', parts: [{ text: 'hi' }] } },
      { headers: {}, method: 'message/send', message: { kind: 'message', messageId: 'm-2', role: 'user', parts: [{ kind: 'text', text: 'hi' }] } },
    ];
    for (const agent of [chat, http]) {
      const res = await execute(key, agent);
      expect(res.status, agent).toBe(429);
      expect(res.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
      expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
      for (const { headers, method, message } of sends) {
        const sent = await api(`/a2a/${agent}/`, { key, headers, body: { jsonrpc: '2.0', id: 1, method, params: { message } } });
        expect(sent.status, `${agent} ${method}`).toBe(429);
        expect(sent.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
        expect(sent.headers.get('retry-after')).toMatch(/^\d+$/);
      }
      expect((await api(`/v1/agents/${agent}/status`, { key: otherKey })).body.lastExecution).toBeNull();
    }
    expect(await settled(key)).toMatchObject({ tokens: 0, requests: 0 });
    // The same request to an agent that sends little runs.
    expect((await execute(key, await newAgent(otherKey, { upstream: chatUpstream() }))).status).toBe(200);
  });

  it('holds the history turns the run will send, and settles with what was used', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: 100_000, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    const long = { intent: 'support.reply', input: { message: `Where is my order? ${'x'.repeat(4_000)}` } };
    expect((await execute(key, agent, long)).status).toBe(200);
    expect(await settled(key)).toMatchObject({ tokens: REPORTED, requests: 1 });
    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: true } })).status).toBe(200);
    const accepted = await execute(key, agent, ASYNC_BODY);
    expect(accepted.status).toBe(202);
    // The earlier turn (4,000 characters) goes upstream with this one: the limiter holds it.
    const held = await eventually(async () => {
      const reserved: number = (await api('/v1/usage', { key })).body.budget.reservedTokens;
      return reserved > reservation(ASYNC_BODY) && reserved;
    });
    expect(held).toBeGreaterThanOrEqual(1_000 + 256);
    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: false } })).status).toBe(200);
    expect(await settled(key)).toMatchObject({ tokens: 2 * REPORTED, reservedTokens: 0, requests: 2 });
  });
});

describe('concurrent large executions of one key', () => {
  // Each run sends ~1,300 tokens (instructions of 4,200 characters): one fits a budget of 2,000
  // beside the other's request, two do not. Each admission reports the headroom it saw.
  const BUDGET = 2_000;
  const large = async (otherKey: string) => {
    const agent = await newAgent(otherKey, { upstream: chatUpstream(), instructions: 'Be helpful. '.repeat(350) });
    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: true } })).status).toBe(200);
    return agent;
  };

  it('take the budget only once: exactly one runs, the other is refused 429 budget_exhausted', async () => {
    const { key, otherKey } = await limitedKey({ budget: { tokens: BUDGET, period: 'day' } });
    const agents = [await large(otherKey), await large(otherKey)];
    const results = await Promise.all(agents.map((agent) => execute(key, agent, ASYNC_BODY)));
    expect(results.map((r) => r.status).sort()).toEqual([202, 429]);
    const refused = results.find((r) => r.status === 429)!;
    expect(refused.body.error).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    const usage = await eventually(async () => {
      const res = await api('/v1/usage', { key });
      return res.body.inFlight === null && res.body.budget.requests === 1 && res.body.budget;
    });
    // The one accepted holds what its run sends; the refused one was given back.
    expect(usage.reservedTokens).toBeGreaterThan(1_000);
    expect(usage.reservedTokens + usage.tokens).toBeLessThanOrEqual(BUDGET);
  });

  it('admitted before either is handed to its agent, the second raise is refused by the limiter', async () => {
    // The interleaving the test above may or may not hit: both admissions first, each reporting
    // headroom for one large run, then both agents. The limiter decides the raise.
    const { tenantId, keyId, otherKey } = await limitedKey({ budget: { tokens: BUDGET, period: 'day' } });
    const agents = [await large(otherKey), await large(otherKey)];
    const limits = { budget: { tokens: BUDGET, period: 'day' as const } };
    const stub = limiter(env as unknown as Env, limiterName(keyId));
    const charges = [];
    for (const _ of agents) {
      const admitted = await stub.admit({ limits, upstream: true, tokens: reservation(ASYNC_BODY), holdTokens: true });
      if (!admitted.ok || !admitted.leaseId) throw new Error('not admitted');
      charges.push(tokenCharge({ name: limiterName(keyId), id: admitted.leaseId }, admitted, limits)!);
    }
    const body = { intent: BODY.intent, input: BODY.input, mode: 'async' as const };
    const first = await startExecution(env as unknown as Env, tenantId, agents[0]!, body, undefined, false, charges[0]);
    expect(first.execution.status).toBe('queued');
    const second = await startExecution(env as unknown as Env, tenantId, agents[1]!, body, undefined, false, charges[1]).catch((error: unknown) => error);
    expect(second).toBeInstanceOf(ApiError);
    expect(second).toMatchObject({ code: 'budget_exhausted', details: { limit: 'budget.tokens' } });
    expect((await api(`/v1/agents/${agents[1]}/status`, { key: otherKey })).body.lastExecution).toBeNull();
    const usage = await stub.usage(limits);
    expect(usage.budget!.reservedTokens).toBeLessThanOrEqual(BUDGET);
  });
});

describe('a reservation its agent has not settled in time', () => {
  it('is charged in full at expiry, then corrected once by the late settlement, never counted twice', async () => {
    const { key, keyId, otherKey } = await limitedKey({ budget: { tokens: 10_000, period: 'day' } });
    const agent = await pausedAgent(otherKey);
    const accepted = await execute(key, agent, ASYNC_BODY);
    expect(accepted.status).toBe(202);

    // As if the execution had waited past the reservation's expiry.
    const limiterStub = env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(`key:${keyId}`));
    const chargeId = await runInDurableObject(limiterStub, (_instance, state) => {
      state.storage.sql.exec('UPDATE charges SET expires_at = 0');
      return String([...state.storage.sql.exec('SELECT id FROM charges')][0]?.id);
    });
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ tokens: reservation(ASYNC_BODY), reservedTokens: 0 });

    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: false } })).status).toBe(200);
    await eventually(async () => (await api('/v1/usage', { key })).body.budget.tokens === REPORTED);
    // The settlement was taken once: delivered again, it changes nothing.
    expect(await limiterStub.settleExecution(chargeId, 999)).toBe(false);
    expect((await api('/v1/usage', { key })).body.budget).toMatchObject({ tokens: REPORTED, reservedTokens: 0, requests: 1 });
  });
});

describe('a call delivered twice', () => {
  it.each([
    ['without an Idempotency-Key', undefined],
    ['with an Idempotency-Key', 'delivered-twice'],
  ])('%s, is not a replay: the work it started counts', async (_label, idempotencyKey) => {
    // The agent ran the first delivery, but its answer was lost (a platform error the edge
    // retries): the retry finds the execution by the id the edge chose. Taken for a replay, the
    // key's budget (and the execution's token reservation) was given back for work that ran.
    const { tenantId, key } = await newTenant();
    const agent = await newAgent(key);
    let deliveries = 0;
    const lossy = {
      idFromName: (name: string) => env.AGENTS.idFromName(name),
      get: (id: DurableObjectId) => {
        const real = env.AGENTS.get(id);
        return {
          execute: async (input: Parameters<typeof real.execute>[0]) => {
            const result = await real.execute(input);
            if (deliveries++ === 0) throw Object.assign(new Error('the answer was lost'), { retryable: true });
            return result;
          },
        };
      },
    };
    const body = { intent: 'x', input: null, mode: 'sync' as const };
    const started = await startExecution({ ...env, AGENTS: lossy } as unknown as Env, tenantId, agent, body, idempotencyKey);
    expect(deliveries).toBe(2);
    expect(started.execution.status).toBe('succeeded');
    expect(started.replayed).toBe(false);
    // A client's own repeat of the key is still a replay.
    if (idempotencyKey) expect((await startExecution(env as unknown as Env, tenantId, agent, body, idempotencyKey)).replayed).toBe(true);
  });
});

describe('keys without limits', () => {
  it('run executions as before, and their agents store nothing for budgets', async () => {
    const { tenantId, key } = await newTenant();
    const agent = await newAgent(key, { upstream: chatUpstream() });
    const res = await execute(key, agent);
    expect(res.status).toBe(200);
    expect(res.headers.get('ratelimit-limit')).toBeNull();
    const async = await execute(key, agent, ASYNC_BODY);
    expect(async.status).toBe(202);
    await eventually(async () => (await api(`/v1/agents/${agent}/executions/${async.body.id}`, { key })).body.status === 'succeeded');
    expect(await chargeTable(tenantId, agent)).toBeNull();
  });
});

describe("a key's limiter of an older release (a gradual deployment)", () => {
  it('answering a raise with a boolean, as releases before the limiter decided raises did, runs the execution', async () => {
    // Such a limiter raised without checking the budget and answered whether it had raised. An
    // agent of this release read `ok` off that boolean and refused the execution 429.
    const { tenantId, key, otherKey } = await limitedKey({ budget: { tokens: 100_000, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream(), instructions: 'Be helpful. '.repeat(350) });
    let raises = 0;
    await runInDurableObject(agentStub(tenantId, agent), (instance) => {
      const charges = (instance as unknown as { charges: { env: Env } }).charges;
      const real = charges.env.KEY_LIMITS;
      const olderLimiter = (id: DurableObjectId) => {
        const stub = real.get(id);
        return {
          raiseCharge: async (chargeId: string, total: number) => {
            raises++;
            return (await stub.raiseCharge(chargeId, total)).ok;
          },
          settleExecution: (chargeId: string, tokens: number) => stub.settleExecution(chargeId, tokens),
        };
      };
      charges.env = { ...charges.env, KEY_LIMITS: { idFromName: (name: string) => real.idFromName(name), get: olderLimiter } as unknown as Env['KEY_LIMITS'] };
    });
    const res = await execute(key, agent);
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('succeeded');
    expect(raises).toBe(1);
  });
});

describe("a key's limiter of a release before settlements (a gradual deployment)", () => {
  it('is not sent the settlement again and again: that release charged the reservation when the lease was released', async () => {
    const { tenantId, key, otherKey } = await limitedKey({ budget: { tokens: 100_000, period: 'day' } });
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    let sent = 0;
    await runInDurableObject(agentStub(tenantId, agent), (instance) => {
      const charges = (instance as unknown as { charges: { env: Env } }).charges;
      const real = charges.env.KEY_LIMITS;
      const olderLimiter = () => ({
        settleExecution: () => {
          sent++;
          return Promise.reject(new TypeError('The RPC receiver does not implement the method "settleExecution".'));
        },
      });
      charges.env = { ...charges.env, KEY_LIMITS: { idFromName: (name: string) => real.idFromName(name), get: olderLimiter } as unknown as Env['KEY_LIMITS'] };
    });
    expect((await execute(key, agent)).status).toBe(200);
    await eventually(async () => sent > 0);
    await eventually(async () => (await chargeTable(tenantId, agent))?.length === 0);
    expect(sent).toBe(1);
  });
});
