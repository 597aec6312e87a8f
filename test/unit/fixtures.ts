import type { UpstreamRequest } from '../../worker/upstream/types';

/** An upstream request as an agent would send it, for unit tests of upstreams. */
export function upstreamRequest(overrides: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return { executionId: 'exe_test', agentId: 'agt_test', intent: 'chat', input: { message: 'hello' }, instructions: null, context: {}, history: [], ...overrides };
}
