// The agents panel: the tenant's agents with their state and running/queued counts.
import { select, showStatus } from './agent-panel.js';
import { agentPath, api, ApiError } from './api.js';
import { $, cell, setText, syncRows } from './dom.js';
import { state } from './state.js';

// Status requests per refresh: the dashboard shares its key's limits with the key's real
// traffic, so it asks about a few agents a round (the least recently seen first) and keeps
// the last answer of the others, instead of one request per agent every 3 s.
const STATUSES_PER_ROUND = 10;

/** Resolves true once the table shows a fresh answer, undefined when the refresh did not run. */
export async function refreshAgents(current = state.session) {
  if (!current || current.agentsBusy) return;
  current.agentsBusy = true;
  try {
    const { signal } = current.abort;
    const { data, nextCursor } = await api('/v1/agents?limit=100', { signal });
    await refreshStatuses(current, data.map((agent) => agent.id));
    if (state.session !== current) return;
    const { selected } = state;
    const byId = new Map(data.map((agent) => [agent.id, { agent, status: current.statuses.get(agent.id)?.status ?? null }]));
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
        button.addEventListener('click', () => select(id));
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
    $('agents-more').hidden = !nextCursor;
    if (selected && byId.has(selected.id)) showStatus(byId.get(selected.id).status);
    return true;
  } finally {
    current.agentsBusy = false;
  }
}

/**
 * Asks for the status of at most STATUSES_PER_ROUND agents, the selected one and then those
 * seen longest ago, unless a 429 asked to wait. An agent keeps its last status until a newer
 * one comes, so a refused request never blanks a row.
 */
async function refreshStatuses(current, ids) {
  const listed = new Set(ids);
  for (const id of current.statuses.keys()) if (!listed.has(id)) current.statuses.delete(id);
  if (Date.now() < current.statusesPausedUntil) return;
  const seenAt = (id) => (id === state.selected?.id ? -1 : current.statuses.get(id)?.at ?? 0);
  const due = [...ids].sort((a, b) => seenAt(a) - seenAt(b)).slice(0, STATUSES_PER_ROUND);
  await Promise.all(due.map(async (id) => {
    try {
      const status = await api(`${agentPath(id)}/status`, { signal: current.abort.signal });
      current.statuses.set(id, { status, at: Date.now() });
    } catch (error) {
      if (error instanceof ApiError && error.status === 429) {
        current.statusesPausedUntil = Math.max(current.statusesPausedUntil, Date.now() + (error.retryAfterS ?? 1) * 1000);
      }
    }
  }));
}
