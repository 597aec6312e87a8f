// edge-agent-gateway dashboard: plain ES module, no framework, no build step.
// The API key lives in sessionStorage and is only ever sent to this origin's /v1 API as
// `Authorization: Bearer`. Every piece of data is rendered with textContent, never as HTML.

const KEY_STORAGE = 'eag.dashboard.apiKey';
const AGENTS_EVERY_MS = 3000;
const POOLS_EVERY_MS = 5000;
const MAX_EXECUTIONS = 100;
// Status requests per refresh: the dashboard shares its key's limits with the key's real
// traffic, so it asks about a few agents a round (the least recently seen first) and keeps
// the last answer of the others, instead of one request per agent every 3 s.
const STATUSES_PER_ROUND = 10;
const RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };

const $ = (id) => document.getElementById(id);

let apiKey = sessionStorage.getItem(KEY_STORAGE) ?? '';
let selected = null; // { id, abort: AbortController, executions: Map, events: Map }
let timers = [];
// What one pasted key shows: stop() ends it, so an answer still on its way for an earlier key
// (another tenant's agents or pools) is dropped instead of being drawn under the next key.
// statuses: each agent's last status and when it came; statusesPausedUntil: a 429's Retry-After.
let session = null; // { abort, agentsBusy, poolsBusy, statuses: Map, statusesPausedUntil: number }

// --- the API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, retryAfterS = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { authorization: `Bearer ${apiKey}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  // A path, never a URL: requests go to this origin only.
  const res = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  const payload = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const error = payload?.error ?? {};
    if (res.status === 401) onUnauthorized();
    const retryAfter = res.headers.get('retry-after');
    throw new ApiError(res.status, error.code ?? 'http_error', error.message ?? `HTTP ${res.status}`, retryAfter && /^\d+$/.test(retryAfter) ? Number(retryAfter) : null);
  }
  return payload;
}

const agentPath = (id) => `/v1/agents/${encodeURIComponent(id)}`;

// --- small DOM helpers --------------------------------------------------------------------

function say(text, isError = false) {
  const message = $('message');
  message.textContent = text;
  message.classList.toggle('error', isError);
}

function cell(row, index) {
  while (row.cells.length <= index) row.insertCell();
  return row.cells[index];
}

function setText(element, text) {
  const value = text === null || text === undefined ? '' : String(text);
  if (element.textContent !== value) element.textContent = value;
}

/** Keeps `tbody` rows in `keys` order, reusing rows by key so focus and selection survive. */
function syncRows(tbody, keys, fill) {
  const existing = new Map([...tbody.rows].map((row) => [row.dataset.key, row]));
  keys.forEach((key, index) => {
    let row = existing.get(key);
    if (!row) {
      row = document.createElement('tr');
      row.dataset.key = key;
    }
    existing.delete(key);
    fill(row, key);
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] ?? null);
  });
  for (const row of existing.values()) row.remove();
}

const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '');
const ms = (value) => (value === null || value === undefined ? '–' : `${Math.round(value)} ms`);

function summary(execution) {
  if (execution.error) return `${execution.error.code}: ${execution.error.message}`;
  if (execution.output === undefined) return '';
  const output = execution.output;
  const text = typeof output === 'string' ? output : typeof output?.reply === 'string' ? output.reply : JSON.stringify(output);
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}

// --- key ------------------------------------------------------------------------------------

function onUnauthorized() {
  say('The API key was refused (401). Paste a valid key.', true);
  stop();
}

async function start() {
  stop();
  const current = { abort: new AbortController(), agentsBusy: false, poolsBusy: false, statuses: new Map(), statusesPausedUntil: 0 };
  session = current;
  try {
    await refreshAgents(current);
  } catch (error) {
    if (session === current && !(error instanceof ApiError && error.status === 401)) say(`Could not load agents: ${error.message}`, true);
    return;
  }
  if (session !== current) return;
  $('main').hidden = false;
  say('Connected.');
  refreshPools(current).catch(() => undefined);
  timers = [
    setInterval(() => { if (!document.hidden) refreshAgents(current).catch(() => undefined); }, AGENTS_EVERY_MS),
    setInterval(() => { if (!document.hidden) refreshPools(current).catch(() => undefined); }, POOLS_EVERY_MS),
  ];
}

