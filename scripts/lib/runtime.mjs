// Serving the built Worker on the runtime without a dev server: shared by `npm run bench`
// (bench/harness.mjs) and `npm run test:chaos` (test/chaos/chaos.mjs). The Worker is bundled
// as a deploy would bundle it and served by Miniflare with `unsafeDirectSockets` (workerd
// listens for the Worker itself): real Durable Objects, D1 and KV at about 10k req/s here.
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { Miniflare } from 'miniflare';

export const root = path.resolve(import.meta.dirname, '../..');

/**
 * The compatibility date and flags of the wrangler.toml in `dir`: the tools serve a build with
 * the same runtime behaviour a deploy of it gets (a flag changes what the runtime does, timers
 * for one: BENCHMARKS.md, twelfth pass).
 */
export function wranglerCompat(dir = root) {
  const toml = readFileSync(path.join(dir, 'wrangler.toml'), 'utf8');
  const date = /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml)?.[1];
  const flags = /^compatibility_flags\s*=\s*\[([^\]]*)\]/m.exec(toml)?.[1];
  if (!date) throw new Error(`no compatibility_date in ${dir}/wrangler.toml`);
  return { compatibilityDate: date, compatibilityFlags: flags ? [...flags.matchAll(/"([^"]+)"/g)].map((m) => m[1]) : [] };
}
export const { compatibilityDate } = wranglerCompat();
const wrangler = path.join(root, 'node_modules/.bin/wrangler');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The processes this process started (`comm`: only those of that name, such as `workerd`). */
export function ownChildren({ comm } = {}) {
  const pids = new Set();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (parent === process.pid && (comm === undefined || name === comm)) pids.add(Number(pid));
    } catch {
      /* gone already, or not ours to read */
    }
  }
  return pids;
}

/** CPU ticks (1/100 s) used so far by these processes, user and system. */
export function cpuTicks(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      /* gone meanwhile */
    }
  }
  return ticks;
}

/** The window in which processes count as quiet: they used at most one tick (10 ms) in it. */
const QUIET_WINDOW_MS = 100;

/**
 * Waits (at most 10 s) until `pids` are quiet; resolves to their CPU ticks then, and how long
 * they stayed busy first (the quiet window itself not counted). Under load the gateway's
 * timers wait for its event loop to drain (BENCHMARKS.md, twelfth pass), so the work a
 * round of load defers (its outbox flushes) runs in this time: a measurement that ends with
 * the load leaves it out, and the next round would pay for it.
 */
export async function untilQuiet(pids) {
  const since = Date.now();
  let last = cpuTicks(pids);
  while (Date.now() - since < 10_000) {
    await sleep(QUIET_WINDOW_MS);
    const now = cpuTicks(pids);
    if (now - last <= 1) return { ticks: now, busyMs: Math.max(0, Date.now() - since - QUIET_WINDOW_MS) };
    last = now;
  }
  return { ticks: last, busyMs: Date.now() - since };
}

/**
 * Kills the workerd processes this process started. Miniflare's `dispose()` does that, but a
 * run that dies on an error never gets there, and its runtime would go on using a core.
 * Call from `process.on('exit')`: synchronous.
 */
export function killOwnWorkerd() {
  for (const pid of ownChildren({ comm: 'workerd' })) {
    try {
      process.kill(pid);
    } catch {
      /* gone already */
    }
  }
}

/**
 * On exit, error or not: stops `children` (pushed as they start), then this process's workerd,
 * then removes the run's directory. A removal racing a runtime still closing its files is said,
 * not thrown: a throw in an exit handler would skip whatever work follows it.
 */
export function cleanUpOnExit(runDir) {
  const children = [];
  process.on('exit', () => {
    for (const child of children) child.kill();
    killOwnWorkerd(); // before the removal: the runtime of a run that died on an error still has its files open
    try {
      rmSync(runDir, { recursive: true, force: true });
    } catch (error) {
      console.error(`could not remove ${runDir}: ${error.message}`);
    }
  });
  // Interrupted (Ctrl-C, a CI timeout): exit, so that the cleanup above runs, which a signal's
  // default action would skip.
  for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));
  return children;
}

/** A TCP port that was free a moment ago. */
export const freePort = () =>
  new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

