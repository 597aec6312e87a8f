// The checks bench/rollout.mjs runs in each split beyond the README blocks: what a release's
// users depend on that the blocks do not cover. Each check returns a problem (a string) or
// null, and runs only when the release rolled out from documents its feature (its README).
import { createHmac, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import WebSocket from 'ws';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const sign = (id, ts, body) => `v1,${createHmac('sha256', Buffer.from(SECRET.slice(6), 'base64')).update(`${id}.${ts}.${body}`).digest('base64')}`;

/**
 * A local upstream and webhook receiver for every split: `/ok` answers chat completions with
 * usage, `/down` answers 503 (a pool's failed target), `/hook` records signed deliveries.
 */
export async function startUpstream() {
  const seen = { down: 0, ok: 0, deliveries: [] };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; }).on('end', () => {
      if (req.url?.startsWith('/down')) {
        seen.down++;
        return void res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"message":"down"}}');
      }
      if (req.url?.startsWith('/hook')) {
        const h = req.headers;
        seen.deliveries.push({ valid: h['webhook-signature'] === sign(h['webhook-id'], h['webhook-timestamp'], body), body });
        return void res.writeHead(200).end();
      }
      seen.ok++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'm1', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'pong' } }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() };
}

/** A JSON client of `base` with `key`: `{status, body (parsed when JSON), headers}`; a dropped kept-alive connection is tried once more. */
function client(base, key) {
  return async (method, url, { body, headers = {}, raw } = {}) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await fetch(`${base}${url}`, { method, headers: { ...(key && { authorization: `Bearer ${key}` }), ...(body !== undefined && { 'content-type': 'application/json' }), ...headers }, body: body === undefined ? undefined : raw ? body : JSON.stringify(body) });
        const text = await res.text();
        let parsed = text;
        try { parsed = JSON.parse(text); } catch { /* SSE or empty */ }
        return { status: res.status, body: parsed, text, headers: res.headers };
      } catch (error) {
        if (attempt === 2) return { status: 0, body: null, text: String(error.cause ?? error), headers: new Headers() };
      }
    }
  };
}
const show = (res) => `${res.status} ${res.text.slice(0, 300)}`;

/** Polls an execution until it ends (10 s at most); resolves to its last answer. */
async function settled(call, agent, id) {
  let res;
  for (let i = 0; i < 50; i++) {
    res = await call('GET', `/v1/agents/${agent}/executions/${id}`);
    if (['succeeded', 'failed', 'cancelled'].includes(res.body?.status)) break;
    await sleep(200);
  }
  return res;
}

/** The SSE frames' ids of `url` read for `ms`. */
async function sseIds(base, key, url, headers = {}, ms = 1500) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  let text = '';
  try {
    const res = await fetch(`${base}${url}`, { headers: { authorization: `Bearer ${key}`, ...headers }, signal: controller.signal });
    const decoder = new TextDecoder();
    for await (const chunk of res.body) text += decoder.decode(chunk, { stream: true });
  } catch { /* cut off after `ms`, as meant */ } finally { clearTimeout(timer); }
  return [...text.matchAll(/^id: ?(\d+)$/gm)].map((m) => Number(m[1]));
}

/** The messages' seqs of the events WebSocket at `wsBase` read for `ms`. */
function wsSeqs(wsBase, key, url, ms = 1500) {
  return new Promise((resolve) => {
    const seqs = [];
    const socket = new WebSocket(`${wsBase.replace(/^http/, 'ws')}${url}`, { headers: { authorization: `Bearer ${key}` } });
    socket.on('message', (data) => { const m = JSON.parse(String(data)); if (typeof m.seq === 'number') seqs.push(m.seq); });
    socket.on('error', (error) => resolve({ error: String(error), seqs }));
    setTimeout(() => { socket.terminate(); resolve({ seqs }); }, ms);
  });
}

