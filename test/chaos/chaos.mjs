#!/usr/bin/env node
// `npm run test:chaos`: the gateway under faults, checked by its invariants (docs/RELIABILITY.md).
//
// The built Worker runs on Miniflare (real Durable Objects, D1, KV; see scripts/lib/runtime.mjs)
// with its storage persisted to disk, and:
//   - three upstreams (real HTTP servers, test/support/mock-upstream.mjs) in one pool, each
//     failing about 20% of requests (503s and dropped connections) and adding latency spikes
//     past the target's timeout;
//   - a webhook receiver that verifies every Standard Webhooks signature and is down (503 or
//     a closed socket) for part of every few seconds;
//   - the whole runtime killed and restarted at random moments (every Durable Object loses
//     its memory and in-flight work; storage survives), as a process crash would, and single
//     agents' objects reset with ctx.abort() (the ENABLE_CHAOS-gated AgentDO.chaosRestart);
//   - async executions sent with an Idempotency-Key each, some keys sent twice at once and
//     again after a restart, some executions cancelled; a client that retries on connection
//     errors and 5xx with the same key, as clients are told to.
// Once everything has drained it checks: every accepted execution is terminal (none lost),
// one execution per key (no duplicates), no completed upstream run repeated, D1 equal to every
// agent's own view, every terminal execution's webhook received at least once and exactly
// once per webhook-id. Prints the counts; exits 1 if any invariant fails.
//
// Options: --short (CI: 1,000 executions across 40 agents), --executions N, --agents N,
// --restarts N, --json FILE (the counts as JSON).
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { isDeepStrictEqual } from 'node:util';
import { cliArgs } from '../../scripts/lib/cli.mjs';
import { Webhook } from 'standardwebhooks';
import { applyMigrations, bundle, freePort, sleep, startGateway } from '../../scripts/lib/runtime.mjs';
import { startMockUpstream } from '../support/mock-upstream.mjs';

const USAGE = `usage: npm run test:chaos [-- OPTIONS]   (10,000 executions across 200 agents; see docs/RELIABILITY.md)
  --short               CI's run: 1,000 executions across 40 agents
  --executions N
  --agents N
  --restarts N
  --json FILE           write the results as JSON
  --help                this text`;
const { values } = cliArgs('test:chaos', USAGE, {
  options: {
    short: { type: 'boolean', default: false },
    executions: { type: 'string' },
    agents: { type: 'string' },
    restarts: { type: 'string' },
    json: { type: 'string' },
  },
});
const short = values.short;
const EXECUTIONS = Number(values.executions ?? (short ? 1_000 : 10_000));
const AGENTS = Number(values.agents ?? (short ? 40 : 200));
const RESTARTS = Number(values.restarts ?? (short ? 2 : 4));
const CLIENT_CONCURRENCY = 48;
/** Shares of keys: sent twice at once; sent again after the run; cancelled after acceptance. */
const DUPLICATE_SHARE = 0.05;
const RESEND_SHARE = 0.05;
const CANCEL_SHARE = 0.03;
/**
 * Upstream faults per target: 12% 503s, 8% dropped connections, 10% latency spikes of up to
 * 6 s against a 3 s attempt timeout (half of them time out). The timeout is generous because a
 * shared 2-core machine starves processes for seconds; faults should be the injected ones.
 */
const FAULTS = 'errorRate=0.12,resetRate=0.08,spikeRate=0.1,spikeMs=6000';
const TARGET_TIMEOUT_MS = 3_000;
/** The receiver is down for DOWN_MS of every CYCLE_MS. */
const RECEIVER_CYCLE_MS = 4_000;
const RECEIVER_DOWN_MS = 1_200;
const WEBHOOK_RETRY_SCHEDULE_MS = '500,1000,2000,3000,5000,5000,5000,5000,5000,5000';
const DRAIN_TIMEOUT_MS = short ? 90_000 : 240_000;
const ADMIN_TOKEN = 'chaos-admin-token-0123456789';

const startedAt = Date.now();
// The mock upstreams and the receiver share this process with the client: on a starved host a
// request can be read (and timestamped) seconds after it was sent. The lag is measured, and
// timing checks allow for it.
const loopDelay = monitorEventLoopDelay({ resolution: 20 });
const log = (...args) => console.error(`[chaos ${((Date.now() - startedAt) / 1000).toFixed(1)}s]`, ...args);
const pick = (share) => Math.random() < share;

