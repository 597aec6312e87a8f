#!/usr/bin/env node
// `node bench/rollout.mjs REV [--mix NAME]`: a gradual deployment from release REV to the
// working tree, with both versions serving at once. In a gradual deployment the platform gives
// each Durable Object one version for the deployment's life, and each request's Worker either
// version (developers.cloudflare.com/workers/versions-and-deployments/gradual-deployments/
// with-durable-objects): so an edge of one version calls objects of the other, and an object
// of one version calls objects of the other. Each mix below serves one such split: both
// builds run as two Workers of one runtime, over one D1 database (migrated forward first, as
// an operator does before a deploy) and one KV namespace, and every Durable Object binding of
// both points at the version the mix gives that class. REV's own README blocks (what clients of
// the release being replaced were written against) then run against the edge, and must run as
// they did: exit 0, nothing on stderr, and the outputs that show each step did its work.
// Not in CI: it bundles two builds and runs each mix (about 20 s each).
import { spawn, spawnSync } from 'node:child_process';
import { request as httpRequest, createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Miniflare } from 'miniflare';
import { extraChecks, startUpstream } from './lib/rollout-checks.mjs';
import { BENCH_ADMIN_TOKEN, applyMigrations, benchBindings, bundle, cleanUpOnExit, gatewayOptions, root, wranglerCompat } from '../scripts/lib/runtime.mjs';

const CLASSES = { AGENTS: 'AgentDO', TRANSACTIONS: 'TransactionDO', KEY_LIMITS: 'KeyLimiterDO', PROJECTOR: 'ProjectorDO' };
/** Which version serves the edge and each object class; the rest are the new version's. */
const MIXES = {
  'new edge, old objects': { edge: 'new', AGENTS: 'old', TRANSACTIONS: 'old', KEY_LIMITS: 'old', PROJECTOR: 'old' },
  'old edge, new objects': { edge: 'old' },
  'new edge, old agents': { edge: 'new', AGENTS: 'old' },
  'old edge and agents, new others': { edge: 'old', AGENTS: 'old' },
  'new edge and agents, old others': { edge: 'new', TRANSACTIONS: 'old', KEY_LIMITS: 'old', PROJECTOR: 'old' },
  // Both edges at once, each request to the next: what one edge version writes to the shared
  // KV cache (keys, pools, routes), the other reads.
  'both edges, old objects': { edge: 'both', AGENTS: 'old', TRANSACTIONS: 'old', KEY_LIMITS: 'old', PROJECTOR: 'old' },
  'both edges, new objects': { edge: 'both' },
  'all new (control)': { edge: 'new' },
};

const { values, positionals } = parseArgs({ allowPositionals: true, options: { mix: { type: 'string', multiple: true } } });
const [rev] = positionals;
if (!rev) {
  console.error(`usage: node bench/rollout.mjs REV [--mix NAME]...   (REV: the release rolled out from; mixes: ${Object.keys(MIXES).join('; ')})`);
  process.exit(2);
}
const mixes = values.mix ?? Object.keys(MIXES);
for (const name of mixes) if (!MIXES[name]) throw new Error(`no mix "${name}"`);

const work = mkdtempSync('/tmp/eag-rollout-');
process.env.TMPDIR = work; // Miniflare's storage goes here, removed on exit
cleanUpOnExit(work);
const oldTree = path.join(work, 'old');
mkdirSync(oldTree);
if (spawnSync('sh', ['-c', `git -C "${root}" archive "${rev}" | tar -x -C "${oldTree}"`], { stdio: 'inherit' }).status !== 0) process.exit(1);
symlinkSync(path.join(root, 'node_modules'), path.join(oldTree, 'node_modules'));
// The blocks read the operator token from .dev.vars in their working directory.
writeFileSync(path.join(work, '.dev.vars'), `ADMIN_TOKEN=${BENCH_ADMIN_TOKEN}\n`);

