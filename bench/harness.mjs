#!/usr/bin/env node
// `npm run bench`: measures the gateway on the runtime, not on a dev server.
//
// 1. Builds the Worker as a deploy would (`wrangler deploy --dry-run --outdir`), the bare
//    Hono fetch-and-return Worker of bench/bare (the ceiling for a proxy), and the bare
//    durable-execution Worker of bench/bare-object (one RPC and one committed row per request:
//    the runtime's own cost of a request that must not be lost).
// 2. Measures the hello-world ceiling of three ways to serve a Worker here: plain
//    `workerd serve`, Miniflare through its entry proxy, and Miniflare with
//    `unsafeDirectSockets` (workerd listens for the Worker itself). The gateway runs on the
//    last: the fastest that still gives real Durable Objects, D1 and KV.
// 3. Starts the fault-injecting mock upstream in its own process, then drives every scenario
//    with autocannon at fixed concurrency after a warm-up, in one run: the mock called
//    directly, the bare proxy and the bare object as baselines, then the gateway's scenarios,
//    then the bare proxy again (ratios use the mean of its two measurements).
//
// Options: --quick (2 s per scenario after 1 s of warm-up, no hello-world ceilings unless
// --ceilings; under 2 minutes),
// --json FILE (results as JSON),
// --connections N (default 50), --duration S (default 10, quick 2), --only id,id (a subset of
// scenarios; scale-1000 runs in --quick only when named here), --profile DIR (a CPU profile
// of the gateway's isolate per scenario, through workerd's inspector: DIR/<scenario>.cpuprofile,
// and the top functions by self time),
// --disk (keep the runtime's storage on the temporary directory's disk instead of tmpfs),
// --pairs N (paired rounds per targeted scenario, below; default 4, and 0 with --quick, which
// must stay under 2 minutes).
//
// Paired rounds: the ratio of a scenario to the bare proxy divides two windows minutes apart,
// and this VM's speed drifts by tens of percent within a minute. So the scenarios with a
// target are also measured in N pairs of short rounds right after their main window, back to
// back with what the target compares them to (in alternating order, so a steady drift falls
// on both alike): chat-proxy, chat-proxy-passthrough and sync-exec-100 with the bare proxy,
// scale-1000 with scale-100; sync-exec-100 also with the bare object (`alsoPaired`), which
// says how much of the gap to the bare proxy is the runtime's and how much the gateway's. What
// a scenario is paired with is warmed for 1 s first (its objects were evicted while idle). A
// round's rate counts the time the machine then takes to go quiet: under load the gateway's
// timers wait for its event loop to drain (BENCHMARKS.md, twelfth pass), so the work a round
// defers (its outbox flushes) runs after it and is part of its cost. The median ratio is
// reported as `pairedRatio` (and what it is to, `pairedWith`), next to the usual ratio, whose
// windows do not count that deferred work.
//
// Storage: Miniflare keeps Durable Object, D1 and KV files under the temporary directory. On
// this VM that is ext4, and workerd's SQLite syncs every commit to it: the event loop then
// waits on the virtual disk (the gateway's workerd used 76 % of a core at 204 sync executions
// per second, against 103 % and 479 per second on tmpfs). The bench measures the runtime and
// the gateway, not the VM's fsync latency, so storage goes to /dev/shm when it exists;
// `--disk` measures the other way.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { cliArgs } from '../scripts/lib/cli.mjs';
import { BENCH_ADMIN_TOKEN, applyMigrations, benchBindings, bundle, cleanUpOnExit, freePort, root, sleep, startGateway, waitFor } from '../scripts/lib/runtime.mjs';
import { chartSvg } from './chart.mjs';
import { loadGenerator } from './lib/load.mjs';
import { helloCeilings, serveBareObject, serveBareProxy } from './lib/servers.mjs';
import { startProfile, summarise } from './profile.mjs';

const USAGE = `usage: npm run bench [-- OPTIONS]   (a benchmark: minutes of full load on this machine)
  --quick               a short run
  --json FILE           write the results as JSON
  --only ID,ID          only these scenarios
  --connections N       concurrent connections (default 50)
  --duration S          seconds per scenario (default 10; 2 with --quick)
  --pairs N             paired rounds of the targeted scenarios (default 4; none with --quick)
  --profile DIR         CPU profiles
  --ceilings            measure the bare Workers' ceilings (default: on, off with --quick)
  --disk                keep storage off tmpfs
  --help                this text   (see docs/BENCHMARKS.md)`;
