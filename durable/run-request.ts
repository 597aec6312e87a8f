import type { UpstreamRequest } from '../worker/upstream/types';
import type { AgentStore } from './agent-store';

/**
 * What a run sends its upstream, with the agent's context read when the upstream reads it: an
 * attempt reads it as it starts, the builtin responder as its patch is merged. A copy taken when the run
 * started was stale by the time the answer's `contextPatch` was merged whenever other runs of
 * the agent finished meanwhile, so patches computed from it (the builtin's `turns`) undid theirs.
 */
export function runRequest(store: AgentStore, fields: Omit<UpstreamRequest, 'context'>): UpstreamRequest {
  return {
    ...fields,
    get context() {
      return store.context().data;
    },
  };
}
