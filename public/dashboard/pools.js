// The pools panel: each pool's targets with circuit, health, in-flight requests, latency and
// last probe.
import { api } from './api.js';
import { $, cell, setText, syncRows } from './dom.js';
import { ms, time } from './format.js';
import { Rounds } from './rounds.js';
import { state } from './state.js';

/** Each pool's last details (the list has no health), five a round instead of all every 5 s. */
export const poolDetails = () => new Rounds(5);

/** Resolves true once the table shows a fresh answer, undefined when the refresh did not run. */
export async function refreshPools(current = state.session) {
  if (!current || current.poolsBusy) return;
  current.poolsBusy = true;
  try {
    const { signal } = current.abort;
    // The list comes a page at a time (500 by default): every page, so every pool shows.
    const data = [];
    for (let page = await api('/v1/pools', { signal }); ; page = await api(`/v1/pools?cursor=${encodeURIComponent(page.nextCursor)}`, { signal })) {
      data.push(...page.data);
      if (!page.nextCursor) break;
    }
    await current.pools.refresh(data.map((pool) => pool.name), (name) => api(`/v1/pools/${encodeURIComponent(name)}`, { signal: current.abort.signal }));
    if (state.session !== current) return;
    const rows = new Map();
    for (const listed of data) {
      const pool = current.pools.last(listed.name) ?? listed;
      for (const target of listed.targets) {
        // A target's health comes from the pool's last detail; one added since has none yet.
        const health = pool.targets.find((known) => known.id === target.id)?.health;
        rows.set(`${listed.name}\u0000${target.id}`, { pool: listed, target, health });
      }
    }
    syncRows($('pools-body'), [...rows.keys()], (row, key) => {
      const { pool, target, health } = rows.get(key);
      row.dataset.testid = 'pool-target-row';
      setText(cell(row, 0), pool.name);
      setText(cell(row, 1), `${target.id} (${target.kind})`);
      setText(cell(row, 2), health?.circuit ?? '–');
      cell(row, 2).className = `circuit ${health?.circuit ?? ''}`;
      const paused = health?.pausedUntil ? `, paused until ${time(health.pausedUntil)}` : '';
      setText(cell(row, 3), health ? `${health.healthy ? 'yes' : 'no'}${paused}` : '–');
      cell(row, 3).className = health ? (health.healthy ? 'ok' : 'bad') : '';
      setText(cell(row, 4), health?.inflight ?? '–');
      setText(cell(row, 5), ms(health?.latencyMs));
      const probe = health?.probe;
      setText(cell(row, 6), probe ? `${probe.ok ? 'ok' : `failed${probe.error ? `: ${probe.error}` : ''}`} at ${time(probe.checkedAt)} (${ms(probe.latencyMs)})` : 'none yet');
    });
    $('pools-empty').hidden = rows.size > 0;
    return true;
  } finally {
    current.poolsBusy = false;
  }
}
