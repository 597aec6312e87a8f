// The pools panel: each pool's targets with circuit, health, in-flight requests, latency and
// last probe.
import { api } from './api.js';
import { $, cell, setText, syncRows } from './dom.js';
import { ms, time } from './format.js';
import { state } from './state.js';

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
    const pools = await Promise.all(data.map((pool) => api(`/v1/pools/${encodeURIComponent(pool.name)}`, { signal }).catch(() => pool)));
    if (state.session !== current) return;
    const rows = new Map();
    for (const pool of pools) for (const target of pool.targets) rows.set(`${pool.name}\u0000${target.id}`, { pool, target });
    syncRows($('pools-body'), [...rows.keys()], (row, key) => {
      const { pool, target } = rows.get(key);
      const health = target.health;
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
