import type { Env } from '../worker/env';
import { answerWithin } from '../worker/lib/answer-within';

/** How long the limiter waits for an agent's answer. */
const ASK_TIMEOUT_MS = 10_000;

const agentObject = (env: Env, agent: string) => env.AGENTS.get(env.AGENTS.idFromString(agent));

/** Whether agent object `agent` holds execution reservation `chargeId`. */
export function askAgent(env: Env, agent: string, chargeId: string): Promise<boolean> {
  return answerWithin(agentObject(env, agent).holdsCharge(chargeId), ASK_TIMEOUT_MS, 'the agent');
}

/** How many streams of `keyId` (event and A2A) agent object `agent` holds open (durable/key-stream-leases.ts). */
export function askStreams(env: Env, agent: string, keyId: string): Promise<number> {
  return answerWithin(agentObject(env, agent).eventStreamsOf(keyId), ASK_TIMEOUT_MS, 'the agent');
}
