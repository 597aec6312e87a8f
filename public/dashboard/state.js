// What the page holds between events, shared by the modules that read or change it.

const KEY_STORAGE = 'eag.dashboard.apiKey';

export const state = {
  apiKey: sessionStorage.getItem(KEY_STORAGE) ?? '',
  /** The agent whose panel is open: { id, abort: AbortController, executions: Map, events: Map }. */
  selected: null,
  /**
   * What one pasted key shows: stop() ends it, so an answer still on its way for an earlier key
   * (another tenant's agents or pools) is dropped instead of being drawn under the next key.
   * statuses: each agent's last status and when it came; statusesPausedUntil: a 429's Retry-After;
   * pools, poolsPausedUntil: the same for each pool's last detail (its targets' health);
   * unreachable: the last refresh found no gateway (and the page says so).
   * { abort, agentsBusy, poolsBusy, statuses: Map, statusesPausedUntil: number, pools: Map,
   *   poolsPausedUntil: number, unreachable: boolean }
   */
  session: null,
};

export function rememberKey(key) {
  state.apiKey = key;
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  state.apiKey = '';
}