// --- the world around the gateway ----------------------------------------------------------------

const work = mkdtempSync(path.join(tmpdir(), 'chaos-'));
// Miniflare's own temporary storage goes here too, so the exit removes all of it.
process.env.TMPDIR = work;
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
log(`building the Worker; ${EXECUTIONS} executions across ${AGENTS} agents, ${RESTARTS} restarts`);
const scriptPath = await bundle(null, path.join(work, 'build'));
const persist = path.join(work, 'state');

const upstreams = await Promise.all([1, 2, 3].map(() => startMockUpstream({ keepBodies: false })));
const receiver = await startReceiver();

const port = await freePort();
const bindings = {
  ADMIN_TOKEN,
  UPSTREAM_ENCRYPTION_KEY: Buffer.alloc(32, 5).toString('base64'),
  ALLOW_PRIVATE_UPSTREAMS: 'true',
  LOG_LEVEL: 'error',
  WEBHOOK_RETRY_SCHEDULE_MS,
  ENABLE_CHAOS: 'true',
};
let gateway = await startGateway({ scriptPath, bindings, port, persist });
await applyMigrations(gateway.mf);
const base = gateway.base;
/** When each restart began (the runtime went down) and ended. */
const restarts = [];

async function restart() {
  const began = Date.now();
  await gateway.mf.dispose();
  await sleep(200 + Math.random() * 800);
  gateway = await startGateway({ scriptPath, bindings, port, persist });
  restarts.push({ began, ended: Date.now() });
  log(`restart ${restarts.length}: down for ${Date.now() - began} ms`);
}

// --- a client that retries like the API tells clients to -----------------------------------------

const json = { 'content-type': 'application/json' };
let auth = {};

