// The agents panel: the tenant's agents with their state and running/queued counts, a page of
// 100 at a time (the list's largest page), with buttons to the next and previous pages.
import { reveal, select, showStatus } from './agent-panel.js';
import { agentPath, api } from './api.js';
import { $, cell, setText, syncRows } from './dom.js';
import { Rounds } from './rounds.js';
import { state } from './state.js';

const PAGE = 100;

/** Each agent's last status, ten a round (the selected one first) instead of all every 3 s. */
export const agentStatuses = () => new Rounds(10);

/** Which page of agents a session shows: its cursor (null: the first), those of the pages before it, and the next one's. */
export const firstPage = () => ({ cursor: null, earlier: [], next: null });

const listPath = (cursor) => `/v1/agents?limit=${PAGE}${cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;

/** Resolves true once the table shows a fresh answer, undefined when the refresh did not run. */
export async function refreshAgents(current = state.session) {
  if (!current || current.agentsBusy) return;
  current.agentsBusy = true;
  try {
    const { signal } = current.abort;
    const { page } = current;
    let data;
    let nextCursor;
    // A page turned while its list or statuses were on their way is read again: the answer
    // drawn is always the page the buttons say.
    for (let cursor = page.cursor; ; cursor = page.cursor) {
      ({ data, nextCursor } = await api(listPath(cursor), { signal }));
      // A later page emptied meanwhile (its agents deleted): back to the first.
      if (data.length === 0 && cursor !== null && cursor === page.cursor) Object.assign(page, firstPage());
      if (cursor !== page.cursor) continue;
      await current.statuses.refresh(data.map((agent) => agent.id), (id) => api(`${agentPath(id)}/status`, { signal: current.abort.signal }), state.selected?.id);
      if (cursor === page.cursor) break;
    }
    if (state.session !== current) return;
    page.next = nextCursor;
    const { selected } = state;
    const byId = new Map(data.map((agent) => [agent.id, { agent, status: current.statuses.last(agent.id) ?? null }]));
    syncRows($('agents-body'), data.map((a) => a.id), (row, id) => {
      const { agent, status } = byId.get(id);
      row.dataset.testid = 'agent-row';
      row.dataset.agentId = id;
      const first = cell(row, 0);
      let button = first.querySelector('button');
      if (!button) {
        button = document.createElement('button');
        button.type = 'button';
        button.className = 'link';
        button.dataset.testid = 'agent-select';
        button.addEventListener('click', () => { select(id); reveal(); });
        first.append(button);
      }
      setText(button, agent.name ? `${id} (${agent.name})` : id);
      button.setAttribute('aria-pressed', String(selected?.id === id));
      row.classList.toggle('selected', selected?.id === id);
      setText(cell(row, 1), status?.state ?? agent.state);
      cell(row, 1).dataset.testid = 'agent-state';
      setText(cell(row, 2), status?.running ?? '–');
      cell(row, 2).dataset.testid = 'agent-running';
      setText(cell(row, 3), status?.queued ?? '–');
      cell(row, 3).dataset.testid = 'agent-queued';
    });
    $('agents-empty').hidden = data.length > 0;
    showPages(page, data.length);
    if (selected && byId.has(selected.id)) showStatus(byId.get(selected.id).status);
    return true;
  } finally {
    current.agentsBusy = false;
  }
}

function showPages(page, shown) {
  const from = page.earlier.length * PAGE;
  $('agents-pages').hidden = page.next === null && page.earlier.length === 0;
  setText($('agents-range'), shown === 0 ? '' : `Agents ${from + 1}–${from + shown}`);
  const previous = $('agents-previous');
  const next = $('agents-next');
  const focused = document.activeElement;
  previous.disabled = page.earlier.length === 0;
  next.disabled = page.next === null;
  // A button disabled under the keyboard's focus hands it to the other one, not to the page.
  if (focused === next && next.disabled && !previous.disabled) previous.focus();
  if (focused === previous && previous.disabled && !next.disabled) next.focus();
}

/** Shows the next (1) or previous (-1) page of agents. */
export function turnPage(step) {
  const current = state.session;
  if (!current) return;
  const { page } = current;
  if (step > 0 && page.next !== null) {
    page.earlier.push(page.cursor);
    page.cursor = page.next;
  } else if (step < 0 && page.earlier.length > 0) {
    page.cursor = page.earlier.pop();
  } else return;
  page.next = null;
  refreshAgents(current).catch(() => undefined);
}
