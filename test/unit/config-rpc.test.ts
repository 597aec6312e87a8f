import { describe, expect, it } from 'vitest';
import { readAgent, reconfigureAgent } from '../../worker/agents/config-rpc';
import type { AgentRpc } from '../../worker/agents/registry';
import { ok } from '../../worker/errors';
import type { Agent } from '../../worker/schemas/agent';

const agent = { id: 'a1', name: null, concurrency: 2 } as unknown as Agent;
/** What the runtime throws when an object's release has no such method (seen in bench/rollout.mjs). */
const missing = (method: string) => new TypeError(`The RPC receiver does not implement the method "${method}".`);

/** An agent object of the release before configuration versions: get and update, no read or reconfigure. */
function previousRelease(calls: string[]): AgentRpc {
  return {
    read: () => Promise.reject(missing('read')),
    reconfigure: () => Promise.reject(missing('reconfigure')),
    get: async () => (calls.push('get'), ok(agent)),
    update: async (patch: unknown) => (calls.push(`update ${JSON.stringify(patch)}`), ok(agent)),
  } as unknown as AgentRpc;
}

describe('agent configuration calls across releases (a gradual deployment)', () => {
  it('reads an agent of the previous release through get, with no version (so no ETag)', async () => {
    const calls: string[] = [];
    expect(await readAgent(previousRelease(calls))).toEqual(ok({ agent }));
    expect(calls).toEqual(['get']);
  });

  it('applies an unconditional PATCH to an agent of the previous release through update', async () => {
    const calls: string[] = [];
    expect(await reconfigureAgent(previousRelease(calls), { concurrency: 2 }, undefined)).toEqual(ok({ agent }));
    expect(calls).toEqual(['update {"concurrency":2}']);
  });

  it('leaves a conditional PATCH the previous release cannot check refused as a missing operation, changing nothing', async () => {
    const calls: string[] = [];
    await expect(reconfigureAgent(previousRelease(calls), { concurrency: 2 }, [3])).rejects.toThrow('does not implement the method "reconfigure"');
    expect(calls).toEqual([]);
  });

  it('passes any other failure on, for the platform-error handling around it', async () => {
    const broken = { read: () => Promise.reject(new Error('Network connection lost.')) } as unknown as AgentRpc;
    await expect(readAgent(broken)).rejects.toThrow('Network connection lost.');
  });
});