console.error(`[rollout] bundling ${rev} and the working tree`);
const scripts = {
  old: await bundle(path.join(oldTree, 'wrangler.toml'), path.join(work, 'build-old')),
  new: await bundle(null, path.join(work, 'build-new')),
};
const compat = { old: wranglerCompat(oldTree), new: wranglerCompat(root) };

/** One version's Worker: its bundle, the gateway's bindings, and each object binding at the mix's version of its class. */
function worker(version, mix, entry) {
  const options = gatewayOptions({ scriptPath: scripts[version], bindings: benchBindings(), compat: compat[version] });
  const durableObjects = Object.fromEntries(Object.entries(CLASSES).map(([binding, className]) => [binding, { className, scriptName: mix[binding] ?? 'new', useSQLite: true }]));
  return { ...options, name: version, durableObjects, unsafeDirectSockets: entry ? options.unsafeDirectSockets : undefined };
}

const readme = readFileSync(path.join(oldTree, 'README.md'), 'utf8');
// What REV documents: its README, and its OpenAPI (the route schemas the reference is built from).
const schemas = path.join(oldTree, 'worker/schemas');
const documented = readme + readdirSync(schemas).map((f) => readFileSync(path.join(schemas, f), 'utf8')).join('\n');
function block(name) {
  const found = new RegExp(`<!-- ${name}:start -->\\s*\`\`\`bash\\n([\\s\\S]*?)\`\`\`\\s*<!-- ${name}:end -->`).exec(readme);
  return found?.[1];
}
/** What each block's output must hold, whichever version answered: each step did its work. */
const EXPECT = {
  walkthrough: [/"topic":"refunds"/, /idempotent-replayed: true/i, /"status":"cancelled"/, /"code":"already_finished"/, /"code":"version_mismatch"/, /"customer":\{"name":"Ada","tier":"gold"\}/, /"object":"chat\.completion"/, /data: \[DONE\]/, /"eventType":"execution\.succeeded","status":"delivered"/, /"intent":"review"/, /event: execution\.succeeded/],
  operator: [/"code":"unauthorized"/],
  limits: [/"concurrency":4/, /"action":"key\.update"/],
  transactions: [/"status":"committed"/, /"reason":"guard_failed"/, /"balance":30/],
};

/** Runs `source` with bash in the run's directory; not spawnSync: the alternating proxy runs in this process. */
function bash(source, env) {
  const child = spawn('bash', ['-euo', 'pipefail', '-c', source], { cwd: work, env: { ...process.env, ...env } });
  const run = { stdout: '', stderr: '', status: null };
  child.stdout.on('data', (d) => { run.stdout += d; });
  child.stderr.on('data', (d) => { run.stderr += d; });
  const timer = setTimeout(() => child.kill(), 60_000);
  return new Promise((resolve) => child.on('close', (code) => {
    clearTimeout(timer);
    resolve({ ...run, status: code });
  }));
}

