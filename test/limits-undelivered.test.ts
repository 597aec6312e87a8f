import { env, runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import type { TokenCharge } from '../durable/agent-rpc';
import { startExecution } from '../worker/agents/operations';
import type { Env } from '../worker/env';
import { admit, limiter } from '../worker/limits/limiter';
import { estimateExecutionTokens } from '../worker/limits/usage';
import { api, eventually, newAgent } from './support/api';
import { limitedKey } from './support/limits';

/**
 * A key's token reservation for an execution is settled by the agent that ran it. When the
 * edge's call to the agent failed without an answer (503 agent_unavailable), the limiter asks
 * that agent later whether it holds the reservation: one the agent never received is given
 * back (not charged in full at expiry); one it did receive is left for it to settle.
 */

const LIMITS = { budget: { tokens: 10_000, period: 'day' as const } };
const BODY = { intent: 'support.reply', input: { message: 'Where is my order?' }, mode: 'async' as const };
/** The mock's openai-chat answer reports 10 prompt and 5 completion tokens. */
const REPORTED = 15;
const chatUpstream = () => ({ kind: 'openai-chat', baseUrl: `${env.MOCK_UPSTREAM_URL}/t/undelivered/ok/v1`, model: 'mock-1' });

/** What the limits middleware does before an execution: a lease holding the body's reservation. */
async function admitted(keyId: string): Promise<TokenCharge> {
  const admission = await admit(env as unknown as Env, keyId, LIMITS, true, estimateExecutionTokens(JSON.stringify(BODY)), false, true);
  if (!admission.ok || !admission.lease) throw new Error('not admitted');
  return { limiter: admission.lease.name, id: admission.lease.id, reserved: admission.reservedTokens };
}

/** An AGENTS namespace whose execute calls fail as an unreachable object's do; `deliver` lets each reach the agent first. */
function failingAgents(deliver: boolean) {
  return {
    idFromName: (name: string) => env.AGENTS.idFromName(name),
    get: (id: DurableObjectId) => {
      const real = env.AGENTS.get(id);
      return {
        execute: async (input: Parameters<typeof real.execute>[0]) => {
          if (deliver) await real.execute(input);
          throw Object.assign(new Error('Network connection lost.'), { retryable: true });
        },
      };
    },
  };
}

/** Runs the limiter's alarm as if the time to ask had come. */
async function askNow(name: string): Promise<void> {
  const stub = env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(name));
  await runInDurableObject(stub, (_instance, state) => {
    state.storage.sql.exec('UPDATE charges SET ask_at = 0 WHERE ask_at IS NOT NULL');
  });
  expect(await runDurableObjectAlarm(stub)).toBe(true);
}

const budget = async (key: string) => (await api('/v1/usage', { key })).body.budget;

/**
 * A limited key's reservation for an execution whose start never reached the agent (every call
 * to it failed), released by the edge as after such a failure: the limiter holds it, unsettled.
 */
async function undeliveredReservation() {
  const { tenantId, key, keyId, otherKey } = await limitedKey(LIMITS);
  const agent = await newAgent(otherKey, { upstream: chatUpstream() });
  const charge = await admitted(keyId);
  const unreachable = { ...env, AGENTS: failingAgents(false) } as unknown as Env;
  await expect(startExecution(unreachable, tenantId, agent, BODY, undefined, false, charge)).rejects.toMatchObject({ code: 'agent_unavailable' });
  await limiter(env as unknown as Env, charge.limiter).release(charge.id, 0, false);
  return { key, charge };
}

describe('a token reservation whose execution may not have reached its agent', () => {
  it('is given back once the agent says it never received it, and a late settlement still counts', async () => {
    const { key, charge } = await undeliveredReservation();
    expect(await budget(key)).toMatchObject({ reservedTokens: charge.reserved, tokens: 0 });

    await askNow(charge.limiter);
    expect(await budget(key)).toMatchObject({ reservedTokens: 0, tokens: 0, requests: 1 });

    // Had the call reached the agent after all, its settlement is taken, once.
    const stub = env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(charge.limiter));
    expect(await stub.settleExecution(charge.id, 40)).toBe(true);
    expect(await stub.settleExecution(charge.id, 40)).toBe(false);
    expect(await budget(key)).toMatchObject({ reservedTokens: 0, tokens: 40 });
  });

  it('is left for the agent to settle when it did receive it', async () => {
    const { tenantId, key, keyId, otherKey } = await limitedKey(LIMITS);
    const agent = await newAgent(otherKey, { upstream: chatUpstream() });
    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: true } })).status).toBe(200);
    const charge = await admitted(keyId);
    const answerLost = { ...env, AGENTS: failingAgents(true) } as unknown as Env;
    await expect(startExecution(answerLost, tenantId, agent, BODY, undefined, false, charge)).rejects.toMatchObject({ code: 'agent_unavailable' });
    await limiter(env as unknown as Env, charge.limiter).release(charge.id, 0, false);

    await askNow(charge.limiter);
    expect(await budget(key)).toMatchObject({ reservedTokens: charge.reserved, tokens: 0 });

    // The queued execution runs once the agent is resumed, and settles what it used.
    expect((await api(`/v1/agents/${agent}`, { method: 'PATCH', key: otherKey, body: { paused: false } })).status).toBe(200);
    await eventually(async () => (await budget(key)).tokens === REPORTED);
    expect(await budget(key)).toMatchObject({ reservedTokens: 0, tokens: REPORTED });
  });
});

describe('a token reservation whose agent runs an older release (a gradual deployment)', () => {
  it('without holdsCharge, the agent is not asked again: the reservation stays held, as that release\'s were until settled or expired', async () => {
    const { key, charge } = await undeliveredReservation();
    const stub = env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(charge.limiter));
    await runInDurableObject(stub, (instance) => {
      const olderAgents = {
        idFromString: (id: string) => env.AGENTS.idFromString(id),
        get: () => ({ holdsCharge: () => Promise.reject(new TypeError('The RPC receiver does not implement the method "holdsCharge".')) }),
      };
      const limiterObject = instance as unknown as { env: Env };
      limiterObject.env = { ...limiterObject.env, AGENTS: olderAgents } as unknown as Env;
    });

    await askNow(charge.limiter);
    const asks = await runInDurableObject(stub, (_instance, state) => [...state.storage.sql.exec('SELECT ask_at FROM charges WHERE id = ?', charge.id)]);
    expect(asks).toEqual([{ ask_at: null }]);
    expect(await budget(key)).toMatchObject({ reservedTokens: charge.reserved, tokens: 0 });
  });
});