/** Resolves once `url` answers at all (any status). */
export async function waitFor(url, tries = 200) {
  for (let i = 0; i < tries; i++) {
    try {
      await fetch(url);
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`${url} did not come up`);
}

/** Bundles a Worker with `wrangler deploy --dry-run --outdir`; resolves to the script's path. */
export function bundle(config, outdir) {
  const env = { ...process.env, WRANGLER_SEND_METRICS: 'false' };
  const child = spawn(wrangler, ['deploy', '--dry-run', '--outdir', outdir, ...(config ? ['--config', config] : [])], { cwd: root, env });
  let output = '';
  child.stdout.on('data', (chunk) => { output += chunk; });
  child.stderr.on('data', (chunk) => { output += chunk; });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(path.join(outdir, 'index.js')) : reject(new Error(`bundling failed:\n${output}`))));
  });
}

/**
 * Miniflare options for the gateway: the bindings of wrangler.toml, `bindings` as vars and
 * secrets, `port` for the direct socket (0: any), `compat` (the compatibility date and flags,
 * by default this project's wrangler.toml's), and `persist` (a directory) to keep Durable
 * Object, D1 and KV storage across instances — which is how a process crash is simulated;
 * `inspectorPort` opens workerd's inspector (CPU profiles of the gateway's isolate).
 */
export function gatewayOptions({ scriptPath, bindings, port = 0, persist, inspectorPort, compat = wranglerCompat() }) {
  return {
    name: 'gateway',
    modules: true,
    scriptPath,
    // Module names are paths relative to this; the build may live outside the project.
    modulesRoot: path.dirname(scriptPath),
    ...compat,
    durableObjects: {
      AGENTS: { className: 'AgentDO', useSQLite: true },
      TRANSACTIONS: { className: 'TransactionDO', useSQLite: true },
      KEY_LIMITS: { className: 'KeyLimiterDO', useSQLite: true },
      PROJECTOR: { className: 'ProjectorDO', useSQLite: true },
    },
    d1Databases: { DB: 'gateway-db' },
    kvNamespaces: { CACHE: 'gateway-kv' },
    // As wrangler.toml's [[ratelimits]]: the keyless agent card counts per client address.
    ratelimits: { PUBLIC_CARD_LIMIT: { simple: { limit: 120, period: 60 } } },
    bindings,
    unsafeDirectSockets: [{ host: '127.0.0.1', port }],
    ...(inspectorPort && { inspectorPort }),
    ...(persist && { defaultPersistRoot: persist, durableObjectsPersist: true, d1Persist: true, kvPersist: true }),
  };
}

/** Starts the gateway; returns the instance and its base URL (no trailing slash). */
export async function startGateway(options) {
  const mf = new Miniflare(gatewayOptions(options));
  await mf.ready;
  const base = (await mf.unsafeGetDirectURL('gateway')).toString().replace(/\/$/, '');
  return { mf, base };
}

/** The operator token the bench tools start the gateway with. */
export const BENCH_ADMIN_TOKEN = 'bench-admin-token-0123456789';

/** The gateway's bindings for the bench tools: local upstreams allowed, errors-only logs (`BENCH_LOG_LEVEL=warn` adds 4xx and slow answers). */
export const benchBindings = () => ({ ADMIN_TOKEN: BENCH_ADMIN_TOKEN, UPSTREAM_ENCRYPTION_KEY: Buffer.alloc(32, 9).toString('base64'), ALLOW_PRIVATE_UPSTREAMS: 'true', LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'error' });

/**
 * A tenant and an API key on a bench gateway at `base`. `call` is a JSON request that throws on
 * any answer but 2xx; `auth` the headers of a JSON request with the key.
 */
export async function benchTenant(base) {
  const json = { 'content-type': 'application/json' };
  const call = async (pathname, init) => {
    const res = await fetch(base + pathname, init);
    if (!res.ok) throw new Error(`${pathname}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  const admin = { ...json, authorization: `Bearer ${BENCH_ADMIN_TOKEN}` };
  const tenant = await call('/v1/admin/tenants', { method: 'POST', headers: admin, body: '{}' });
  const { key } = await call(`/v1/admin/tenants/${tenant.id}/keys`, { method: 'POST', headers: admin, body: '{}' });
  return { call, auth: { ...json, authorization: `Bearer ${key}` } };
}

/** Applies migrations/*.sql to the gateway's D1 database, in order. */
export async function applyMigrations(mf) {
  const db = await mf.getD1Database('DB');
  for (const file of readdirSync(path.join(root, 'migrations')).sort()) {
    const sql = readFileSync(path.join(root, 'migrations', file), 'utf8').replace(/--.*$/gm, '');
    const statements = sql.split(';').map((s) => s.trim()).filter(Boolean);
    await db.batch(statements.map((s) => db.prepare(s)));
  }
  return db;
}
