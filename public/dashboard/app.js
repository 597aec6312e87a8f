// edge-agent-gateway dashboard: plain ES modules, no framework, no build step. This one wires
// the forms and starts the page; each other module has one job (state.js, api.js, dom.js,
// format.js, stream.js, session.js, agents.js, agent-panel.js, pools.js).
// The API key lives in sessionStorage and is only ever sent to this origin's /v1 API as
// `Authorization: Bearer`. Every piece of data is rendered with textContent, never as HTML.
import { merge, renderExecutions, reveal, select } from './agent-panel.js';
import { refreshAgents, turnPage } from './agents.js';
import { agentPath, api, ApiError, onUnauthorized, UnreachableError } from './api.js';
import { $, say } from './dom.js';
import { start, stop } from './session.js';
import { forgetKey, rememberKey, state } from './state.js';

// The API says why (an operator token is not an API key; a key revoked): the page passes it on.
// A refused key is forgotten, so a reload does not send it again and a shared machine does not
// keep it; a 429, 503 or a network error says nothing about the key and keeps it.
onUnauthorized((reason, key) => {
  // A late answer to a key since replaced (or already forgotten) says nothing of the one in use.
  if (key !== state.apiKey) return;
  forgetKey();
  stop();
  say(`The API key was refused (401)${reason ? `: ${reason}` : ''}. It was forgotten: paste a valid key.`, true);
  $('key-input').focus();
});

/**
 * The key in what was pasted: spaces around it cut off, and a leading `Bearer ` (any case) too,
 * since a key is often copied from an Authorization header, scheme and all: sent as it was, it
 * went out as `Bearer Bearer sk-…` and was refused.
 */
const pastedKey = (value) => value.trim().replace(/^bearer(?:\s+|$)/i, '');

/** A 401 that just ended the session: the page already said why, and a form's error would hide it. */
const endedSession = (error) => error instanceof ApiError && error.status === 401 && !state.apiKey;

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const pasted = $('key-input').value;
  const key = pastedKey(pasted);
  // `required` lets a field of spaces through, which would go out as a bare `Bearer `: refused
  // here, and whatever key is in use stays as it is.
  if (key === '') {
    $('key-input').value = '';
    say(`The API key is empty (${pasted.trim() === '' ? 'only spaces' : 'only "Bearer"'}): paste the key itself.`, true);
    $('key-input').focus();
    return;
  }
  // A header carries nothing beyond ISO-8859-1, and fetch throws before sending one that does:
  // the page took that for a gateway it could not reach, and tried again every 3 s for good.
  // No key has a character outside visible ASCII (the "…" of a masked key, a space).
  const odd = /[^\x21-\x7e]/.exec(key)?.[0];
  if (odd !== undefined) {
    say(`The API key has a character no API key has (${odd === ' ' ? 'a space' : JSON.stringify(odd)}): paste the key itself, not its masked form.`, true);
    $('key-input').focus();
    return;
  }
  rememberKey(key);
  $('key-input').value = '';
  start();
});

$('key-forget').addEventListener('click', () => {
  forgetKey();
  stop();
  say('Key forgotten.');
});

$('agents-next').addEventListener('click', () => turnPage(1));
$('agents-previous').addEventListener('click', () => turnPage(-1));

$('agent-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const id = $('agent-id-input').value.trim();
  const session = state.session;
  let agent;
  try {
    agent = await api('/v1/agents', { method: 'POST', body: id ? { id } : {} });
  } catch (error) {
    // "Failed to fetch" alone did not say that the gateway was out of reach.
    if (state.session === session && !endedSession(error)) say(`Could not create the agent: ${error instanceof UnreachableError ? `the gateway cannot be reached (${error.message}).` : error.message}`, true);
    return;
  }
  // Answered for a key since replaced (or forgotten): another tenant's agent, not this key's.
  if (state.session !== session) return;
  $('agent-id-input').value = '';
  say(`Created agent ${agent.id}.`);
  // The agent exists whatever the list read next answers (a 429, the network gone): that is
  // the polls' to report, not a failed create, which a retry would meet as 409.
  await refreshAgents().catch(() => undefined);
  if (state.session === session && session) {
    select(agent.id);
    reveal();
  }
});

/**
 * The run whose answer never came (the gateway out of reach, or a 5xx): the gateway may have
 * queued it, so the same run sent again carries its Idempotency-Key and is answered with that
 * execution instead of running twice. Any other run, or any answer, starts a new key.
 */
let unanswered = null;

/** A key no other run of this page has (getRandomValues: randomUUID needs a secure context). */
const newRunKey = () => `dashboard-${Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('')}`;

/** Why a run failed: the API's status, code and message, and when to try again if it said. */
function runRefusal(error) {
  if (error instanceof UnreachableError) return `: the gateway cannot be reached (${error.message}).`;
  if (!(error instanceof ApiError)) return `: ${error.message}`;
  const wait = error.retryAfterS === null ? '.' : `: try again in ${error.retryAfterS} s.`;
  return ` (${error.status} ${error.code}: ${error.message})${wait}`;
}

$('run-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const target = state.selected;
  if (!target) return;
  let input;
  const raw = $('input-input').value.trim();
  try {
    input = raw === '' ? undefined : JSON.parse(raw);
  } catch {
    say('Input must be JSON.', true, $('run-message'));
    return;
  }
  const body = { intent: $('intent-input').value.trim(), ...(input !== undefined && { input }), mode: 'async' };
  const run = { agentId: target.id, body: JSON.stringify(body) };
  const same = unanswered !== null && unanswered.agentId === run.agentId && unanswered.body === run.body;
  run.key = same ? unanswered.key : newRunKey();
  unanswered = null;
  const session = state.session;
  try {
    const execution = await api(`${agentPath(target.id)}/executions`, { method: 'POST', body, headers: { 'idempotency-key': run.key } });
    // Answered for a key since replaced (or forgotten): its tenant's run is not this key's news.
    if (state.session !== session) return;
    if (state.selected === target) {
      say(`Queued ${execution.id}.`, false, $('run-message'));
      merge(target, execution);
      renderExecutions();
    } else say(`Queued ${execution.id} on ${target.id}.`);
  } catch (error) {
    // In the panel it was sent from, or the header's once another agent's panel has replaced it.
    if (endedSession(error) || state.session !== session) return;
    const mayHaveRun = error instanceof UnreachableError || (error instanceof ApiError && error.status >= 500);
    if (mayHaveRun) unanswered = run;
    const why = runRefusal(error) + (mayHaveRun ? ' It may have been queued: Run sends it again with the same Idempotency-Key, so it runs once.' : '');
    if (state.selected === target) say(`Could not run${why}`, true, $('run-message'));
    else say(`Could not run on ${target.id}${why}`, true);
  }
});

if (state.apiKey) start();
else say('Paste an API key to begin.');