const { values } = cliArgs('bench', USAGE, {
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    connections: { type: 'string', default: '50' },
    duration: { type: 'string' },
    only: { type: 'string' },
    profile: { type: 'string' },
    ceilings: { type: 'boolean' },
    disk: { type: 'boolean', default: false },
    pairs: { type: 'string' },
  },
});
// Before any Miniflare instance exists: it takes its storage directory from os.tmpdir(). The
// run gets a directory of its own, removed on exit: Miniflare leaves its storage behind, and on
// tmpfs that is memory (runs that left theirs filled this machine's RAM and slowed later runs).
const storage = !values.disk && existsSync('/dev/shm') ? '/dev/shm (tmpfs)' : `${tmpdir()} (disk)`;
const runDir = mkdtempSync(path.join(storage.startsWith('/dev/shm') ? '/dev/shm' : tmpdir(), 'eag-bench-'));
process.env.TMPDIR = runDir;
/** Processes this run starts (the mock upstream, plain workerd): stopped on exit, error or not. */
const children = cleanUpOnExit(runDir);
const quick = values.quick;
const connections = Number(values.connections);
// Whole seconds: autocannon ends a run on its one-second tick and averages per-second counts,
// so a fractional window saves no time and biases the average down.
const duration = Number(values.duration ?? (quick ? 2 : 10));
const warmup = quick ? 1 : 3;
const pairs = Number(values.pairs ?? (quick ? 0 : 4));
/** Seconds per round of a pair: whole seconds, as for `duration`. */
const pairSeconds = quick ? 2 : 3;
const build = path.join(root, 'bench/.build');

const log = (...args) => console.error('[bench]', ...args);
/** Wall-clock time per phase of the run, printed at the end. */
const started = Date.now();
const phases = [];
let phaseStart = started;
const phase = (name) => {
  const now = Date.now();
  phases.push({ name, seconds: (now - phaseStart) / 1000 });
  log(`${name}: ${((now - phaseStart) / 1000).toFixed(1)} s`);
  phaseStart = now;
};

const { load, pass, measure, pairedRounds } = loadGenerator({ connections, duration, warmup });

// ---------------------------------------------------------------------------------------------

rmSync(build, { recursive: true, force: true });
mkdirSync(build, { recursive: true });
log('building the gateway and the bare Workers');
const [gatewayScript, bareScript, bareObjectScript] = await Promise.all([
  bundle(null, path.join(build, 'gateway')),
  bundle(path.join(root, 'bench/bare/wrangler.toml'), path.join(build, 'bare')),
  bundle(path.join(root, 'bench/bare-object/wrangler.toml'), path.join(build, 'bare-object')),
]);
const helloScript = path.join(build, 'hello.js');
writeFileSync(helloScript, "export default { fetch() { return new Response('ok'); } };\n");

const mockPort = await freePort();
const mock = spawn(process.execPath, [path.join(root, 'test/support/mock-upstream.mjs'), String(mockPort)], { stdio: 'ignore' });
const mockUrl = `http://127.0.0.1:${mockPort}`;
children.push(mock);
await waitFor(`${mockUrl}/health`);
phase('build and start the mock');

const results = [];
const record = (scenario, r, baseline) => {
  results.push({ scenario, ...r, baseline: baseline?.scenario ?? null, ratio: baseline ? Math.round((r.rps / baseline.rps) * 100) / 100 : null });
  log(`${scenario}: ${r.rps} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms${r.non2xx ? `, ${r.non2xx} non-2xx (${r.codes})` : ''}${r.errors ? `, ${r.errors} errors (${r.failures})` : ''}`);
};
// --- hello-world ceilings (which server to run on; a --quick run skips them) ----------------------
const ceilings = (values.ceilings ?? !quick) ? await helloCeilings(helloScript, measure, children) : [];
if (ceilings.length) {
  for (const c of ceilings) log(`hello world, ${c.server}: ${c.rps} req/s`);
  phase('hello-world ceilings');
}

