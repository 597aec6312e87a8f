// One pasted key's session: the first load, the polls, and the end that clears what it showed.
import { select } from './agent-panel.js';
import { refreshAgents } from './agents.js';
import { ApiError } from './api.js';
import { $, say } from './dom.js';
import { refreshPools } from './pools.js';
import { state } from './state.js';

const AGENTS_EVERY_MS = 3000;
const POOLS_EVERY_MS = 5000;

let timers = [];

export async function start() {
  stop();
  const current = { abort: new AbortController(), agentsBusy: false, poolsBusy: false, statuses: new Map(), statusesPausedUntil: 0 };
  state.session = current;
  try {
    await refreshAgents(current);
  } catch (error) {
    if (state.session === current && !(error instanceof ApiError && error.status === 401)) say(`Could not load agents: ${error.message}`, true);
    return;
  }
  if (state.session !== current) return;
  $('main').hidden = false;
  say('Connected.');
  refreshPools(current).catch(() => undefined);
  timers = [
    setInterval(() => { if (!document.hidden) refreshAgents(current).catch(() => undefined); }, AGENTS_EVERY_MS),
    setInterval(() => { if (!document.hidden) refreshPools(current).catch(() => undefined); }, POOLS_EVERY_MS),
  ];
}

export function stop() {
  for (const timer of timers) clearInterval(timer);
  timers = [];
  state.session?.abort.abort();
  state.session = null;
  select(null);
  // The tables belong to the key that filled them: a key pasted next starts from empty ones.
  $('agents-body').replaceChildren();
  $('pools-body').replaceChildren();
  $('main').hidden = true;
}
