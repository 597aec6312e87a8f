// Stalls under load: `npm run bench:stalls`. Runs sync executions across --agents agents in
// --rounds rounds of --duration seconds (new connections each round, --pause seconds apart),
// while a side client polls GET /healthz every 50 ms. Reports, per round, req/s and the latency
// tail, then the side polls slower than 300 ms or failed (with when each ended, against its
// round's end) and the 250 ms windows inside a round that answered under a fifth of the median
// window: the stalls that averages and p99 hide.
//
// What they are (BENCHMARKS.md, twelfth pass): workerd's event loop (KJ) polls for I/O only
// when its queue of ready work is empty. A sync execution on the built-in upstream never waits
// for I/O in the local runtime (the object, its SQLite and D1 are in the same process), and 50
// closed-loop clients keep the queue full. A connection whose next request arrives just after
// workerd's read found nothing then waits for readiness that is not polled until the load
// stops; past KJ's 5 s pipeline timeout, workerd closes it instead (the resets).
//
// --control serves, instead of the gateway, a Worker of about the same CPU per request whose
// work never waits for I/O either (a Durable Object call with SQLite writes across the
// objects). --yield puts one timer wait (`scheduler.wait(0)`) in front of every request of
// either, without changing the gateway's source: the event loop then drains once per round
// trip of the clients, and the stalls are gone.
import autocannon from 'autocannon';
import { copyFileSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cliArgs } from '../scripts/lib/cli.mjs';

const USAGE = `usage: npm run bench:stalls [-- OPTIONS]
  --rounds N            (default 6)
  --duration S          seconds per round (default 6)
  --pause S             seconds between rounds (default 2)
  --agents N            (default 100)
  --connections N       (default 50)
  --control             a plain Worker of similar cost instead of the gateway
  --yield               one timer wait in front of every request
  --help                this text`;
const { values } = cliArgs('bench:stalls', USAGE, {
  options: {
    rounds: { type: 'string', default: '6' },
    duration: { type: 'string', default: '6' },
    pause: { type: 'string', default: '2' },
    agents: { type: 'string', default: '100' },
    connections: { type: 'string', default: '50' },
    control: { type: 'boolean', default: false },
    yield: { type: 'boolean', default: false },
  },
});
const runDir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'eag-stalls-'));
process.env.TMPDIR = runDir; // before Miniflare exists: it keeps its storage under os.tmpdir()
const { applyMigrations, benchBindings, benchTenant, bundle, cleanUpOnExit, compatibilityDate, sleep, startGateway } = await import('../scripts/lib/runtime.mjs');
cleanUpOnExit(runDir);
const log = (...args) => console.error('[stalls]', ...args);
const agents = Number(values.agents);

/**
 * The control: CPU per request like a sync execution's, in a Worker and an object's SQLite, in
 * several turns that, like the gateway's, wait for nothing outside the process.
 */
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
    let x = 0;${values.yield ? `
    await scheduler.wait(0);` : ''}
    for (let turn = 0; turn < 3; turn++) { for (let i = 0; i < 30_000; i++) x += Math.sqrt(i); await Promise.resolve(); }
    x += await env.PROBE.get(env.PROBE.idFromName('o' + (next++ % ${agents}))).work('x'.repeat(800));
    return new Response(String(x));
  },
};`);
  const mf = new Miniflare({ name: 'control', modules: true, scriptPath: path.join(runDir, 'control.js'), modulesRoot: runDir, compatibilityDate, durableObjects: { PROBE: { className: 'Probe', useSQLite: true } }, unsafeDirectSockets: [{ host: '127.0.0.1', port: 0 }] });
  await mf.ready;
  const base = (await mf.unsafeGetDirectURL('control')).toString().replace(/\/$/, '');
  return { mf, base, requests: [{ method: 'POST', path: '/' }] };
}

/** A module in front of the built gateway that waits for one timer before every request. */
function withTimerYield(built) {
  // Miniflare loads a `.js` module other than the entry as CommonJS: the bundle goes as `.mjs`.
  const dir = path.dirname(built);
  copyFileSync(built, path.join(dir, 'gateway.mjs'));
  writeFileSync(path.join(dir, 'timer-yield.mjs'), `import gateway from './gateway.mjs';
export * from './gateway.mjs';
export default { ...gateway, async fetch(request, env, ctx) { await scheduler.wait(0); return gateway.fetch(request, env, ctx); } };
`);
  return path.join(dir, 'timer-yield.mjs');
}

async function startGatewayWithAgents() {
  const built = await bundle(undefined, path.join(runDir, 'build'));
  const script = values.yield ? withTimerYield(built) : built;
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
log(`${values.control ? 'control Worker up' : `gateway up, ${agents} agents created`}${values.yield ? '; one timer wait before every request' : ''}`);

const T0 = Date.now();
const polls = [];
let polling = true;
// One kept-alive connection, as a load balancer's health check holds one.
const pollAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const poll = () => new Promise((resolve) => {
  const started = Date.now();
  const req = http.get(`${base}/healthz`, { agent: pollAgent }, (res) => {
    res.resume();
    res.on('end', () => resolve({ at: started - T0, ms: Date.now() - started }));
  });
  req.on('error', (error) => resolve({ at: started - T0, ms: Date.now() - started, error: error.code ?? String(error) }));
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
const slowPolls = polls.filter((p) => p.error || p.ms > 300);
/** When a poll ended, against the round it started in: "+12 ms after round 3's end". */
const endedWhen = ({ at, ms }) => {
  const round = rounds.findLast((r) => r.startedAt <= at);
  if (!round || at > round.endedAt) return 'between rounds';
  const offset = at + ms - round.endedAt;
  return `${Math.abs(offset)} ms ${offset < 0 ? 'before' : 'after'} round ${round.round}'s end`;
};
console.log(`\nside polls of /healthz: ${polls.length}, slower than 300 ms or failed: ${slowPolls.length}`);
for (const p of slowPolls) console.log(`  at ${p.at} ms: ${p.error ? `${p.error} after ${p.ms} ms` : `${p.ms} ms`}, ended ${endedWhen(p)}`);
console.log(`250 ms windows inside rounds with under a fifth of the median (${median}) answers: ${quiet.length}${quiet.length ? ` ${JSON.stringify(quiet)}` : ''}`);
console.log(`worst max latency of a round: ${Math.max(...rounds.map((r) => r.result.latency.max))} ms`);