// --- baselines ----------------------------------------------------------------------------------
/** A request hook that sends each request to the next of `ids`, round robin. */
const rotate = (ids, make) => {
  let i = 0;
  return (req) => ({ ...req, ...make(ids[i++ % ids.length]) });
};
const chatBody = (model) => JSON.stringify({ model, messages: [{ role: 'user', content: 'How do refunds work?' }] });
const json = { 'content-type': 'application/json' };
const mockDirect = await measure(mockUrl, [{ method: 'POST', path: '/v1/chat/completions', headers: json, body: chatBody('mock-model') }]);
record('mock-direct', mockDirect, null);
const mockBaseline = results.at(-1);

const { mf: bare, url: bareUrl } = await serveBareProxy(bareScript, mockUrl);
const bareRequests = [{ method: 'POST', path: '/v1/chat/completions', headers: json, body: chatBody('mock-model') }];
record('bare-proxy', await measure(bareUrl, bareRequests), mockBaseline);
// The bare proxy is measured again after the gateway (it stays up, idle, meanwhile): this VM's
// speed drifts by tens of percent within a minute, and the mean of both ends is a fairer
// denominator for scenarios measured in between than either end alone.
const bareBaseline = results.at(-1);

// What a sync execution costs the runtime itself: the same request shape over the same 100
// agent names, each a SQLite-backed object that records the request in one row before answering.
const { mf: bareObject, url: bareObjectUrl } = await serveBareObject(bareObjectScript);
const bareObjectRequests = [{ method: 'POST', headers: json, body: JSON.stringify({ intent: 'support.reply', input: { message: 'How do refunds work?' } }), setupRequest: rotate(Array.from({ length: 100 }, (_, i) => `a100-${i}`), (id) => ({ path: `/v1/agents/${id}/executions` })) }];
record('bare-object', await measure(bareObjectUrl, bareObjectRequests), bareBaseline);
phase('baselines');

// --- the gateway --------------------------------------------------------------------------------
const profilePort = values.profile ? await freePort() : undefined;
const { mf: gateway, base } = await startGateway({
  scriptPath: gatewayScript,
  bindings: benchBindings(),
  persist: process.env.BENCH_PERSIST,
  inspectorPort: profilePort,
});
await applyMigrations(gateway);

