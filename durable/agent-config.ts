import { fail, ok, type Result } from '../worker/errors';
import type { Agent, UpdateAgentBody } from '../worker/schemas/agent';
import { keepMaskedCredential } from '../worker/upstream/resolve';
import { maskedCredential, patchedConfig } from './agent-rows';
import type { AgentStore } from './agent-store';

/**
 * An agent with its configuration's version: its row's `rev`, which every PATCH bumps (the
 * ETag of GET and PATCH /v1/agents/:id, as the context's version is the ETag of its own).
 */
export interface VersionedAgent {
  agent: Agent;
  version: number;
}

/**
 * What AgentDO `update` answers: PATCH as the edge called it before configuration versions, the
 * agent alone. An edge of the previous release may call the object of the new one for a moment
 * during a deploy; given `{agent, version}` it would have answered that as the agent.
 */
export const unversioned = (result: Result<VersionedAgent>): Result<Agent> => (result.ok ? ok(result.value.agent) : result);

/**
 * Applies a PATCH to the agent's configuration (AgentDO `reconfigure`). `ifVersion` (If-Match's versions; empty: only
 * weak tags, which never match; undefined: unconditional) is checked here, in the agent's single writer,
 * with no await before the write: two clients that read one version cannot both apply theirs.
 * `write` runs the row update inside the caller's transaction.
 */
export function updateConfig(store: AgentStore, patch: UpdateAgentBody, ifVersion: readonly number[] | undefined, write: (update: () => void) => void): Result<void> {
  const row = store.agentRow();
  if (!row) return fail('not_found', 'agent not found');
  if (ifVersion && !ifVersion.includes(row.rev)) {
    return fail('version_mismatch', `the agent's configuration is at version ${row.rev}, not ${ifVersion.join(' or ') || 'a weak tag (If-Match compares strongly: W/"…" never matches)'}`, { version: row.rev });
  }
  const current = store.config(row);
  const upstream = patch.upstream && keepMaskedCredential(patch.upstream, current.upstream);
  if (upstream === null) return maskedCredential(patch.upstream);
  const next = patchedConfig(current, upstream ? { ...patch, upstream } : patch);
  write(() => store.updateAgent(next, patch.paused ?? row.paused === 1, Date.now()));
  return ok(undefined);
}
