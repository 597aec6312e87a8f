// The selected agent's panel: its counts, its executions newest first, kept live from its
// event stream, and the state of that stream.
import { agentPath, api, unauthorized } from './api.js';
import { $, cell, say, setText, syncRows } from './dom.js';
import { ms, summary, time } from './format.js';
import { state } from './state.js';
import { downText, follow } from './stream.js';

const MAX_EXECUTIONS = 100;
/** How far behind the agent D1's list may be (it follows about a second behind), with room. */
const LIST_LAG_MS = 2000;
const RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };

export function showStatus(status) {
  setText($('agent-state'), status?.state ?? '–');
  setText($('agent-running'), status?.running ?? '–');
  setText($('agent-queued'), status?.queued ?? '–');
}

export function select(id) {
  const panel = $('agent-panel');
  // A panel closed under the keyboard's focus (its agent deleted elsewhere) hands the focus to
  // the agents panel; else it falls to the page, and the keyboard starts over from the top.
  const focusWasInside = id === null && panel.contains(document.activeElement);
  state.selected?.abort.abort();
  state.selected = null;
  for (const button of document.querySelectorAll('#agents-body button[aria-pressed]')) {
    const mine = button.closest('tr').dataset.agentId === id;
    button.setAttribute('aria-pressed', String(mine));
    button.closest('tr').classList.toggle('selected', mine);
  }
  panel.hidden = id === null;
  if (id === null) {
    if (focusWasInside) $('agents-title').focus();
    return;
  }
  const current = { id, abort: new AbortController(), executions: new Map(), events: new Map() };
  state.selected = current;
  setText($('agent-name'), id);
  say('', false, $('run-message'));
  showStatus(null);
  $('executions-body').replaceChildren();
  renderExecutions();
  watch(current).catch(() => undefined);
  loadExecutions(current).catch((error) => { if (state.selected === current) say(`Could not load executions: ${error.message}`, true, $('run-message')); });
  api(`${agentPath(id)}/status`, { signal: current.abort.signal }).then((s) => { if (state.selected === current) showStatus(s); }).catch(() => undefined);
}

/**
 * Scrolls the panel's top into view when it is out of it: an agent opened far down a long list
 * has its panel above what is shown (the second column's head) or, on a narrow screen, below
 * the whole list, and the click seemed to do nothing.
 */
export function reveal() {
  const panel = $('agent-panel');
  const { top } = panel.getBoundingClientRect();
  if (top < 0 || top > window.innerHeight - 48) panel.scrollIntoView({ block: 'start' });
}

/** Keeps the furthest-along record of an execution, whichever arrived first. */
export function merge(target, execution) {
  const known = target.executions.get(execution.id);
  if (known && RANK[known.status] > RANK[execution.status]) return;
  target.executions.set(execution.id, execution);
}

/**
 * Reads the newest MAX_EXECUTIONS from D1's list (it used to read 50, so an agent opened after
 * its runs showed half of what the table holds). A page stops at 4 MiB, so large outputs can
 * make one shorter than asked: the next pages are read until the table is full.
 */
async function loadExecutions(target) {
  const data = [];
  let cursor = null;
  do {
    const page = await api(`${agentPath(target.id)}/executions?limit=${MAX_EXECUTIONS - data.length}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`, { signal: target.abort.signal });
    data.push(...page.data);
    cursor = page.nextCursor;
  } while (cursor && data.length < MAX_EXECUTIONS && state.selected === target);
  if (state.selected !== target) return;
  for (const execution of data) merge(target, execution);
  renderExecutions();
}

export function renderExecutions() {
  const target = state.selected;
  if (!target) return;
  const ordered = [...target.executions.values()]
    .sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1));
  // Only what the table shows is kept: a panel left open on a busy agent would otherwise hold
  // every execution its stream ever brought, each with its input and output.
  for (const dropped of ordered.splice(MAX_EXECUTIONS)) {
    target.executions.delete(dropped.id);
    target.events.delete(dropped.id);
  }
  syncRows($('executions-body'), ordered.map((e) => e.id), (row, id) => {
    const execution = target.executions.get(id);
    row.dataset.testid = 'execution-row';
    row.dataset.executionId = id;
    row.dataset.status = execution.status;
    // Statuses this execution went through, as seen on the live stream (in arrival order).
    row.dataset.events = (target.events.get(id) ?? []).join(',');
    setText(cell(row, 0), id);
    setText(cell(row, 1), execution.intent);
    const status = cell(row, 2);
    status.dataset.testid = 'execution-status';
    status.className = `status ${execution.status}`;
    setText(status, execution.status);
    setText(cell(row, 3), time(execution.createdAt));
    setText(cell(row, 4), ms(execution.durationMs));
    setText(cell(row, 5), summary(execution));
  });
  $('executions-empty').hidden = target.executions.size > 0;
}

function onEvent(target, type, data) {
  // Events were missed (trimmed) or the agent's log restarted: reload instead of guessing.
  if (type === 'gap' || type === 'reset') {
    loadExecutions(target).catch(() => undefined);
    return;
  }
  if (!type.startsWith('execution.')) return;
  const execution = data?.data;
  if (!execution?.id) return;
  const seen = target.events.get(execution.id) ?? [];
  seen.push(type.slice('execution.'.length));
  target.events.set(execution.id, seen);
  merge(target, execution);
  renderExecutions();
}

function watch(target) {
  const streamState = $('stream-state');
  let reconnect = false;
  return follow(`${agentPath(target.id)}/events`, target.abort.signal, {
    onLive(fromNow) {
      setText(streamState, 'live');
      streamState.dataset.live = 'true';
      const first = !reconnect;
      reconnect = true;
      if (!fromNow) return;
      // The stream starts from now and the list is D1's, a moment behind the agent: what ended
      // just before now is in neither until D1 has it, so the list is read again once it does
      // (select() has just read it for a first connection).
      if (!first) loadExecutions(target).catch(() => undefined);
      setTimeout(() => { if (state.selected === target) loadExecutions(target).catch(() => undefined); }, LIST_LAG_MS);
    },
    onEvent: (type, data) => onEvent(target, type, data),
    onDown(offline, pause) {
      streamState.dataset.live = 'false';
      setText(streamState, downText(offline, pause));
    },
    onUnauthorized: unauthorized,
    // Deleting an agent ends its stream; the reconnect's 404 says it is gone for good.
    onGone() {
      if (state.selected === target) select(null);
      say(`Agent ${target.id} no longer exists.`);
    },
  });
}