/**
 * Every check, in order, against `base` (REV's README text in `readme` says which apply);
 * `edges` are the direct URLs of the serving edges (a WebSocket goes to each: the alternating
 * proxy does not carry upgrades); `admin` calls the operator routes of `tenant`.
 */
export async function extraChecks({ base, edges, readme, tenant, adminToken, upstream, run }) {
  const has = (text) => readme.includes(text);
  const admin = client(base, adminToken);
  const created = await admin('POST', `/v1/admin/tenants/${tenant}/keys`, { body: { name: 'limited', limits: { perSecond: 50, perMinute: 600, concurrency: 4, budget: { requests: 1000, tokens: 200000, period: 'month' } } } });
  if (created.status !== 201) return [`limited key: ${show(created)}`];
  const key = created.body.key;
  const call = client(base, key);
  const problems = [];
  const check = async (name, enabled, fn) => {
    if (!enabled) return;
    try {
      const problem = await fn();
      if (problem) problems.push(`${name}: ${problem}`);
    } catch (error) {
      problems.push(`${name}: threw ${error.stack ?? error}`);
    }
  };
  const agent = `roll-${run}`;
  await call('POST', '/v1/agents', { body: { id: agent } });
  const exec = (body, headers) => call('POST', `/v1/agents/${agent}/executions`, { body: { intent: 'support.reply', input: { message: 'hi' }, ...body }, headers });
  let firstExecution;

  await check('limited key: sync and async executions', true, async () => {
    const sync = await exec({});
    if (sync.status !== 200 || sync.body.status !== 'succeeded') return `sync ${show(sync)}`;
    firstExecution = sync.body.id;
    const queued = await exec({ mode: 'async' });
    if (queued.status !== 202) return `async ${show(queued)}`;
    const done = await settled(call, agent, queued.body.id);
    if (done.body?.status !== 'succeeded') return `async ended ${show(done)}`;
    // Long instructions to a chat upstream: the agent finds the run sends more than the edge
    // reserved, and asks the limiter for the rest.
    const upstreamTarget = { kind: 'openai-chat', baseUrl: `${upstream.url}/ok/v1`, model: 'm1' };
    const long = await call('POST', '/v1/agents', { body: { id: `${agent}-long`, instructions: 'Be helpful. '.repeat(350), upstream: upstreamTarget } });
    if (long.status !== 201) return `agent with long instructions ${show(long)}`;
    const raised = await call('POST', `/v1/agents/${agent}-long/executions`, { body: { intent: 'support.reply', input: { message: 'hi' } } });
    await call('DELETE', `/v1/agents/${agent}-long`);
    return raised.status === 200 && raised.body.status === 'succeeded' ? null : `a run larger than its reservation: ${show(raised)}`;
  });
  await check('pool of two targets, one down: every chat fails over', true, async () => {
    const target = (id, path) => ({ id, kind: 'openai-chat', baseUrl: `${upstream.url}/${path}/v1`, model: 'm1' });
    const put = await call('PUT', '/v1/pools/two', { body: { targets: [target('down', 'down'), target('up', 'ok')] } });
    if (put.status !== 201 && put.status !== 200) return `PUT ${show(put)}`;
    const downBefore = upstream.seen.down;
    for (let i = 0; i < 4; i++) {
      const chat = await call('POST', '/v1/chat/completions', { body: { model: 'two', messages: [{ role: 'user', content: `ping ${i}` }] } });
      if (chat.status !== 200 || chat.body?.choices?.[0]?.message?.content !== 'pong') return `chat ${i}: ${show(chat)}`;
    }
    return upstream.seen.down > downBefore ? null : 'the down target was never tried (no failover seen)';
  });
  await check('limited key: usage read back', has('/v1/usage'), async () => {
    await sleep(300);
    const usage = await call('GET', '/v1/usage');
    const b = usage.body?.budget;
    if (usage.status !== 200 || usage.body.limits?.concurrency !== 4) return show(usage);
    // Two executions and four chats at least; 4 tokens a chat from the upstream's usage.
    return b && b.requests >= 6 && b.tokens >= 16 && usage.body.inFlight === 0 ? null : `budget not counted: ${usage.text.slice(0, 300)}`;
  });
  await check('a sharded key past its rate window: 429, never a 500', has('shards'), async () => {
    const sharded = await admin('POST', `/v1/admin/tenants/${tenant}/keys`, { body: { name: 'sharded', limits: { perSecond: 2, shards: 2, budget: { requests: 1000, period: 'month' } } } });
    if (sharded.status !== 201) return `key ${show(sharded)}`;
    const burst = await Promise.all(Array.from({ length: 8 }, () => client(base, sharded.body.key)('POST', `/v1/agents/${agent}/executions`, { body: { intent: 'support.reply', input: { message: 'burst' } } })));
    const statuses = burst.map((r) => r.status);
    const odd = burst.find((r) => r.status !== 200 && !(r.status === 429 && r.body?.error?.code === 'rate_limited'));
    return odd ? `answers ${statuses}: ${show(odd)}` : statuses.includes(429) ? null : `no refusal in ${statuses}`;
  });
  await check('execution cancelled', true, async () => {
    const slow = await exec({ mode: 'async', input: { message: 'slow', simulateLatencyMs: 20000 } });
    if (slow.status !== 202) return `async ${show(slow)}`;
    await sleep(300);
    const cancel = await call('POST', `/v1/agents/${agent}/executions/${slow.body.id}/cancel`);
    if (cancel.status !== 200 || cancel.body.status !== 'cancelled') return `cancel ${show(cancel)}`;
    const read = await call('GET', `/v1/agents/${agent}/executions/${slow.body.id}`);
    return read.body?.status === 'cancelled' ? null : `read after cancel ${show(read)}`;
  });
  await check('SSE events resume after Last-Event-ID', true, async () => {
    const all = await sseIds(base, key, `/v1/agents/${agent}/events?lastEventId=0`);
    if (all.length < 4) return `only ${all.length} events from the start: ${all}`;
    const resumed = await sseIds(base, key, `/v1/agents/${agent}/events`, { 'last-event-id': String(all[1]) });
    const want = all.slice(2);
    return JSON.stringify(resumed.slice(0, want.length)) === JSON.stringify(want) ? null : `resumed after ${all[1]} with ${resumed}, the log has ${all}`;
  });
  await check('WebSocket events route', has('events/ws'), async () => {
    const all = await sseIds(base, key, `/v1/agents/${agent}/events?lastEventId=0`, {}, 800);
    for (const edge of edges) {
      const { error, seqs } = await wsSeqs(edge, key, `/v1/agents/${agent}/events/ws?lastEventId=0`);
      if (error || JSON.stringify(seqs.slice(0, all.length)) !== JSON.stringify(all)) return `${error ?? ''} socket sent ${seqs}, SSE ${all}`;
    }
    return null;
  });
  await check('MCP tools/list and get_execution', has('get_execution'), async () => {
    const mcp = (id, method, params) => call('POST', '/mcp', { body: { jsonrpc: '2.0', id, method, params }, headers: { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' } });
    const list = await mcp(1, 'tools/list', {});
    if (list.status !== 200 || !list.text.includes('"execute_intent"') || !list.text.includes('"get_execution"')) return `tools/list ${show(list)}`;
    const got = await mcp(2, 'tools/call', { name: 'get_execution', arguments: { agentId: agent, executionId: firstExecution } });
    return got.status === 200 && got.text.includes(firstExecution) && got.text.includes('succeeded') && !got.text.includes('"isError":true') ? null : `get_execution ${show(got)}`;
  });
  await check('A2A SendStreamingMessage, GetTask, CancelTask', has('SendStreamingMessage'), async () => {
    const a2a = (id, method, params) => call('POST', `/a2a/${agent}/`, { body: { jsonrpc: '2.0', id, method, params }, headers: { 'a2a-version': '1.0', accept: 'application/json, text/event-stream' } });
    const message = (text) => ({ message: { messageId: `m-${randomBytes(4).toString('hex')}`, role: 'ROLE_USER', parts: [{ text }] } });
    const stream = await a2a(1, 'SendStreamingMessage', message('How do refunds work?'));
    if (stream.status !== 200 || !/TASK_STATE_COMPLETED/.test(stream.text)) return `stream ${show(stream)}`;
    const taskId = /"taskId":"([^"]+)"/.exec(stream.text)?.[1] ?? /"id":"(ex_[^"]+)"/.exec(stream.text)?.[1];
    const task = await a2a(2, 'GetTask', { id: taskId });
    if (task.status !== 200 || task.body?.result?.status?.state !== 'TASK_STATE_COMPLETED') return `GetTask ${taskId}: ${show(task)}`;
    const slow = await exec({ mode: 'async', input: { message: 'slow', simulateLatencyMs: 20000 } });
    await sleep(300);
    const cancel = await a2a(3, 'CancelTask', { id: slow.body.id });
    return cancel.status === 200 && cancel.body?.result?.status?.state === 'TASK_STATE_CANCELED' ? null : `CancelTask ${show(cancel)}`;
  });
  await check('outgoing webhook delivered, signed', true, async () => {
    const hook = await call('POST', `/v1/agents/${agent}/webhooks`, { body: { url: `${upstream.url}/hook`, events: ['execution.succeeded'], secret: SECRET } });
    if (hook.status !== 201) return `register ${show(hook)}`;
    const before = upstream.seen.deliveries.length;
    const sync = await exec({ input: { message: 'for the webhook' } });
    for (let i = 0; i < 40 && !upstream.seen.deliveries.slice(before).some((d) => d.body.includes(sync.body.id)); i++) await sleep(250);
    const delivery = upstream.seen.deliveries.slice(before).find((d) => d.body.includes(sync.body.id));
    if (!delivery) return `no delivery of ${sync.body.id} in 10 s`;
    if (!delivery.valid) return 'delivered with a signature that does not verify';
    await call('DELETE', `/v1/agents/${agent}/webhooks/${hook.body.id}`);
    return null;
  });
  await check('incoming hook: signed delivery starts work, a repeat is a duplicate', has('/v1/hooks/'), async () => {
    const put = await call('PUT', `/v1/hooks/roll-hook-${run}`, { body: { agentId: agent, intent: 'review', scheme: 'standard', secret: SECRET } });
    if (put.status !== 201 && put.status !== 200) return `PUT ${show(put)}`;
    const id = `msg_${randomBytes(6).toString('hex')}`;
    const ts = String(Math.floor(Date.now() / 1000));
    const body = JSON.stringify({ hello: 'rollout' });
    const send = () => client(base)('POST', `/v1/hooks/roll-hook-${run}`, { body, raw: true, headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': ts, 'webhook-signature': sign(id, ts, body) } });
    const first = await send();
    if (first.status !== 202 || first.body.duplicate !== false) return `delivery ${show(first)}`;
    const again = await send();
    if (again.status !== 200 || again.body.duplicate !== true || again.body.executionId !== first.body.executionId) return `repeat ${show(again)}`;
    const done = await settled(call, agent, first.body.executionId);
    await call('DELETE', `/v1/hooks/roll-hook-${run}`);
    return done.body?.status === 'succeeded' ? null : `hooked execution ${show(done)}`;
  });
  await check('agent paused queues, unpaused drains', has('agent_paused'), async () => {
    const pause = await call('PATCH', `/v1/agents/${agent}`, { body: { paused: true } });
    if (pause.status !== 200 || pause.body.state !== 'paused') return `pause ${show(pause)}`;
    const sync = await exec({});
    if (sync.status !== 409 || sync.body.error?.code !== 'agent_paused') return `sync while paused ${show(sync)}`;
    const queued = [await exec({ mode: 'async' }), await exec({ mode: 'async' })].map((r) => r.body.id);
    await sleep(500);
    const waiting = await call('GET', `/v1/agents/${agent}/executions/${queued[0]}`);
    if (waiting.body?.status !== 'queued') return `while paused ${show(waiting)}`;
    const resume = await call('PATCH', `/v1/agents/${agent}`, { body: { paused: false } });
    if (resume.status !== 200 || resume.body.state === 'paused') return `unpause ${show(resume)}`;
    for (const id of queued) {
      const done = await settled(call, agent, id);
      if (done.body?.status !== 'succeeded') return `queued ${id} after unpause: ${show(done)}`;
    }
    return null;
  });
  const wallets = [`${agent}-wa`, `${agent}-wb`];
  let transaction;
  await check('keyed transaction replayed, read back', has('/v1/transactions/'), async () => {
    for (const id of wallets) await call('POST', '/v1/agents', { body: { id } });
    await call('PATCH', `/v1/agents/${wallets[0]}/context`, { body: { balance: 100 }, headers: { 'content-type': 'application/merge-patch+json' } });
    const transfer = { operations: [{ agentId: wallets[0], increment: { balance: -30 }, min: { balance: 0 } }, { agentId: wallets[1], increment: { balance: 30 } }] };
    const first = await call('POST', '/v1/transactions', { body: transfer, headers: { 'idempotency-key': `tx-${run}` } });
    if (first.status !== 200 || first.body.status !== 'committed') return `commit ${show(first)}`;
    transaction = first.body.id;
    const again = await call('POST', '/v1/transactions', { body: transfer, headers: { 'idempotency-key': `tx-${run}` } });
    if (again.body?.id !== first.body.id || again.body.status !== 'committed') return `replay ${show(again)}`;
    const read = await call('GET', `/v1/transactions/${first.body.id}`);
    if (read.status !== 200 || read.body.status !== 'committed') return `GET ${show(read)}`;
    const context = await call('GET', `/v1/agents/${wallets[0]}/context`);
    return context.body?.data?.balance === 70 ? null : `applied twice or not at all: ${show(context)}`;
  });
  await check('operator lock routes', has('/lock"'), async () => {
    const lock = await admin('GET', `/v1/admin/tenants/${tenant}/agents/${wallets[0]}/lock`);
    if (lock.status !== 200 || lock.body.lock !== null) return `lock ${show(lock)}`;
    const resolve = (tx) => admin('POST', `/v1/admin/tenants/${tenant}/agents/${wallets[0]}/transactions/${tx}/resolve`, { body: { outcome: 'abort', reason: 'rollout check' } });
    const decided = await resolve(transaction);
    if (decided.status !== 409 || decided.body.error?.code !== 'already_finished') return `resolve of a committed one ${show(decided)}`;
    const unknown = await resolve('tx_01aaaaaaaaaaaaaaaaaaaaaaaa');
    return unknown.status === 404 ? null : `resolve of an unknown one ${show(unknown)}`;
  });
  // The working tree's lock routes, which REV lacks, during the deployment: served by a new
  // edge and object, or 404 (an old edge) or 503 agent_unavailable (an old object), never a 500.
  await check("this tree's operator lock route on REV's objects", !has('/lock"'), async () => {
    const lock = await admin('GET', `/v1/admin/tenants/${tenant}/agents/${agent}/lock`);
    const fine = (lock.status === 200 && lock.body.lock === null) || lock.status === 404 || (lock.status === 503 && lock.body.error?.code === 'agent_unavailable');
    return fine ? null : show(lock);
  });
  for (const id of [agent, ...wallets]) await call('DELETE', `/v1/agents/${id}`);
  await call('DELETE', '/v1/pools/two');
  return problems;
}
