import { ok, type Result } from '../errors';
import { rpcMethodMissing } from '../lib/rpc-missing';
import type { Agent, UpdateAgentBody } from '../schemas/agent';
import type { AgentRpc } from './registry';

/** An agent with its configuration's version; none when an object of an earlier release answered. */
export type AgentRead = Result<{ agent: Agent; version?: number }>;

/** The agent and its configuration's version; from an object of a release before versions, the agent alone. */
export async function readAgent(stub: AgentRpc): Promise<AgentRead> {
  try {
    return await stub.read();
  } catch (error) {
    if (!rpcMethodMissing(error, 'read')) throw error;
  }
  const agent = await stub.get();
  return agent.ok ? ok({ agent: agent.value }) : agent;
}

/**
 * Applies a PATCH, conditional on `ifVersion` when given. An object of a release before
 * configuration versions applies an unconditional one through its `update`, and cannot check
 * a condition: that is refused as every operation such an object lacks is (503 agent_unavailable).
 */
export async function reconfigureAgent(stub: AgentRpc, patch: UpdateAgentBody, ifVersion: readonly number[] | undefined): Promise<AgentRead> {
  try {
    return await stub.reconfigure(patch, ifVersion);
  } catch (error) {
    // A condition that object cannot check: callAgent answers the missing method (503, Retry-After).
    if (!rpcMethodMissing(error, 'reconfigure') || ifVersion !== undefined) throw error;
  }
  const agent = await stub.update(patch);
  return agent.ok ? ok({ agent: agent.value }) : agent;
}