function stop() {
  for (const timer of timers) clearInterval(timer);
  timers = [];
  session?.abort.abort();
  session = null;
  select(null);
  // The tables belong to the key that filled them: a key pasted next starts from empty ones.
  $('agents-body').replaceChildren();
  $('pools-body').replaceChildren();
  $('main').hidden = true;
}

// --- agents ----------------------------------------------------------------------------------

async function refreshAgents(current = session) {
  if (!current || current.agentsBusy) return;
  current.agentsBusy = true;
  try {
    const { signal } = current.abort;
    const { data, nextCursor } = await api('/v1/agents?limit=100', { signal });
    await refreshStatuses(current, data.map((agent) => agent.id));
    if (session !== current) return;
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
  const seenAt = (id) => (id === selected?.id ? -1 : current.statuses.get(id)?.at ?? 0);
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

function showStatus(status) {
  setText($('agent-state'), status?.state ?? '–');
  setText($('agent-running'), status?.running ?? '–');
  setText($('agent-queued'), status?.queued ?? '–');
}

// --- one agent: executions and its live event stream ------------------------------------

function select(id) {
  selected?.abort.abort();
  selected = null;
  for (const button of document.querySelectorAll('#agents-body button[aria-pressed]')) {
    const mine = button.closest('tr').dataset.agentId === id;
    button.setAttribute('aria-pressed', String(mine));
    button.closest('tr').classList.toggle('selected', mine);
  }
  $('agent-panel').hidden = id === null;
  if (id === null) return;
  selected = { id, abort: new AbortController(), executions: new Map(), events: new Map() };
  setText($('agent-name'), id);
  showStatus(null);
  $('executions-body').replaceChildren();
  renderExecutions();
  const current = selected;
  follow(current).catch(() => undefined);
  loadExecutions(current).catch((error) => say(`Could not load executions: ${error.message}`, true));
  api(`${agentPath(id)}/status`, { signal: current.abort.signal }).then((s) => { if (selected === current) showStatus(s); }).catch(() => undefined);
}

/** Keeps the furthest-along record of an execution, whichever arrived first. */
function merge(target, execution) {
  const known = target.executions.get(execution.id);
  if (known && RANK[known.status] > RANK[execution.status]) return;
  target.executions.set(execution.id, execution);
}

async function loadExecutions(target) {
  const { data } = await api(`${agentPath(target.id)}/executions?limit=50`, { signal: target.abort.signal });
  if (selected !== target) return;
  for (const execution of data) merge(target, execution);
  renderExecutions();
}

function renderExecutions() {
  if (!selected) return;
  const target = selected;
  const ordered = [...target.executions.values()]
    .sort((a, b) => (a.createdAt === b.createdAt ? (a.id < b.id ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1))
    .slice(0, MAX_EXECUTIONS);
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

/** One SSE frame ("event:", "data:", "id:", "retry:" lines) into its fields. */
function parseFrame(frame) {
  const event = { type: 'message', data: [], id: null, retry: null };
  for (const line of frame.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event.type = value;
    else if (field === 'data') event.data.push(value);
    else if (field === 'id') event.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) event.retry = Number(value);
  }
  return event;
}

/** Wakes a waiting reconnect at once (the browser came back online). */
let wakeStream = () => undefined;
/** Drops the current stream connection (the browser went offline, or the stream went quiet). */
let dropStream = () => undefined;
window.addEventListener('offline', () => dropStream());
window.addEventListener('online', () => wakeStream());

/** The server sends a heartbeat every 15 s: a stream silent for longer is dead. */
const SILENT_STREAM_MS = 40_000;

/**
 * Follows the agent's event stream with fetch (EventSource cannot send an Authorization
 * header), resuming with Last-Event-ID after a drop so no event is missed.
 */
async function follow(target) {
  const { signal } = target.abort;
  let lastEventId = null;
  let retryMs = 2000;
  let failures = 0;
  while (!signal.aborted) {
    const connection = new AbortController();
    const abortConnection = () => connection.abort();
    signal.addEventListener('abort', abortConnection);
    dropStream = abortConnection;
    let watchdog;
    const quiet = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(abortConnection, SILENT_STREAM_MS);
    };
    try {
      const headers = { authorization: `Bearer ${apiKey}`, accept: 'text/event-stream' };
      if (lastEventId !== null) headers['last-event-id'] = lastEventId;
      quiet();
      const res = await fetch(`${agentPath(target.id)}/events`, { headers, signal: connection.signal, cache: 'no-store' });
      if (res.status === 401) return onUnauthorized();
      // Deleting an agent ends its stream; the reconnect's 404 says it is gone for good.
      if (res.status === 404) {
        if (selected === target) select(null);
        return say(`Agent ${target.id} no longer exists.`);
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setText($('stream-state'), 'live');
      $('stream-state').dataset.live = 'true';
      // Nothing seen yet means the stream starts from now: reload what happened meanwhile.
      if (lastEventId === null && failures > 0) loadExecutions(target).catch(() => undefined);
      failures = 0;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        quiet();
        buffer = (buffer + value).replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = parseFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (frame.retry !== null) retryMs = frame.retry;
          if (frame.id !== null) lastEventId = frame.id;
          if (frame.data.length === 0) continue;
          let data = null;
          try { data = JSON.parse(frame.data.join('\n')); } catch { /* not JSON: ignore */ }
          onEvent(target, frame.type, data);
        }
      }
    } catch {
      /* dropped: reconnect below */
    } finally {
      clearTimeout(watchdog);
      signal.removeEventListener('abort', abortConnection);
      connection.abort();
    }
    if (signal.aborted) return;
    failures += 1;
    $('stream-state').dataset.live = 'false';
    setText($('stream-state'), navigator.onLine ? 'reconnecting…' : 'offline, reconnecting…');
    const delay = Math.min(retryMs * 2 ** Math.min(failures - 1, 3), 15_000);
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, delay);
      wakeStream = () => { clearTimeout(timer); resolve(); };
    });
    wakeStream = () => undefined;
  }
}