/** Set-up calls; a dropped keep-alive connection is retried. */
async function call(pathname, init = {}) {
  for (let attempt = 1; ; attempt++) {
    let res;
    try {
      res = await fetch(`${base}${pathname}`, init);
    } catch (error) {
      if (attempt < 5) { await sleep(50 * attempt); continue; }
      throw error;
    }
    // An object the runtime could not open (with 10,000 agents on one process, the file-handle
    // limit: see BENCHMARKS.md) is answered 503 with Retry-After; set-up waits and goes on.
    if (res.status === 503 && attempt < 8) {
      await res.body?.cancel();
      await sleep(1000 * Number(res.headers.get('retry-after') ?? 1));
      continue;
    }
    if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${pathname}: ${res.status} ${await res.text()}`);
    return res.json();
  }
}
const tenant = await call('/v1/admin/tenants', { method: 'POST', headers: { ...json, authorization: `Bearer ${BENCH_ADMIN_TOKEN}` }, body: '{}' });
const { key } = await call(`/v1/admin/tenants/${tenant.id}/keys`, { method: 'POST', headers: { ...json, authorization: `Bearer ${BENCH_ADMIN_TOKEN}` }, body: '{}' });
const auth = { ...json, authorization: `Bearer ${key}` };

/**
 * Creates agents through the API (`POST /v1/agents/batch`: the D1 registry rows of a batch in
 * one write, then each object's own initialisation), `parallel` batches of 100 in flight. An
 * agent refused for a passing reason (503: an object the runtime could not open) is asked for
 * again; 409 means an earlier attempt landed.
 */
async function createAgents(prefix, count, extra = {}, parallel = 4) {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  const batches = [];
  for (let i = 0; i < ids.length; i += 100) batches.push(ids.slice(i, i + 100));
  let next = 0;
  let refused = 0;
  const worker = async () => {
    while (next < batches.length) {
      let todo = batches[next++];
      for (let attempt = 1; todo.length > 0; attempt++) {
        const { results } = await call('/v1/agents/batch', { method: 'POST', headers: auth, body: JSON.stringify({ agents: todo.map((id) => ({ id, concurrency: 32, ...extra })) }) });
        const failed = results.filter((r) => r.status !== 201 && r.status !== 409);
        if (failed.length > 0 && (attempt >= 8 || failed.some((r) => r.status !== 503))) throw new Error(`creating agents: ${JSON.stringify(failed[0])}`);
        if (failed.length > 0) await sleep(1000);
        refused += failed.length;
        todo = failed.map((r) => r.id);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, batches.length) }, worker));
  if (refused > 0) log(`creating ${count} agents: ${refused} refused with 503 and asked again`);
  return ids;
}

const benchPool = { strategy: 'least-inflight', targets: ['a', 'b'].map((id) => ({ id, kind: 'openai-chat', baseUrl: `${mockUrl}/t/${id}/ok/v1`, model: 'mock-model' })) };
await call('/v1/pools/bench', { method: 'PUT', headers: auth, body: JSON.stringify(benchPool) });
// The same pool with `passThrough` (answers handed on unread): what reading and checking each answer costs.
await call('/v1/pools/bench-pt', { method: 'PUT', headers: auth, body: JSON.stringify({ ...benchPool, passThrough: true }) });

const execBody = JSON.stringify({ intent: 'support.reply', input: { message: 'How do refunds work?' } });
const execOn = (ids, body = execBody) => [{ method: 'POST', headers: auth, body, setupRequest: rotate(ids, (id) => ({ path: `/v1/agents/${id}/executions` })) }];

/** Waits (bounded) until none of `ids` has work queued or running, and logs how long it took. */
async function drain(ids, limitMs = 180_000) {
  const since = Date.now();
  for (;;) {
    const states = await Promise.all(ids.map((id) => call(`/v1/agents/${id}/status`, { headers: auth })));
    const busy = states.filter((s) => s.running + s.queued > 0).length;
    if (busy === 0 || Date.now() - since > limitMs) {
      log(`drained the async backlog in ${((Date.now() - since) / 1000).toFixed(1)} s${busy ? ` (${busy} agents still busy)` : ''}`);
      return;
    }
    await sleep(250);
  }
}

/** Paired rounds of a scenario on the gateway against what its target compares it to (bench/lib/load.mjs). */
const pairedRatio = (requests, against) => pairedRounds({ url: base, requests }, against, pairs, pairSeconds);

/**
 * Scenarios with a target (issue 7), measured in pairs too: what each is paired with, the
 * target's comparison first (`pairedRatio`), then any others (`alsoPaired`).
 */
const bareProxyRounds = () => ({ scenario: 'bare-proxy', url: bareUrl, requests: bareRequests });
const pairedWith = new Map([
  ...['chat-proxy', 'chat-proxy-passthrough'].map((id) => [id, [bareProxyRounds]]),
  ['sync-exec-100', [bareProxyRounds, () => ({ scenario: 'bare-object', url: bareObjectUrl, requests: bareObjectRequests })]],
  // Not scale-10000: with 10,000 objects resident the runtime's memory refuses statements, and
  // scale-100's rounds would measure that instead (BENCHMARKS.md, twelfth pass).
  ['scale-1000', [() => ({ scenario: 'scale-100', url: base, requests: execOn(hundred) })]],
]);
const pairedLog = (id, p) =>
  log(`${id}: paired with ${p.pairedWith}, ratio ${p.pairedRatio} (median of ${p.pairedRatios.join(', ')}; req/s ${p.pairedWith}/${id} ${p.pairedRates.map(([a, b]) => `${a}/${b}`).join(', ')}; busy ${p.settledMs.join(', ')} ms after the scenario's rounds)`);

const want = values.only ? new Set(values.only.split(',')) : null;
async function scenario(id, requests, baseline = bareBaseline) {
  if (want && !want.has(id)) return;
  if (!values.profile) {
    record(id, await measure(base, requests), baseline);
    const [target, ...others] = pairedWith.get(id) ?? [];
    if (target && pairs > 0) {
      const paired = await pairedRatio(requests, target());
      Object.assign(results.at(-1), paired);
      pairedLog(id, paired);
      for (const other of others) {
        const also = await pairedRatio(requests, other());
        (results.at(-1).alsoPaired ??= []).push({ with: also.pairedWith, ratio: also.pairedRatio, ratios: also.pairedRatios });
        pairedLog(id, also);
      }
    }
    return;
  }
  await load(base, requests, warmup);
  const profiler = await startProfile(profilePort);
  const result = await load(base, requests);
  const profile = await profiler.stop();
  mkdirSync(values.profile, { recursive: true });
  writeFileSync(path.join(values.profile, `${id}.cpuprofile`), JSON.stringify(profile));
  log(`${id}: CPU by self time\n${summarise(profile)}`);
  record(id, result, baseline);
}

log('creating agents');
const hundred = await createAgents('a100', 100);
const [one] = await createAgents('scale1', 1);
const [hotC1] = await createAgents('hot-c1', 1, { concurrency: 1 });
const [hotC32] = await createAgents('hot-c32', 1, { concurrency: 32 });
const [longHistory] = await createAgents('long', 1);
if (!want || want.has('long-history')) {
  for (let i = 0; i < 60; i++) await call(`/v1/agents/${longHistory}/executions`, { method: 'POST', headers: auth, body: JSON.stringify({ intent: 'support.reply', input: { message: `question ${i} about refunds ${'x'.repeat(400)}` } }) });
  await call(`/v1/agents/${longHistory}/context`, { method: 'PATCH', headers: auth, body: JSON.stringify({ notes: 'y'.repeat(200_000) }) });
}
phase('start the gateway, create the scenarios\' agents');

await scenario('healthz', [{ method: 'GET', path: '/healthz' }]);
await scenario('chat-proxy', [{ method: 'POST', path: '/v1/chat/completions', headers: auth, body: chatBody('bench') }]);
await scenario('chat-proxy-passthrough', [{ method: 'POST', path: '/v1/chat/completions', headers: auth, body: chatBody('bench-pt') }]);
await scenario('get-agent-100', [{ method: 'GET', headers: auth, setupRequest: rotate(hundred, (id) => ({ path: `/v1/agents/${id}` })) }]);
await scenario('sync-exec-100', execOn(hundred));
await scenario('async-enqueue', execOn(hundred, JSON.stringify({ intent: 'support.reply', input: 'hello', mode: 'async' })));
// Accepted faster than they run: the backlog must not run inside the next scenarios' windows.
if (!want || want.has('async-enqueue')) await drain(hundred);
await scenario('hot-agent-c1', execOn([hotC1]));
await scenario('hot-agent-c32', execOn([hotC32]));
await scenario('context-patch', [{ method: 'PATCH', headers: auth, body: JSON.stringify({ n: 1 }), setupRequest: rotate(hundred, (id) => ({ path: `/v1/agents/${id}/context` })) }]);
{
  const agentPairs = [];
  for (let i = 0; i + 1 < hundred.length; i += 2) agentPairs.push(JSON.stringify({ operations: [{ agentId: hundred[i], increment: { n: 1 } }, { agentId: hundred[i + 1], increment: { n: -1 } }] }));
  await scenario('txn-2', [{ method: 'POST', path: '/v1/transactions', headers: auth, setupRequest: rotate(agentPairs, (body) => ({ body })) }]);
}
await scenario('scale-1', execOn([one]));
await scenario('scale-100', execOn(hundred));
await scenario('long-history', execOn([longHistory]));
phase('scenarios');
if (want ? want.has('scale-1000') : !quick) {
  // Between 100 and 10,000: where throughput falls off as each agent is used less often (see
  // BENCHMARKS.md, seventh pass). A pass over every agent first, so what is measured is agents
  // that have run before, as in scale-100 (each is used again within about two seconds: well
  // inside the runtime's 10 s idle eviction). Not in --quick unless asked for.
  const thousand = await createAgents('a1k', 1_000);
  await pass(base, execOn(thousand), thousand.length);
  phase('create and warm 1,000 agents');
  await scenario('scale-1000', execOn(thousand));
  phase('scale-1000');
}
if (!want || want.has('scale-10000')) {
  // Last. The local runtime evicts an object idle for 10 s, and its memory holds about 2,000
  // agent-shaped objects at once (`npm run bench:residency`), so at this size nearly every
  // execution meets a new instance of its agent (this measures cold starts, where scale-100
  // measures warm agents), and the rate is bounded by about 2,000 / 10 s whatever each does.
  log('creating 10,000 agents');
  const tenThousand = await createAgents('a10k', 10_000);
  // Creation leaves nothing behind (no flush, no alarm: the registry row is the snapshot), so
  // the scenario starts at once: every execution is the first on its agent.
  phase('create 10,000 agents');
  await scenario('scale-10000', execOn(tenThousand));
  phase('scale-10000');
}

await gateway.dispose();

{
  await bareObject.dispose();
  const again = await measure(bareUrl, bareRequests);
  await bare.dispose();
  log(`bare-proxy again after the gateway: ${again.rps} req/s (before: ${bareBaseline.rps}); ratios use the mean`);
  bareBaseline.rpsRuns = [bareBaseline.rps, again.rps];
  bareBaseline.rps = Math.round((bareBaseline.rps + again.rps) / 2);
  bareBaseline.ratio = Math.round((bareBaseline.rps / mockBaseline.rps) * 100) / 100;
  for (const r of results) if (r.baseline === 'bare-proxy') r.ratio = Math.round((r.rps / bareBaseline.rps) * 100) / 100;
  phase('bare proxy again');
}

// --- report -------------------------------------------------------------------------------------
const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), Node ${process.version}, storage on ${storage}`;
console.log(`\n${machine}; ${connections} connections, ${duration} s per scenario after ${warmup} s warm-up\n`);
console.log('| hello world served by | req/s | p50 ms | p99 ms |\n| --- | ---: | ---: | ---: |');
for (const c of ceilings) console.log(`| ${c.server} | ${c.rps} | ${c.p50} | ${c.p99} |`);
console.log('\n| scenario | req/s | ratio | paired ratio | vs | p50 ms | p99 ms | p99.9 ms | non-2xx | errors |\n| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |');
for (const r of results) console.log(`| ${r.scenario} | ${r.rps} | ${r.ratio ?? ''} | ${r.pairedRatio === undefined ? '' : `${r.pairedRatio}${r.pairedWith === r.baseline ? '' : ` of ${r.pairedWith}`}`} | ${r.baseline ?? ''} | ${r.p50} | ${r.p99} | ${r.p999} | ${r.non2xx} | ${r.errors} |`);

if (bareBaseline.rpsRuns) console.log(`\nbare-proxy is the mean of ${bareBaseline.rpsRuns.join(' req/s before and ')} req/s after the gateway's scenarios.`);
for (const r of results.filter((x) => x.alsoPaired)) for (const also of r.alsoPaired) console.log(`${r.scenario} paired with ${also.with}: ${also.ratio} (median of ${also.ratios.join(', ')}).`);
if (results.some((r) => r.pairedRatios)) console.log(`paired ratio: the median of ${pairs} pairs of ${pairSeconds} s rounds, the scenario and what it is paired with back to back (${results.filter((r) => r.pairedRatios).map((r) => `${r.scenario} to ${r.pairedWith}: ${r.pairedRatios.join(', ')}`).join('; ')}).`);
console.log(`\nwall time ${((Date.now() - started) / 1000).toFixed(0)} s: ${phases.map((p) => `${p.name} ${p.seconds.toFixed(1)} s`).join('; ')}`);
const chat = results.find((r) => r.scenario === 'chat-proxy');
if (chat) console.log(`\nchat-proxy adds ${chat.p50 - mockDirect.p50} ms at p50 and ${chat.p99 - mockDirect.p99} ms at p99 over the mock called directly; the bare proxy adds ${bareBaseline.p50 - mockDirect.p50} / ${bareBaseline.p99 - mockDirect.p99} ms.`);
mkdirSync(path.join(root, 'bench/results'), { recursive: true });
writeFileSync(path.join(root, 'bench/results/latest.json'), JSON.stringify({ at: new Date().toISOString(), machine, connections, duration, ceilings, results }, null, 2));
writeFileSync(path.join(root, 'bench/results/latest.svg'), chartSvg(results, `edge-agent-gateway bench, ${connections} connections (${new Date().toISOString().slice(0, 10)})`));
if (values.json) writeFileSync(values.json, JSON.stringify(results.map(({ scenario, rps, p50, p99, baseline, ratio, pairedRatio, pairedWith, alsoPaired }) => ({ scenario, rps, p50, p99, baseline, ratio, ...(pairedRatio !== undefined && { pairedRatio, pairedWith }), ...(alsoPaired && { alsoPaired: alsoPaired.map((a) => ({ with: a.with, ratio: a.ratio })) }) })), null, 2));
children.forEach((c) => c.kill());
process.exit(0);
