#!/usr/bin/env node
// `npm run dev`: local gateway with working defaults. Creates .dev.vars on first start,
// applies the D1 migrations to the local database, makes the demo tenant and its API key
// (idempotently), starts `wrangler dev`, and prints the key once the gateway answers.
//
// Options (or env): --port N (PORT, default 8787), --persist-to DIR (STATE_DIR, default
// .wrangler/state), --inspector-port N (INSPECTOR_PORT, default: a free port; wrangler's own
// default, 9229, makes a second gateway on the machine fail to start), --quiet, --var NAME:VALUE
// (repeatable: a var for this run, e.g. --var MCP_ALLOWED_ORIGINS:http://127.0.0.1:5173).
//
// Local dev runs no cron by itself, and Miniflare's /cdn-cgi/handler/scheduled answers 500
// when the Worker has static assets; wrangler's --test-scheduled serves GET /__scheduled,
// which runs the scheduled handler (the pool health probes) once.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { cliArgs } from './lib/cli.mjs';
import { devVars } from './lib/dev-vars.mjs';

const USAGE = `usage: npm run dev [-- OPTIONS]
  --port N              port on 127.0.0.1 (env PORT; default 8787)
  --persist-to DIR      local state: D1, KV, Durable Objects (env STATE_DIR; default .wrangler/state)
  --inspector-port N    wrangler's inspector port (env INSPECTOR_PORT; default: a free port)
  --var NAME:VALUE      a var for this run, over .dev.vars (repeatable)
  --quiet               print only errors and the banner
  --help                this text`;

const { values } = cliArgs('dev', USAGE, {
  options: {
    port: { type: 'string', default: process.env.PORT ?? '8787' },
    'persist-to': { type: 'string', default: process.env.STATE_DIR ?? '.wrangler/state' },
    'inspector-port': { type: 'string', default: process.env.INSPECTOR_PORT },
    quiet: { type: 'boolean', default: false },
    // NAME:VALUE, repeatable: a var for this run only, over .dev.vars (wrangler dev --var).
    var: { type: 'string', multiple: true, default: [] },
  },
});
// A --var without its colon names no value: refused here, before wrangler starts without the var meant.
const badVar = values.var.find((pair) => !/^[A-Za-z_][A-Za-z0-9_]*:/.test(pair));
if (badVar !== undefined) {
  console.error(`npm run dev: --var takes NAME:VALUE, not ${JSON.stringify(badVar)}\n${USAGE}`);
  process.exit(1);
}

/** A port nothing listens on right now, from the kernel. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}
/** Whether `port` on 127.0.0.1 can be listened on now (nothing else holds it). */
function portFree(port) {
  return new Promise((resolve) => {
    const server = createServer().once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

const port = Number(values.port);
const persistTo = values['persist-to'];
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`npm run dev: --port must be a port number (1-65535), not ${JSON.stringify(values.port)}`);
  process.exit(1);
}
// Checked before anything else: on a port already held (an `npm run dev` left running in
// another terminal, say) wrangler fails to start, but whatever holds the port answered the
// /healthz below, and the banner and its key went out as if this gateway were running there.
if (!(await portFree(port))) {
  console.error(`npm run dev: port ${port} on 127.0.0.1 is already in use (another \`npm run dev\` still running?): stop what holds it, or choose another port with --port`);
  process.exit(1);
}
const env = { ...process.env, WRANGLER_SEND_METRICS: 'false' };
const wranglerBin = 'node_modules/.bin/wrangler';
const DATABASE = 'edge-agent-gateway';
const DEMO_TENANT = 'demo';

function wrangler(args) {
  const result = spawnSync(wranglerBin, args, { env, encoding: 'utf8' });
  if (result.status !== 0) {
    console.error(result.stdout, result.stderr);
    throw new Error(`wrangler ${args.slice(0, 3).join(' ')} failed`);
  }
  return result.stdout;
}

const vars = devVars();
const demoKey = vars.DEMO_API_KEY;
if (!demoKey?.startsWith('eag_')) throw new Error('DEMO_API_KEY in .dev.vars must start with eag_');

wrangler(['d1', 'migrations', 'apply', DATABASE, '--local', '--persist-to', persistTo]);
// The demo key is the one .dev.vars holds now: a .dev.vars made anew (or edited) next to a
// database that kept the earlier key's hash used to leave the printed key refused (401). A new
// key is not revoked with the one it replaces; the same key, revoked by its operator, stays so.
const hash = createHash('sha256').update(demoKey).digest('hex');
const now = Date.now();
wrangler([
  'd1', 'execute', DATABASE, '--local', '--persist-to', persistTo, '--command',
  `INSERT OR IGNORE INTO tenants (id, name, created_at) VALUES ('${DEMO_TENANT}', 'Demo tenant', ${now});
   INSERT INTO api_keys (id, tenant_id, hash, prefix, name, created_at) VALUES ('key_demo', '${DEMO_TENANT}', '${hash}', '${demoKey.slice(0, 12)}', 'demo key', ${now})
     ON CONFLICT (id) DO UPDATE SET hash = excluded.hash, prefix = excluded.prefix,
       revoked_at = CASE WHEN api_keys.hash = excluded.hash THEN api_keys.revoked_at END;`,
]);

const inspectorPort = values['inspector-port'] ? Number(values['inspector-port']) : await freePort();
const child = spawn(
  wranglerBin,
  ['dev', '--ip', '127.0.0.1', '--port', String(port), '--inspector-port', String(inspectorPort), '--persist-to', persistTo, '--test-scheduled', '--show-interactive-dev-session=false', '--log-level', values.quiet ? 'error' : 'log', ...values.var.flatMap((pair) => ['--var', pair])],
  { env, stdio: ['ignore', values.quiet ? 'ignore' : 'inherit', 'inherit'] },
);
const stop = (signal) => child.kill(signal);
process.on('SIGINT', () => stop('SIGINT'));
process.on('SIGTERM', () => stop('SIGTERM'));
child.on('exit', (code) => process.exit(code ?? 0));

const base = `http://127.0.0.1:${port}`;
let up = false;
for (let i = 0; i < 600 && !up; i++) {
  try {
    up = (await fetch(`${base}/healthz`)).ok;
  } catch {
    /* not up yet */
  }
  if (!up) await new Promise((r) => setTimeout(r, 200));
}
// A gateway that never answered is not announced as running (the banner used to follow anyway).
if (!up) {
  console.error(`npm run dev: the gateway did not answer ${base}/healthz within 120 s; stopping it`);
  child.removeAllListeners('exit');
  child.once('exit', () => process.exit(1));
  stop('SIGTERM');
} else console.log(`
  edge-agent-gateway is running on ${base}

  dashboard:    ${base}/dashboard/   (paste the demo API key)
  demo tenant:  ${DEMO_TENANT}
  demo API key: ${demoKey}
  admin token:  ${vars.ADMIN_TOKEN}   (for /v1/admin routes; both live in .dev.vars)

  try:  curl -s ${base}/v1/agents -H "Authorization: Bearer ${demoKey}"
`);
