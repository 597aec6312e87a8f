// The agents panel: the tenant's agents with their state and running/queued counts.
import { select, showStatus } from './agent-panel.js';
import { agentPath, api } from './api.js';
import { $, cell, setText, syncRows } from './dom.js';
import { Rounds } from './rounds.js';
import { state } from './state.js';

/** Each agent's last status, ten a round (the selected one first) instead of all every 3 s. */
export const agentStatuses = () => new Rounds(10);

/** Resolves true once the table shows a fresh answer, undefined when the refresh did not run. */
export async function refreshAgents(current = state.session) {
  if (!current || current.agentsBusy) return;
  current.agentsBusy = true;
  try {
    const { signal } = current.abort;
    const { data, nextCursor } = await api('/v1/agents?limit=100', { signal });
    await current.statuses.refresh(data.map((agent) => agent.id), (id) => api(`${agentPath(id)}/status`, { signal: current.abort.signal }), state.selected?.id);
    if (state.session !== current) return;
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
