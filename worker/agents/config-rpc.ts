import { fail, ok, type Result } from '../errors';
import type { Agent, UpdateAgentBody } from '../schemas/agent';
import type { AgentRpc } from './registry';

/** An agent with its configuration's version; none when an object of an earlier release answered. */
export type AgentRead = Result<{ agent: Agent; version?: number }>;

/**
 * Whether `error` is the runtime's refusal of an RPC method the object does not have: during a
 * gradual deployment an agent object may run the release before the one calling it
 * (docs/ARCHITECTURE.md, "Decision: object RPC is an interface between releases").
 */
export function isMissingMethod(error: unknown, method: string): boolean {
  return error instanceof Error && error.message.includes(`does not implement the method "${method}"`);
}

/** The agent and its configuration's version; from an object of a release before versions, the agent alone. */
export async function readAgent(stub: AgentRpc): Promise<AgentRead> {
  try {
    return await stub.read();
  } catch (error) {
    if (!isMissingMethod(error, 'read')) throw error;
  }
  const agent = await stub.get();
  return agent.ok ? ok({ agent: agent.value }) : agent;
}

/**
 * Applies a PATCH, conditional on `ifVersion` when given. An object of a release before
 * configuration versions applies an unconditional one through its `update`, and cannot check
 * a condition: that is refused 503 for a retry, which the deployment's end answers.
 */
export async function reconfigureAgent(stub: AgentRpc, patch: UpdateAgentBody, ifVersion: readonly number[] | undefined): Promise<AgentRead> {
  try {
    return await stub.reconfigure(patch, ifVersion);
  } catch (error) {
    if (!isMissingMethod(error, 'reconfigure')) throw error;
  }
  if (ifVersion !== undefined) return fail('agent_unavailable', 'this agent runs the previous release while a deployment is in progress, which cannot check If-Match: retry in a minute');
  const agent = await stub.update(patch);
  return agent.ok ? ok({ agent: agent.value }) : agent;
}
