// The edge's own CPU per request, without the network: `npm run bench:edge -- REV_A REV_B`
// (git revisions, or WORK for the working tree). Each revision is bundled with a wrapper Worker
// whose one extra route calls the gateway's own `fetch` N times in a loop inside a single
// request (no socket, no load generator), so what is timed is the Worker's code and the
// runtime calls it makes. Both builds are served at once and measured in alternating short
// rounds, as `bench:compare` does, because this VM's speed drifts; workerd freezes the clock
// while code runs, so rounds are timed from outside.
//
// Scenarios (--scenario): chat (a chat completion through a pool whose target is the builtin
// responder: auth, limits, validation, the pool and the proxy, but no upstream socket),
// sync (sync executions of one agent on the builtin upstream: the edge and the agent's object),
// get (GET that agent). --rounds N (per build, default 12), --n N (requests per round, default 400).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cliArgs } from '../scripts/lib/cli.mjs';

const USAGE = `usage: npm run bench:edge -- REV_A REV_B [OPTIONS]   (REV: a git revision, or WORK for the working tree)
  --scenario chat|sync|get   (default chat)
  --rounds N            alternating rounds (default 12)
  --n N                 requests replayed per round (default 400)
  --help                this text`;
const { values, positionals } = cliArgs('bench:edge', USAGE, {
  allowPositionals: true,
  options: {
    scenario: { type: 'string', default: 'chat' },
    rounds: { type: 'string', default: '12' },
    n: { type: 'string', default: '400' },
  },
});
if (positionals.length !== 2 || !['chat', 'sync', 'get'].includes(values.scenario)) {
  console.error('usage: node bench/edge.mjs [--scenario chat|sync|get] [--rounds N] [--n N] REV_A REV_B   (a git revision or WORK)');
  process.exit(2);
}
const runDir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'eag-edge-'));
process.env.TMPDIR = runDir; // before Miniflare exists: it keeps its storage under os.tmpdir()
const { applyMigrations, benchBindings, benchTenant, cleanUpOnExit, root, startGateway } = await import('../scripts/lib/runtime.mjs');
cleanUpOnExit(runDir);
const log = (...args) => console.error('[edge]', ...args);

// The wrapper: the gateway's module as it is, plus one route that replays a request N times
// through the gateway's fetch. It exists only in this bench's build, never in the product.
const WRAPPER = `export * from './worker/index';
import gateway from './worker/index';

export default {
  ...gateway,
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname !== '/__bench/edge-loop') return gateway.fetch(request, env, ctx);
    const { n, method, path, headers, body } = await request.json();
    for (let i = 0; i < n; i++) {
      const response = await gateway.fetch(new Request('https://gateway.bench' + path, { method, headers, body }), env, ctx);
      const text = await response.text();
      if (!response.ok) return new Response(response.status + ' ' + text, { status: 500 });
    }
    return new Response('ok');
  },
};
`;

/** Bundles revision `rev` (or the working tree) with the wrapper; resolves to the script. */
function build(rev, label) {
  const source = path.join(runDir, `src-${label}`);
  if (rev === 'WORK') {
    // The working tree as it is, tracked or not, without touching it.
    execFileSync('git', ['-C', root, 'worktree', 'add', '--quiet', '--detach', source, 'HEAD']);
    const files = execFileSync('git', ['-C', root, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], { encoding: 'utf8' }).split('\0').filter(Boolean);
    for (const file of files) {
      const from = path.join(root, file);
      if (!existsSync(from)) rmSync(path.join(source, file), { force: true }); // deleted in the working tree
      else cpSync(from, path.join(source, file));
    }
  } else {
    execFileSync('git', ['-C', root, 'worktree', 'add', '--quiet', '--detach', source, rev]);
  }
  symlinkSync(path.join(root, 'node_modules'), path.join(source, 'node_modules'));
  try {
    writeFileSync(path.join(source, 'bench-edge-entry.ts'), WRAPPER);
    const config = readFileSync(path.join(source, 'wrangler.toml'), 'utf8').replace(/^main = .*$/m, 'main = "bench-edge-entry.ts"');
    writeFileSync(path.join(source, 'wrangler.bench-edge.toml'), config);
    const outdir = path.join(runDir, `build-${label}`);
    execFileSync(path.join(root, 'node_modules/.bin/wrangler'), ['deploy', '--dry-run', '--config', 'wrangler.bench-edge.toml', '--outdir', outdir], { cwd: source, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' }, stdio: 'ignore' });
    return path.join(outdir, 'bench-edge-entry.js');
  } finally {
    execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', source]);
  }
}


async function serve(label, rev) {
  log(`${label}: building ${rev}`);
  const scriptPath = build(rev, label);
  const { mf, base } = await startGateway({ scriptPath, bindings: benchBindings() });
  await applyMigrations(mf);
  const { call, auth } = await benchTenant(base);
  await call('/v1/agents', { method: 'POST', headers: auth, body: JSON.stringify({ id: 'a-0', concurrency: 32 }) });
  await call('/v1/pools/bench', { method: 'PUT', headers: auth, body: JSON.stringify({ targets: [{ id: 'local', kind: 'builtin' }] }) });
  const once = async (n) => {
    const started = performance.now();
    const res = await fetch(`${base}/__bench/edge-loop`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ n, ...scenario(auth) }) });
    const text = await res.text();
    if (!res.ok) throw new Error(`${label}: ${text}`);
    return ((performance.now() - started) * 1000) / n;
  };
  // workerd now and then closes the connection of a long loop request without an answer
  // ("other side closed"), either build; such a round is logged and run again, once.
  const loop = (n) => once(n).catch((error) => {
    log(`${label}: a round failed (${error.cause?.message ?? error.message}); running it again`);
    return once(n);
  });
  return { label, rev, mf, loop };
}

// As a client's request arrives: with its Content-Length (a body without one takes the body
// limit's streaming path, which costs about as much again as the rest of a chat request).
function scenario(auth) {
  const request = scenarioRequest(auth);
  if (request.body !== null) request.headers = { ...request.headers, 'content-length': String(Buffer.byteLength(request.body)) };
  return request;
}

function scenarioRequest(auth) {
  switch (values.scenario) {
    case 'sync':
      return { method: 'POST', path: '/v1/agents/a-0/executions', headers: auth, body: JSON.stringify({ intent: 'support.reply', input: { message: 'How do refunds work?' } }) };
    case 'get':
      return { method: 'GET', path: '/v1/agents/a-0', headers: auth, body: null };
    default:
      return { method: 'POST', path: '/v1/chat/completions', headers: auth, body: JSON.stringify({ model: 'bench', messages: [{ role: 'user', content: 'How do refunds work?' }] }) };
  }
}

const builds = [await serve('A', positionals[0]), await serve('B', positionals[1])];
const n = Number(values.n);
for (const b of builds) await b.loop(n); // warm-up: caches, the JIT
const rounds = builds.map(() => []);
for (let round = 0; round < Number(values.rounds); round++) {
  for (const index of round % 2 ? [1, 0] : [0, 1]) rounds[index].push(await builds[index].loop(n));
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const [a, b] = rounds.map(median);
console.log(`scenario ${values.scenario}, ${values.rounds} rounds of ${n} requests per build (µs of wall time per request, one request at a time)`);
for (const [i, build] of builds.entries()) console.log(`${build.label} (${build.rev}): median ${median(rounds[i]).toFixed(0)} µs   [${rounds[i].map((x) => x.toFixed(0)).join(' ')}]`);
console.log(`B/A: ${(b / a).toFixed(3)}`);
for (const build of builds) await build.mf.dispose();