/** One call, retried on connection errors and 5xx (the same request, the same key). */
async function call(method, pathname, body, headers = {}, { tries = 200 } = {}) {
  for (let attempt = 1; ; attempt++) {
    try {
      // A client gives up on a silent server and retries (safe: every write here is keyed or final).
      const res = await fetch(`${base}${pathname}`, { method, headers: { ...json, ...auth, ...headers }, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
      const text = await res.text();
      if (res.status >= 500 && attempt < tries) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
      return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
    } catch (error) {
      if (attempt >= tries) throw error;
      await sleep(Math.min(2_000, 50 * attempt) + Math.random() * 100);
    }
  }
}

async function must(method, pathname, body, expected) {
  const res = await call(method, pathname, body);
  if (res.status !== expected) throw new Error(`${method} ${pathname}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

// --- set-up ---------------------------------------------------------------------------------------

auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const tenant = await must('POST', '/v1/admin/tenants', { name: 'chaos' }, 201);
const { key } = await must('POST', `/v1/admin/tenants/${tenant.id}/keys`, {}, 201);
auth = { authorization: `Bearer ${key}` };
await must('PUT', '/v1/pools/chaos', {
  strategy: 'least-inflight',
  retry: { attempts: 3 },
  targets: upstreams.map((u, i) => ({ id: `u${i + 1}`, kind: 'agent-http', url: `${u.url}/t/u${i + 1}/${FAULTS}/agent`, timeoutMs: TARGET_TIMEOUT_MS })),
}, 201);
const agentIds = Array.from({ length: AGENTS }, (_, i) => `chaos-${i}`);
const secret = `whsec_${randomBytes(32).toString('base64')}`;
for (let i = 0; i < agentIds.length; i += 20) {
  await Promise.all(agentIds.slice(i, i + 20).map(async (id) => {
    await must('POST', '/v1/agents', { id, concurrency: 4, upstream: { kind: 'pool', pool: 'chaos' } }, 201);
    await must('POST', `/v1/agents/${id}/webhooks`, { url: `${receiver.url}/hooks/${id}`, secret }, 201);
  }));
}
log(`${AGENTS} agents with a webhook each; pool of 3 upstreams (${FAULTS})`);

// --- the run --------------------------------------------------------------------------------------

/** Per idempotency key: its agent, the execution ids answered for it, and what was done to it. */
const keys = Array.from({ length: EXECUTIONS }, (_, i) => ({
  key: `chaos-${i}-${randomBytes(4).toString('hex')}`,
  agent: agentIds[i % AGENTS],
  body: { intent: 'chaos.run', input: { n: i }, mode: 'async', timeoutMs: 120_000 },
  ids: new Set(),
  duplicate: pick(DUPLICATE_SHARE),
  resend: pick(RESEND_SHARE),
  cancel: pick(CANCEL_SHARE),
  rejected: null,
}));
const counts = { posts: 0, replayed: 0, cancelRequests: 0, keysSent: 0 };

async function submit(k) {
  counts.posts++;
  const res = await call('POST', `/v1/agents/${k.agent}/executions`, k.body, { 'idempotency-key': k.key });
  if (res.status !== 202) {
    k.rejected = `${res.status} ${JSON.stringify(res.body)}`;
    return;
  }
  if (res.headers.get('idempotent-replayed') === 'true') counts.replayed++;
  k.ids.add(res.body.id);
}

async function runOne(k) {
  counts.keysSent++;
  await Promise.all(k.duplicate ? [submit(k), submit(k)] : [submit(k)]);
  if (k.cancel && k.ids.size > 0) {
    counts.cancelRequests++;
    const [id] = k.ids;
    const res = await call('POST', `/v1/agents/${k.agent}/executions/${id}/cancel`);
    if (res.status !== 200 && !(res.status === 409 && res.body?.error?.code === 'already_finished')) k.rejected = `cancel: ${res.status} ${JSON.stringify(res.body)}`;
  }
}

async function inParallel(items, limit, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

loopDelay.enable(); // from here on: the build (spawnSync) blocked the loop on purpose
let loadDone = false;
const load = inParallel(keys, CLIENT_CONCURRENCY, runOne).then(() => { loadDone = true; });
// Single objects reset at random (ctx.abort through the ENABLE_CHAOS hook) while the load runs.
const objectRestarts = { done: 0, refused: 0, log: [] };
const objectChaos = (async () => {
  while (!loadDone) {
    await sleep(200 + Math.random() * 800);
    const agent = agentIds[Math.floor(Math.random() * agentIds.length)];
    try {
      const namespace = await (gateway.agents ??= gateway.mf.getDurableObjectNamespace('AGENTS'));
      const stub = namespace.get(namespace.idFromName(`${tenant.id}/${agent}`));
      const result = await stub.chaosRestart();
      if (result?.ok === false) objectRestarts.refused++;
    } catch (error) {
      // The abort surfaces to the caller as an error: that is the restart happening.
      objectRestarts.done++;
      objectRestarts.log.push({ agent, at: Date.now() });
      objectRestarts.lastError = String(error).slice(0, 200);
    }
  }
})();
// Runtime restarts at random points of the load (when a random share of the keys, between 10%
// and 90%, has been sent), so they land mid-work however fast this machine is.
const chaos = (async () => {
  const marks = Array.from({ length: RESTARTS }, () => 0.1 + Math.random() * 0.8).sort((a, b) => a - b);
  for (const mark of marks) {
    while (!loadDone && counts.keysSent < mark * EXECUTIONS) await sleep(100);
    await restart();
  }
})();
const progress = setInterval(() => log(`${counts.keysSent}/${EXECUTIONS} keys sent`), 15_000);
await load;
clearInterval(progress);
log(`load sent: ${counts.posts} POSTs`);
await chaos;
await objectChaos;
log(`object resets: ${objectRestarts.done} (refused ${objectRestarts.refused}; the caller saw: ${objectRestarts.lastError})`);

// --- drain ----------------------------------------------------------------------------------------

/** The agent's own view of every accepted execution (GET …/executions/:id reads the object). */
const views = new Map();
const accepted = keys.filter((k) => k.ids.size > 0);
const executionRefs = accepted.flatMap((k) => [...k.ids].map((id) => ({ id, agent: k.agent })));
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

async function refresh(refs) {
  await inParallel(refs, 32, async (ref) => {
    const res = await call('GET', `/v1/agents/${ref.agent}/executions/${ref.id}`);
    views.set(ref.id, res.status === 200 && !res.body.stale ? res.body : null);
  });
}

const drainDeadline = Date.now() + DRAIN_TIMEOUT_MS;
let pending = executionRefs;
for (;;) {
  await refresh(pending);
  pending = pending.filter((ref) => !TERMINAL.has(views.get(ref.id)?.status));
  if (pending.length === 0 || Date.now() > drainDeadline) break;
  log(`${pending.length} executions not terminal yet`);
  await sleep(2_000);
}
log(`drained: ${executionRefs.length - pending.length}/${executionRefs.length} terminal`);

// Keys sent again after restarts: each must replay the execution it made, not make another.
const resent = keys.filter((k) => k.resend && k.ids.size > 0);
await inParallel(resent, 16, submit);

// Webhooks: wait (bounded) until every terminal execution's event arrived.
const expectedEvents = () => executionRefs.filter((ref) => TERMINAL.has(views.get(ref.id)?.status));
const webhookDeadline = Date.now() + (short ? 60_000 : 120_000);
while (Date.now() < webhookDeadline && expectedEvents().some((ref) => !receiver.byExecution.has(ref.id))) await sleep(1_000);

// D1 converges on the agents' own state: wait (bounded) for equality, then report what differs.
let mismatches = await compareD1();
const d1Deadline = Date.now() + 60_000;
while (mismatches.length > 0 && Date.now() < d1Deadline) {
  await sleep(2_000);
  mismatches = await compareD1();
}

async function compareD1() {
  const db = await gateway.mf.getD1Database('DB');
  const { results } = await db.prepare('SELECT agent_id, id, status, record FROM executions WHERE tenant_id = ?').bind(tenant.id).all();
  const problems = [];
  const inD1 = new Map(results.map((r) => [r.id, r]));
  for (const ref of executionRefs) {
    const row = inD1.get(ref.id);
    const view = views.get(ref.id);
    if (!row) problems.push({ id: ref.id, problem: 'missing from D1' });
    else if (!view) problems.push({ id: ref.id, problem: 'missing from the agent' });
    else if (row.agent_id !== ref.agent || row.status !== view.status || !isDeepStrictEqual(JSON.parse(row.record), view)) {
      problems.push({ id: ref.id, problem: `D1 ${row.status}, agent ${view.status}` });
    }
  }
  const known = new Set(executionRefs.map((r) => r.id));
  for (const row of results) if (!known.has(row.id)) problems.push({ id: row.id, problem: 'in D1 but never accepted (an extra execution)' });
  // The agents' snapshots (GET /v1/agents reads them) against the agents themselves.
  const { results: agents } = await db.prepare('SELECT id, snapshot FROM agents WHERE tenant_id = ?').bind(tenant.id).all();
  await inParallel(agents, 16, async (row) => {
    const res = await call('GET', `/v1/agents/${row.id}`);
    const snapshot = row.snapshot ? JSON.parse(row.snapshot) : null;
    if (res.status !== 200 || !isDeepStrictEqual(snapshot?.agent, res.body)) problems.push({ id: row.id, problem: 'agent snapshot differs' });
  });
  return problems;
}

// --- invariants ---------------------------------------------------------------------------------

loopDelay.disable();
const status = (s) => executionRefs.filter((ref) => views.get(ref.id)?.status === s).length;
const lost = executionRefs.filter((ref) => !TERMINAL.has(views.get(ref.id)?.status));
const duplicateKeys = keys.filter((k) => k.ids.size > 1);
const rejected = keys.filter((k) => k.rejected);
const neverAccepted = keys.filter((k) => k.ids.size === 0);

// Upstream runs. Every call carries `Idempotency-Key: <execution id>`, and the mock numbers
// its calls (a succeeded execution's output names the call it came from). Allowed: a failed
// attempt retried, and a call whose answer the gateway never recorded (it timed out first, or
// the runtime crashed) repeated under the same key. Not allowed: any call after the one whose
// result was recorded, or after the execution became terminal — that is a run beyond its key.
const upstreamRequests = new Map();
const injected = { errors: 0, resets: 0, spikes: 0, calls: 0 };
for (const [server, u] of upstreams.entries()) {
  for (const [id, entries] of u.requests) {
    const list = upstreamRequests.get(id) ?? [];
    list.push(...entries.map((e) => ({ ...e, server })));
    upstreamRequests.set(id, list);
    for (const e of entries) {
      injected.calls++;
      if (e.outcome === 503) injected.errors++;
      if (e.outcome === 'reset') injected.resets++;
      if (e.spiked) injected.spikes++;
    }
  }
}
const doubleRuns = [];
const maxLagMs = Math.round(loopDelay.max / 1e6);
const slackMs = 1_000 + maxLagMs;
/** Calls answered 200 in full whose result the gateway did not record, repeated under their key. */
let unrecordedRepeats = 0;
/** Executions with upstream calls on both sides of a restart: work a crash interrupted. */
let interruptedByRestart = 0;
for (const ref of executionRefs) {
  const entries = (upstreamRequests.get(ref.id) ?? []).sort((a, b) => a.at - b.at);
  const view = views.get(ref.id);
  if (!view) continue;
  // Slack: workerd's clock moves only on I/O, and this process timestamps requests late by up
  // to its worst event-loop delay.
  let cutoff = view.finishedAt ? Date.parse(view.finishedAt) + slackMs : Infinity;
  if (view.status === 'succeeded') {
    const recorded = entries.find((e) => e.call === view.output?.call);
    if (!recorded) doubleRuns.push({ id: ref.id, problem: 'succeeded with an output no call produced' });
    else cutoff = recorded.at + slackMs;
  }
  for (const e of entries) {
    if (e.at <= cutoff) continue;
    const t = (ms) => ms - startedAt;
    doubleRuns.push({
      id: ref.id, problem: `called after its result was recorded (${view.status})`,
      calls: entries.map((x) => [t(x.at), x.outcome, x.aborted]), cutoff: t(cutoff), error: view.error?.message, attempts: view.attempts,
      resets: objectRestarts.log.filter((r) => r.agent === ref.agent).map((r) => t(r.at)), restarts: restarts.map((r) => t(r.began)),
    });
  }
  if (restarts.some((r) => entries.some((e) => e.at < r.began) && entries.some((e) => e.at > r.ended))) interruptedByRestart++;
  unrecordedRepeats += entries.filter((e, i) => e.outcome === 200 && !e.aborted && i < entries.length - 1 && e.at < cutoff).length;
}

// Webhooks: one event per terminal execution (one webhook per agent, every event type).
const expected = expectedEvents();
const missingEvents = expected.filter((ref) => !receiver.byExecution.has(ref.id));
const wrongEvents = expected.filter((ref) => {
  const got = receiver.byExecution.get(ref.id);
  return got && (got.ids.size !== 1 || got.type !== `execution.${views.get(ref.id).status}`);
});
const acceptedIds = new Set(executionRefs.map((ref) => ref.id));
const unexpectedEvents = [...receiver.byExecution.keys()].filter((id) => !acceptedIds.has(id));

/** Why executions failed, by error code and the first words of the message. */
const failureReasons = {};
for (const ref of executionRefs) {
  const error = views.get(ref.id)?.status === 'failed' ? views.get(ref.id).error : null;
  if (error) {
    const reason = `${error.code}: ${error.message.replace(/[0-9]+/g, 'N').slice(0, 60)}`;
    failureReasons[reason] = (failureReasons[reason] ?? 0) + 1;
  }
}
log('failures by reason', failureReasons);

const summary = {
  mode: short ? 'short' : 'full',
  keys: EXECUTIONS,
  agents: AGENTS,
  posts: counts.posts,
  replayed: counts.replayed,
  accepted: executionRefs.length,
  notAccepted: neverAccepted.length,
  rejected: rejected.length,
  succeeded: status('succeeded'),
  failed: status('failed'),
  cancelled: status('cancelled'),
  cancelRequests: counts.cancelRequests,
  lost: lost.length,
  duplicates: duplicateKeys.length,
  doubleRuns: doubleRuns.length,
  unrecordedRepeats,
  d1Mismatches: mismatches.length,
  webhookExpected: expected.length,
  webhookReceived: receiver.received,
  webhookUnique: receiver.uniqueIds.size,
  webhookMissing: missingEvents.length,
  webhookWrong: wrongEvents.length + unexpectedEvents.length,
  badSignatures: receiver.badSignatures,
  receiverRefused: receiver.refused,
  restarts: restarts.length,
  objectRestarts: objectRestarts.done,
  interruptedByRestart,
  upstreamCalls: injected.calls,
  upstreamErrorsInjected: injected.errors,
  upstreamResetsInjected: injected.resets,
  upstreamSpikesInjected: injected.spikes,
  maxEventLoopLagMs: maxLagMs,
  seconds: Math.round((Date.now() - startedAt) / 1000),
};
const failures = [
  [summary.accepted === 0, 'nothing was accepted'],
  [neverAccepted.length > 0, `${neverAccepted.length} keys never accepted`, neverAccepted.slice(0, 3).map((k) => k.rejected)],
  [rejected.length > 0, `${rejected.length} requests refused`, rejected.slice(0, 3).map((k) => k.rejected)],
  [lost.length > 0, `${lost.length} executions lost (not terminal)`, lost.slice(0, 3).map((ref) => ({ ...ref, status: views.get(ref.id)?.status ?? 'missing' }))],
  [duplicateKeys.length > 0, `${duplicateKeys.length} keys made more than one execution`],
  [doubleRuns.length > 0, `${doubleRuns.length} upstream runs beyond what the key allows`, doubleRuns.slice(0, 3)],
  [mismatches.length > 0, `${mismatches.length} D1 mismatches`, mismatches.slice(0, 5)],
  [missingEvents.length > 0, `${missingEvents.length} webhook events never received`, missingEvents.slice(0, 3)],
  [wrongEvents.length + unexpectedEvents.length > 0, 'webhook events with several webhook-ids, the wrong type, or for no execution'],
  [receiver.badSignatures > 0, `${receiver.badSignatures} webhooks with a bad signature`],
  [summary.webhookUnique !== expected.length, `unique webhook-ids ${summary.webhookUnique} ≠ expected ${expected.length}`],
  [restarts.length !== RESTARTS, 'fewer restarts than planned'],
  [objectRestarts.done === 0, 'no object was reset (is the ENABLE_CHAOS hook working?)'],
].filter(([failed]) => failed);

console.log('\n| chaos | count |\n| --- | ---: |');
for (const [name, value] of Object.entries(summary)) console.log(`| ${name} | ${value} |`);
if (values.json) writeFileSync(values.json, JSON.stringify({ at: new Date().toISOString(), ...summary, failures: failures.map((f) => f[1]) }, null, 2));
for (const [, message, sample] of failures) console.log(`FAIL ${message}${sample ? ` ${JSON.stringify(sample)}` : ''}`);
console.log(failures.length ? `\nchaos: ${failures.length} invariant(s) failed` : '\nchaos: every invariant held');

await gateway.mf.dispose();
await Promise.all([...upstreams.map((u) => u.close()), receiver.close()]);
process.exit(failures.length ? 1 : 0);

// --- the webhook receiver -----------------------------------------------------------------------

/**
 * A Standard Webhooks receiver: verifies each signature with the `standardwebhooks` package,
 * records every `webhook-id`, and is down (503 or a dropped connection, alternately) for
 * RECEIVER_DOWN_MS of every RECEIVER_CYCLE_MS.
 */
async function startReceiver() {
  const state = { received: 0, refused: 0, badSignatures: 0, uniqueIds: new Set(), byExecution: new Map() };
  const verifier = () => new Webhook(secret);
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('error', () => {}); // a sender that goes away mid-request (a restart) is no failure here
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const phase = (Date.now() - startedAt) % RECEIVER_CYCLE_MS;
      if (phase < RECEIVER_DOWN_MS) {
        state.refused++;
        if (Math.floor((Date.now() - startedAt) / RECEIVER_CYCLE_MS) % 2) return req.socket.destroy();
        res.writeHead(503).end();
        return;
      }
      const payload = Buffer.concat(chunks).toString('utf8');
      let event;
      try {
        event = verifier().verify(payload, req.headers);
      } catch {
        state.badSignatures++;
        res.writeHead(401).end();
        return;
      }
      const id = req.headers['webhook-id'];
      state.received++;
      state.uniqueIds.add(id);
      const executionId = event?.data?.id;
      const seen = state.byExecution.get(executionId) ?? { ids: new Set(), type: event.type };
      seen.ids.add(id);
      state.byExecution.set(executionId, seen);
      res.writeHead(204).end();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  return Object.assign(state, {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  });
}
