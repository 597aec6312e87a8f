// A/B comparison of two builds of the gateway on this machine: `npm run bench:compare -- A B`
// where A and B are git revisions or WORK (the working tree). Both are bundled, served side by
// side (each its own workerd process, storage on tmpfs), and measured in alternating short
// rounds, so the VM's drift (±30 % within a minute here) falls on both alike. Reports, per
// build, the median req/s and the median CPU time workerd spent per request (read from /proc:
// the Worker, its Durable Objects and D1 together, until the build is quiet after the round,
// so that the work a round defers counts), and B's ratio to A.
//
// Options: --scenario sync|chat|patch (sync: POST executions on the builtin upstream across
// --agents agents; chat: chat completions through a two-target pool to the mock upstream;
// patch: context PATCH), --rounds N (per build), --seconds S (per round), --connections C.
import autocannon from 'autocannon';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cliArgs } from '../scripts/lib/cli.mjs';

const USAGE = `usage: npm run bench:compare -- REV_A REV_B [OPTIONS]   (REV: a git revision, or WORK for the working tree)
  --scenario sync|chat|patch   (default sync)
  --rounds N            alternating rounds (default 6)
  --seconds S           seconds per round (default 3)
  --agents N            (default 100)
  --connections N       (default 50)
  --help                this text`;
const { values, positionals } = cliArgs('bench:compare', USAGE, {
  allowPositionals: true,
  options: {
    scenario: { type: 'string', default: 'sync' },
    agents: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '6' },
    seconds: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' },
  },
});
if (positionals.length !== 2) {
  console.error('usage: node bench/compare.mjs [--scenario sync|chat|patch] [--agents N] [--rounds N] [--seconds S] REV_A REV_B   (a git revision or WORK)');
  process.exit(2);
}
const runDir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'eag-compare-'));
process.env.TMPDIR = runDir; // before Miniflare exists: it keeps its storage under os.tmpdir()
const { applyMigrations, benchBindings, benchTenant, cleanUpOnExit, cpuTicks, freePort, ownChildren, root, startGateway, untilQuiet, waitFor, wranglerCompat } = await import('../scripts/lib/runtime.mjs');
const children = cleanUpOnExit(runDir);

const agents = Number(values.agents);
const log = (...args) => console.error('[compare]', ...args);

/** Bundles revision `rev` (or the working tree) as a deploy would: its script, and its wrangler.toml's compatibility date and flags. */
function build(rev, outdir) {
  let source = root;
  if (rev !== 'WORK') {
    source = path.join(runDir, `src-${path.basename(outdir)}`);
    execFileSync('git', ['-C', root, 'worktree', 'add', '--quiet', '--detach', source, rev]);
    symlinkSync(path.join(root, 'node_modules'), path.join(source, 'node_modules'));
  }
  try {
    execFileSync(path.join(root, 'node_modules/.bin/wrangler'), ['deploy', '--dry-run', '--outdir', outdir], { cwd: source, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' }, stdio: 'ignore' });
    return { scriptPath: path.join(outdir, 'index.js'), compat: wranglerCompat(source) };
  } finally {
    if (source !== root) execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', source]);
  }
}

const mockPort = await freePort();
const mock = spawn(process.execPath, [path.join(root, 'test/support/mock-upstream.mjs'), String(mockPort)], { stdio: 'ignore' });
children.push(mock);
const mockUrl = `http://127.0.0.1:${mockPort}`;
await waitFor(`${mockUrl}/health`);

async function serve(label, rev) {
  log(`${label}: building ${rev}`);
  const { scriptPath, compat } = build(rev, path.join(runDir, `build-${label}`));
  const before = ownChildren({ comm: 'workerd' });
  const { mf, base } = await startGateway({ scriptPath, compat, bindings: benchBindings() });
  const pids = new Set([...ownChildren({ comm: 'workerd' })].filter((pid) => !before.has(pid)));
  await applyMigrations(mf);
  const { call, auth } = await benchTenant(base);
  for (let i = 0; i < agents; i++) await call('/v1/agents', { method: 'POST', headers: auth, body: JSON.stringify({ id: `a-${i}`, concurrency: 32 }) });
  await call('/v1/pools/bench', { method: 'PUT', headers: auth, body: JSON.stringify({ strategy: 'least-inflight', targets: ['a', 'b'].map((id) => ({ id, kind: 'openai-chat', baseUrl: `${mockUrl}/t/${id}/ok/v1`, model: 'mock-model' })) }) });
  return { label, rev, mf, base, pids, auth };
}

function request(gateway) {
  let i = 0;
  const agent = () => `a-${i++ % agents}`;
  switch (values.scenario) {
    case 'chat':
      return { method: 'POST', path: '/v1/chat/completions', headers: gateway.auth, body: JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'How do refunds work?' }] }) };
    case 'patch':
      return { method: 'PATCH', headers: gateway.auth, body: JSON.stringify({ counter: 1 }), setupRequest: (r) => ({ ...r, path: `/v1/agents/${agent()}/context` }) };
    default:
      return { method: 'POST', headers: gateway.auth, body: JSON.stringify({ intent: 'support.reply', input: { message: 'How do refunds work?' } }), setupRequest: (r) => ({ ...r, path: `/v1/agents/${agent()}/executions` }) };
  }
}

