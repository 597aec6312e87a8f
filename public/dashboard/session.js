// One pasted key's session: the first load, the polls, and the end that clears what it showed.
import { select } from './agent-panel.js';
import { agentStatuses, firstPage, refreshAgents } from './agents.js';
import { ApiError, UnreachableError } from './api.js';
import { $, say } from './dom.js';
import { poolDetails, refreshPools } from './pools.js';
import { state } from './state.js';

const AGENTS_EVERY_MS = 3000;
const POOLS_EVERY_MS = 5000;

let timers = [];

export async function start() {
  stop();
  const current = { abort: new AbortController(), agentsBusy: false, poolsBusy: false, page: firstPage(), statuses: agentStatuses(), pools: poolDetails(), unreachable: false };
  state.session = current;
  // A gateway that cannot be reached yet (restarting, say), or that turns the list away for a
  // while (a 429, a 5xx), is tried again until it answers: the key is in sessionStorage, not in
  // the emptied key field, so the page has to recover alone.
  for (;;) {
    try {
      await refreshAgents(current);
      break;
    } catch (error) {
      if (state.session !== current) return;
      const seconds = retryIn(error);
      if (seconds === null) {
        if (!(error instanceof ApiError && error.status === 401)) say(`Could not load agents: ${error.message}`, true);
        return;
      }
      say(error instanceof UnreachableError
        ? `The gateway cannot be reached (${error.message}): trying again every ${AGENTS_EVERY_MS / 1000} s.`
        : `Could not load agents (${error.status}: ${error.message}): trying again in ${seconds} s.`, true);
      await new Promise((resolve) => { setTimeout(resolve, seconds * 1000); });
    }
  }
  if (state.session !== current) return;
  $('main').hidden = false;
  say('Connected.');
  poll(refreshPools, current);
  timers = [
    setInterval(() => { if (!document.hidden) poll(refreshAgents, current); }, AGENTS_EVERY_MS),
    setInterval(() => { if (!document.hidden) poll(refreshPools, current); }, POOLS_EVERY_MS),
  ];
}

/** The longest a first load waits on a Retry-After, so a page left open still comes up. */
const MAX_WAIT_S = 60;

/**
 * Seconds until a failed first load is tried again, or null when trying again cannot help (a
 * 401 refused the key, a 4xx the request). A 429 or a 5xx says nothing about the key.
 */
function retryIn(error) {
  if (error instanceof UnreachableError) return AGENTS_EVERY_MS / 1000;
  if (!(error instanceof ApiError) || (error.status !== 429 && error.status < 500)) return null;
  return Math.min(Math.max(error.retryAfterS ?? AGENTS_EVERY_MS / 1000, 1), MAX_WAIT_S);
}

/**
 * Runs one refresh. The tables keep their last answers while the gateway cannot be reached, so
 * the page says so rather than go on saying "Connected." over stale counts, and says it is
 * back once a refresh gets through.
 */
function poll(refresh, current) {
  refresh(current).then((ran) => {
    if (ran && state.session === current && current.unreachable) {
      current.unreachable = false;
      say('Connected.');
    }
  }, (error) => {
    if (!(error instanceof UnreachableError) || state.session !== current) return;
    current.unreachable = true;
    say(`The gateway cannot be reached (${error.message}): the tables show its last answers until it answers again.`, true);
  });
}

export function stop() {
  for (const timer of timers) clearInterval(timer);
  timers = [];
  state.session?.abort.abort();
  state.session = null;
  select(null);
  // The tables belong to the key that filled them: a key pasted next starts from empty ones.
  $('agents-body').replaceChildren();
  $('agents-pages').hidden = true;
  $('pools-body').replaceChildren();
  $('main').hidden = true;
}
