// What the page holds between events, shared by the modules that read or change it.

const KEY_STORAGE = 'eag.dashboard.apiKey';

export const state = {
  apiKey: sessionStorage.getItem(KEY_STORAGE) ?? '',
  /** The agent whose panel is open: { id, abort: AbortController, executions: Map, events: Map }. */
  selected: null,
  /**
   * What one pasted key shows: stop() ends it, so an answer still on its way for an earlier key
   * (another tenant's agents or pools) is dropped instead of being drawn under the next key.
   * page: the page of agents shown (agents.js); statuses, pools: each agent's last status and
   * each pool's last details (rounds.js); unreachable: the last refresh found no gateway (and
   * the page says so).
   * { abort, agentsBusy, poolsBusy, page, statuses: Rounds, pools: Rounds, unreachable: boolean }
   */
  session: null,
  /**
   * The newest `x-d1-bookmark` the API handed back, sent on every request after it: with D1
   * read replicas, a list read right after a write (an agent just created) then sees that write.
   */
  bookmark: null,
};

export function rememberKey(key) {
  state.apiKey = key;
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  state.apiKey = '';
}