const load = (gateway, seconds) => new Promise((resolve, reject) => {
  autocannon({ url: gateway.base, connections: Number(values.connections), duration: seconds, requests: [request(gateway)] }, (error, result) => (error ? reject(error) : resolve(result)));
});

/**
 * This VM's CPU speed itself drifts (a tight loop's rate moves ±15 % within seconds), so each
 * round's CPU time is also given scaled to the run's mean speed: how fast a fixed loop ran just
 * before and after the round.
 */
function loopRate(ms = 200) {
  const end = performance.now() + ms;
  let n = 0;
  while (performance.now() < end) n++;
  return n / ms;
}

const gateways = [await serve('A', positionals[0]), await serve('B', positionals[1])];
for (const gateway of gateways) await load(gateway, 2); // warm-up
const rounds = gateways.map(() => []);
for (let round = 0; round < Number(values.rounds); round++) {
  // ABBA order: neither build always runs first.
  for (const index of round % 2 ? [1, 0] : [0, 1]) {
    const gateway = gateways[index];
    const speedBefore = loopRate();
    const before = cpuTicks(gateway.pids);
    const result = await load(gateway, Number(values.seconds));
    // Counted until the build is quiet: under load its timers wait for the event loop to
    // drain, so its outbox flushes run after the round (BENCHMARKS.md, twelfth pass), and
    // would otherwise run, uncounted, during the other build's round.
    const ticks = (await untilQuiet(gateway.pids)).ticks - before;
    const speed = (speedBefore + loopRate()) / 2;
    rounds[index].push({ rps: Math.round(result.requests.average), cpuUs: (ticks * 10_000) / result.requests.total, speed, non2xx: result.non2xx });
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const all = rounds.flat();
const meanSpeed = all.reduce((sum, r) => sum + r.speed, 0) / all.length;
const summary = gateways.map((gateway, index) => ({
  build: `${gateway.label} (${gateway.rev})`,
  rps: median(rounds[index].map((r) => r.rps)),
  cpuUs: Math.round(median(rounds[index].map((r) => r.cpuUs))),
  // A slower moment (lower loop rate) inflates CPU time per request: scaled to the mean speed.
  scaledCpuUs: Math.round(median(rounds[index].map((r) => r.cpuUs * (r.speed / meanSpeed)))),
  non2xx: rounds[index].reduce((sum, r) => sum + r.non2xx, 0),
  rounds: rounds[index].map((r) => `${r.rps}/${Math.round(r.cpuUs)}`).join(' '),
}));
console.log(`scenario ${values.scenario}, ${values.connections} connections, ${values.rounds} rounds of ${values.seconds} s per build (req/s / CPU µs per request)`);
for (const s of summary) console.log(`${s.build}: ${s.rps} req/s, ${s.cpuUs} µs CPU per request (${s.scaledCpuUs} at the run's mean speed), ${s.non2xx} non-2xx   [${s.rounds}]`);
const [a, b] = summary;
console.log(`B/A: req/s ${(b.rps / a.rps).toFixed(2)}, CPU per request ${(b.cpuUs / a.cpuUs).toFixed(2)}, speed-scaled ${(b.scaledCpuUs / a.scaledCpuUs).toFixed(2)}`);
await Promise.all(gateways.map((gateway) => gateway.mf.dispose()));
process.exit(0);
