// Stalls under load: `npm run bench:stalls`. Runs sync executions across --agents agents in
// --rounds rounds of --duration seconds (new connections each round, --pause seconds apart),
// while a side client polls GET /healthz every 50 ms. Reports, per round, req/s and the latency
// tail, then the side polls slower than 300 ms and the 250 ms windows inside a round that
// answered under a fifth of the median window: the stalls that averages and p99 hide (see
// BENCHMARKS.md, eleventh pass). --control serves, instead of the gateway, a Worker that costs
// about as much CPU per request (a Durable Object call with SQLite writes across 100 objects),
// to tell the runtime's own behaviour under saturation from the gateway's.
import autocannon from 'autocannon';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '6' },
    duration: { type: 'string', default: '6' },
    pause: { type: 'string', default: '2' },
    agents: { type: 'string', default: '100' },
    connections: { type: 'string', default: '50' },
    control: { type: 'boolean', default: false },
  },
});
const runDir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'eag-stalls-'));
process.env.TMPDIR = runDir; // before Miniflare exists: it keeps its storage under os.tmpdir()
const { applyMigrations, benchBindings, benchTenant, bundle, cleanUpOnExit, compatibilityDate, sleep, startGateway } = await import('../scripts/lib/runtime.mjs');
cleanUpOnExit(runDir);
const log = (...args) => console.error('[stalls]', ...args);
const agents = Number(values.agents);

/** The control: CPU per request like a sync execution's, in a Worker and an object's SQLite. */
async function startControl() {
  const { Miniflare } = await import('miniflare');
  writeFileSync(path.join(runDir, 'control.js'), `import { DurableObject } from 'cloudflare:workers';
export class Probe extends DurableObject {
  constructor(ctx, env) { super(ctx, env); ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)'); }
  async work(v) {
    let x = 0;
    for (let i = 0; i < 24_000; i++) x += Math.sqrt(i);
    this.ctx.storage.transactionSync(() => { this.ctx.storage.sql.exec('INSERT INTO t (v) VALUES (?)', v); this.ctx.storage.sql.exec('INSERT INTO t (v) VALUES (?)', v); });
    await Promise.resolve();
    this.ctx.storage.sql.exec('UPDATE t SET v = ? WHERE id = (SELECT max(id) FROM t)', v);
    return x;
  }
}
let next = 0;
export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === '/healthz') return new Response('ok');
    let x = 0;
    for (let turn = 0; turn < 3; turn++) { for (let i = 0; i < 30_000; i++) x += Math.sqrt(i); await scheduler.wait(0); }
    x += await env.PROBE.get(env.PROBE.idFromName('o' + (next++ % ${agents}))).work('x'.repeat(800));
    return new Response(String(x));
  },
};`);
  const mf = new Miniflare({ name: 'control', modules: true, scriptPath: path.join(runDir, 'control.js'), modulesRoot: runDir, compatibilityDate, durableObjects: { PROBE: { className: 'Probe', useSQLite: true } }, unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }] });
  await mf.ready;
  const base = (await mf.unsafeGetDirectURL('control')).toString().replace(/\/$/, '');
  return { mf, base, requests: [{ method: 'POST', path: '/' }] };
}

async function startGatewayWithAgents() {
  const script = await bundle(undefined, path.join(runDir, 'build'));
  const { mf, base } = await startGateway({ scriptPath: script, bindings: benchBindings() });
  await applyMigrations(mf);
  const { call, auth } = await benchTenant(base);
  const ids = Array.from({ length: agents }, (_, i) => `stalls-${i}`);
  for (const id of ids) await call('/v1/agents', { method: 'POST', headers: auth, body: JSON.stringify({ id, concurrency: 32 }) });
  let next = 0;
  const body = JSON.stringify({ intent: 'support.reply', input: { message: 'How do refunds work?' } });
  return { mf, base, requests: [{ method: 'POST', headers: auth, body, setupRequest: (req) => ({ ...req, path: `/v1/agents/${ids[next++ % ids.length]}/executions` }) }] };
}

const { mf, base, requests } = values.control ? await startControl() : await startGatewayWithAgents();
log(values.control ? 'control Worker up' : `gateway up, ${agents} agents created`);

const T0 = Date.now();
const polls = [];
let polling = true;
// One kept-alive connection, as a load balancer's health check holds one.
const pollAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const poll = () => new Promise((resolve) => {
  const started = Date.now();
  const req = http.get(`${base}/healthz`, { agent: pollAgent }, (res) => {
    res.resume();
    res.on('end', () => resolve([started - T0, Date.now() - started]));
  });
  req.on('error', (error) => resolve([started - T0, error.code ?? String(error)]));
});
const poller = (async () => {
  while (polling) {
    polls.push(await poll());
    await sleep(50);
  }
  pollAgent.destroy();
})();

const WINDOW_MS = 250;
const rounds = [];
for (let round = 0; round < Number(values.rounds); round++) {
  if (round > 0) await sleep(Number(values.pause) * 1000);
  const startedAt = Date.now() - T0;
  const windows = new Map();
  const result = await autocannon({
    url: base,
    connections: Number(values.connections),
    duration: Number(values.duration),
    requests,
    setupClient: (client) => client.on('response', () => {
      const w = Math.floor((Date.now() - T0 - startedAt) / WINDOW_MS);
      windows.set(w, (windows.get(w) ?? 0) + 1);
    }),
  });
  const endedAt = Date.now() - T0;
  const counts = Array.from({ length: Math.floor((endedAt - startedAt) / WINDOW_MS) }, (_, w) => windows.get(w) ?? 0);
  rounds.push({ round, startedAt, endedAt, result, counts });
  const { latency } = result;
  console.log(`round ${round} (${startedAt}–${endedAt} ms): ${Math.round(result.requests.average)} req/s, p50 ${latency.p50} ms, p99 ${latency.p99}, p99.9 ${latency.p99_9}, max ${latency.max}; non-2xx ${result.non2xx}, errors ${result.errors}`);
}
polling = false;
await poller;
await mf.dispose();

const all = rounds.flatMap((r) => r.counts).sort((a, b) => a - b);
const median = all[Math.floor(all.length / 2)] ?? 0;
const quiet = rounds.flatMap((r) => r.counts.map((n, w) => [r.startedAt + w * WINDOW_MS, n]).filter(([, n]) => n < median / 5));
const slowPolls = polls.filter(([, ms]) => typeof ms !== 'number' || ms > 300);
console.log(`\nside polls of /healthz: ${polls.length}, slower than 300 ms or failed: ${slowPolls.length}${slowPolls.length ? ` ${JSON.stringify(slowPolls)}` : ''}`);
console.log(`250 ms windows inside rounds with under a fifth of the median (${median}) answers: ${quiet.length}${quiet.length ? ` ${JSON.stringify(quiet)}` : ''}`);
console.log(`worst max latency of a round: ${Math.max(...rounds.map((r) => r.result.latency.max))} ms`);