/** A local HTTP server that sends each request to the next of `bases` in turn, streaming both ways. */
async function alternate(bases) {
  let next = 0;
  const server = createServer((req, res) => {
    const target = new URL(req.url ?? '/', bases[next++ % bases.length]);
    const upstream = httpRequest(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

async function runMix(name) {
  const mix = MIXES[name];
  const edges = mix.edge === 'both' ? ['old', 'new'] : [mix.edge];
  const workers = ['old', 'new'].map((version) => worker(version, mix, edges.includes(version)));
  const mf = new Miniflare({ workers });
  let proxy;
  try {
    await mf.ready;
    const direct = await Promise.all(edges.map(async (version) => (await mf.unsafeGetDirectURL(version)).toString().replace(/\/$/, '')));
    proxy = direct.length > 1 ? await alternate(direct) : undefined;
    const base = proxy?.base ?? direct[0];
    await applyMigrations(mf);
    const admin = { 'content-type': 'application/json', authorization: `Bearer ${BENCH_ADMIN_TOKEN}` };
    const tenant = await (await fetch(`${base}/v1/admin/tenants`, { method: 'POST', headers: admin, body: '{}' })).json();
    const { key } = await (await fetch(`${base}/v1/admin/tenants/${tenant.id}/keys`, { method: 'POST', headers: admin, body: '{}' })).json();
    const problems = [];
    for (const [blockName, expected] of Object.entries(EXPECT)) {
      const source = block(blockName);
      if (!source) continue; // REV's README may predate the block
      console.error(`[rollout] ${name}: README ${blockName} block`);
      const run = await bash(source, { BASE: base, KEY: key });
      const missing = expected.filter((pattern) => !pattern.test(run.stdout));
      if (run.status !== 0 || run.stderr || missing.length) {
        problems.push(`${blockName}: exit ${run.status}${run.stderr ? `, stderr ${run.stderr.trim().slice(0, 400)}` : ''}${missing.length ? `, missing ${missing.join(' ')}` : ''}\n    last output: ${run.stdout.trim().split('\n').slice(-3).join(' | ').slice(0, 600)}`);
      }
    }
    problems.push(...(await faces(base, key)));
    console.error(`[rollout] ${name}: the other checks`);
    problems.push(...(await extraChecks({ base, edges: direct, readme: documented, tenant: tenant.id, adminToken: BENCH_ADMIN_TOKEN, upstream, run: mixes.indexOf(name) })));
    return problems;
  } finally {
    proxy?.close();
    await mf.dispose();
  }
}

/** The faces not in the README blocks: a chat through an agent, MCP's execute_intent, an A2A send. */
async function faces(base, key) {
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };
  const problems = [];
  const post = async (url, body, extra = {}) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await fetch(`${base}${url}`, { method: 'POST', headers: { ...headers, ...extra }, body: JSON.stringify(body) });
        return { status: res.status, body: await res.text() };
      } catch (error) {
        // A kept-alive connection the runtime closed meanwhile: once more on a new one.
        if (attempt === 2) return { status: 0, body: String(error.cause ?? error) };
      }
    }
  };
  await post('/v1/agents', { id: 'faces' });
  const chat = await post('/v1/chat/completions', { model: 'agent:faces', messages: [{ role: 'user', content: 'How do refunds work?' }] });
  if (chat.status !== 200 || !chat.body.includes('"chat.completion"')) problems.push(`chat through an agent: ${chat.status} ${chat.body.slice(0, 300)}`);
  const mcpHeaders = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };
  const mcp = await post('/mcp', { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'execute_intent', arguments: { agentId: 'faces', intent: 'support.reply', input: { message: 'Where is my order?' }, wait: true } } }, mcpHeaders);
  if (mcp.status !== 200 || !mcp.body.includes('succeeded')) problems.push(`MCP execute_intent: ${mcp.status} ${mcp.body.slice(0, 300)}`);
  const a2a = await post('/a2a/faces/', { jsonrpc: '2.0', id: 1, method: 'SendMessage', params: { message: { messageId: 'm-1', role: 'ROLE_USER', parts: [{ text: 'How do refunds work?' }] } } }, { 'a2a-version': '1.0' });
  if (a2a.status !== 200 || !/TASK_STATE_COMPLETED|"completed"/.test(a2a.body)) problems.push(`A2A SendMessage: ${a2a.status} ${a2a.body.slice(0, 300)}`);
  const gone = await fetch(`${base}/v1/agents/faces`, { method: 'DELETE', headers });
  if (gone.status !== 204) problems.push(`DELETE agent: ${gone.status}`);
  return problems;
}

// One upstream (a pool's targets, a webhook's receiver) for every split.
const upstream = await startUpstream();
let failed = 0;
const began = Date.now();
for (const name of mixes) {
  const started = Date.now();
  const problems = await runMix(name);
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  console.log(`${problems.length ? 'FAIL' : 'ok  '} ${name} (${seconds} s)${problems.map((p) => `\n  - ${p}`).join('')}`);
  if (problems.length) failed++;
}
upstream.close();
console.log(`rollout from ${rev}: ${mixes.length - failed}/${mixes.length} mixes ran every check (${((Date.now() - began) / 1000).toFixed(0)} s)`);
process.exit(failed ? 1 : 0);