// --- pools ------------------------------------------------------------------------------------

async function refreshPools(current = session) {
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
    if (session !== current) return;
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
  } finally {
    current.poolsBusy = false;
  }
}

// --- forms ----------------------------------------------------------------------------------

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  apiKey = $('key-input').value.trim();
  $('key-input').value = '';
  sessionStorage.setItem(KEY_STORAGE, apiKey);
  start();
});

$('key-forget').addEventListener('click', () => {
  sessionStorage.removeItem(KEY_STORAGE);
  apiKey = '';
  stop();
  say('Key forgotten.');
});

$('agent-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const id = $('agent-id-input').value.trim();
  try {
    const agent = await api('/v1/agents', { method: 'POST', body: id ? { id } : {} });
    $('agent-id-input').value = '';
    say(`Created agent ${agent.id}.`);
    await refreshAgents();
    select(agent.id);
  } catch (error) {
    say(`Could not create the agent: ${error.message}`, true);
  }
});

$('run-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!selected) return;
  const target = selected;
  let input;
  const raw = $('input-input').value.trim();
  try {
    input = raw === '' ? undefined : JSON.parse(raw);
  } catch {
    say('Input must be JSON.', true);
    return;
  }
  try {
    const execution = await api(`${agentPath(target.id)}/executions`, {
      method: 'POST',
      body: { intent: $('intent-input').value.trim(), ...(input !== undefined && { input }), mode: 'async' },
    });
    say(`Queued ${execution.id}.`);
    if (selected === target) {
      merge(target, execution);
      renderExecutions();
    }
  } catch (error) {
    say(`Could not run: ${error.message}`, true);
  }
});

if (apiKey) start();
else say('Paste an API key to begin.');
