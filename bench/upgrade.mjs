#!/usr/bin/env node
// `node bench/upgrade.mjs REV [--port N]`: an operator's upgrade, release REV to the working
// tree, over one local state. REV's `npm run dev` (a `git archive` of it, sharing this tree's
// node_modules and .dev.vars, so sealed secrets open under both) is given a tenant, a plain and
// a limited key, a pool with a sealed upstream key, an incoming hook, an outgoing webhook,
// agents with executions finished, running and queued, idempotency keys and a transaction; it
// is stopped with that work in flight and this tree's `npm run dev` starts over the same
// `--persist-to` directory (its D1 migrations, then every object's own, run forward). Each
// check then says what still reads and works. Not in CI: it runs two builds (a minute or two).
// The upstream is a local HTTP server that answers only the sealed key.
import { spawn, spawnSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { port: { type: 'string', default: '8868' } } });
const [rev] = positionals;
if (!rev) {
  console.error('usage: node bench/upgrade.mjs REV [--port N]   (REV: the release upgraded from, e.g. a commit of main)');
  process.exit(2);
}
const root = path.resolve(import.meta.dirname, '..');
if (!existsSync(path.join(root, '.dev.vars'))) {
  console.error('bench/upgrade: run `npm run dev` here once first (it creates .dev.vars, which both builds use)');
  process.exit(2);
}
const port = Number(values.port);
const BASE = `http://127.0.0.1:${port}`;
const work = mkdtempSync(path.join(os.tmpdir(), 'eag-upgrade-'));
const oldTree = path.join(work, 'old');
const state = path.join(work, 'state');
spawnSync('mkdir', ['-p', oldTree]);
const archived = spawnSync('sh', ['-c', `git -C "${root}" archive "${rev}" | tar -x -C "${oldTree}"`], { stdio: 'inherit' });
if (archived.status !== 0) process.exit(1);
symlinkSync(path.join(root, 'node_modules'), path.join(oldTree, 'node_modules'));
copyFileSync(path.join(root, '.dev.vars'), path.join(oldTree, '.dev.vars'));
const vars = Object.fromEntries(spawnSync('cat', [path.join(root, '.dev.vars')], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));

const UPSTREAM_KEY = `sk-${randomBytes(8).toString('hex')}`;
const upstream = createServer((req, res) => {
  req.resume().on('end', () => {
    if (req.url?.startsWith('/hook')) return void res.writeHead(503).end();
    if (req.headers.authorization !== `Bearer ${UPSTREAM_KEY}`) return void res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"bad key"}}');
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'm1', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'pong' } }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
  });
});
await new Promise((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const upstreamUrl = `http://127.0.0.1:${upstream.address().port}`;

/** Starts `npm run dev` in `dir` in its own process group; resolves once it printed its banner. */
function dev(dir) {
  const child = spawn('npm', ['run', 'dev', '--', '--port', String(port), '--persist-to', state], { cwd: dir, detached: true, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`npm run dev in ${dir} did not start:\n${out}`)), 120_000);
    const read = (d) => {
      out += d;
      if (/demo API key/.test(out)) {
        clearTimeout(timer);
        resolve(child);
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => reject(new Error(`npm run dev in ${dir} exited ${code}:\n${out}`)));
  });
}
const stop = async (child) => {
  child.removeAllListeners('exit');
  process.kill(-child.pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 2000));
};

async function call(method, url, { auth, body, headers = {} } = {}) {
  const res = await fetch(`${BASE}${url}`, {
    method,
    headers: { ...(auth && { authorization: `Bearer ${auth}` }), ...(body !== undefined && { 'content-type': headers['content-type'] ?? 'application/json' }), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: json ?? text };
}

const ADMIN = vars.ADMIN_TOKEN;
const old = await dev(oldTree);
const tenant = (await call('POST', '/v1/admin/tenants', { auth: ADMIN, body: { name: 'Upgrade' } })).body.id;
const plain = (await call('POST', `/v1/admin/tenants/${tenant}/keys`, { auth: ADMIN, body: { name: 'plain' } })).body;
const limited = (await call('POST', `/v1/admin/tenants/${tenant}/keys`, { auth: ADMIN, body: { name: 'limited', limits: { perMinute: 600, concurrency: 4, budget: { requests: 1000, tokens: 200000, period: 'month' } } } })).body;
const K = plain.key;
const L = limited.key;
const secret = `whsec_${randomBytes(32).toString('base64')}`;
const target = { kind: 'openai-chat', baseUrl: `${upstreamUrl}/v1`, model: 'm1', apiKey: UPSTREAM_KEY };
await call('PUT', '/v1/pools/p1', { auth: K, body: { targets: [{ id: 't1', ...target }] } });
for (const id of ['bot', 'wallet-a', 'wallet-b', 'reviewer']) await call('POST', '/v1/agents', { auth: K, body: { id } });
await call('POST', '/v1/agents', { auth: K, body: { id: 'llm', upstream: target } });
const first = await call('POST', '/v1/agents/bot/executions', { auth: K, headers: { 'idempotency-key': 'k-1' }, body: { intent: 'support.reply', input: { message: 'hi' } } });
await call('PUT', '/v1/hooks/hook-upgrade-1', { auth: L, body: { agentId: 'reviewer', intent: 'review', scheme: 'standard', secret } });
await call('POST', '/v1/agents/bot/webhooks', { auth: K, body: { url: `${upstreamUrl}/hook`, events: ['execution.succeeded'], secret } });
await call('PATCH', '/v1/agents/wallet-a/context', { auth: K, headers: { 'content-type': 'application/merge-patch+json' }, body: { balance: 100 } });
const transfer = { operations: [{ agentId: 'wallet-a', increment: { balance: -30 }, min: { balance: 0 } }, { agentId: 'wallet-b', increment: { balance: 30 } }] };
const tx = await call('POST', '/v1/transactions', { auth: K, headers: { 'idempotency-key': 'tx-1' }, body: transfer });
const inFlight = [];
for (const input of [{ message: 'slow', simulateLatencyMs: 3000 }, { message: 'queued 1' }, { message: 'queued 2' }]) {
  inFlight.push((await call('POST', '/v1/agents/bot/executions', { auth: K, body: { intent: 'support.reply', input, mode: 'async' } })).body.id);
}
await stop(old);

const current = await dev(root);
const results = [];
const check = async (name, run) => {
  try {
    const problem = await run();
    results.push([name, problem ?? null]);
  } catch (error) {
    results.push([name, String(error)]);
  }
};
const expectStatus = (res, status, what = '') => (res.status === status ? null : `${res.status} ${JSON.stringify(res.body).slice(0, 300)}${what}`);
await check('plain key authenticates', async () => expectStatus(await call('GET', '/v1/agents', { auth: K }), 200));
await check('limited key: usage kept', async () => {
  const res = await call('GET', '/v1/usage', { auth: L });
  return expectStatus(res, 200) ?? (res.body.limits?.concurrency === 4 ? null : JSON.stringify(res.body));
});
await check('pool serves, its sealed key opens', async () => expectStatus(await call('POST', '/v1/chat/completions', { auth: L, body: { model: 'p1', messages: [{ role: 'user', content: 'ping' }] } }), 200));
await check('agent with a sealed upstream key runs', async () => expectStatus(await call('POST', '/v1/agents/llm/executions', { auth: K, body: { intent: 'chat', input: { message: 'hi' } } }), 200));
await check('idempotency key replays the first execution', async () => {
  const res = await call('POST', '/v1/agents/bot/executions', { auth: K, headers: { 'idempotency-key': 'k-1' }, body: { intent: 'support.reply', input: { message: 'hi' } } });
  return expectStatus(res, 200) ?? (res.body.id === first.body.id ? null : `a new execution ${res.body.id}`);
});
await check('transaction reads and replays', async () => {
  const got = await call('GET', `/v1/transactions/${tx.body.id}`, { auth: K });
  const replay = await call('POST', '/v1/transactions', { auth: K, headers: { 'idempotency-key': 'tx-1' }, body: transfer });
  return expectStatus(got, 200) ?? (replay.body.id === tx.body.id && replay.body.status === tx.body.status ? null : JSON.stringify(replay.body));
});
await check('a new transaction commits', async () => {
  const res = await call('POST', '/v1/transactions', { auth: K, body: transfer });
  return res.body?.status === 'committed' ? null : JSON.stringify(res.body);
});
await check('in-flight executions finish', async () => {
  for (let i = 0; i < 30; i++) {
    const states = await Promise.all(inFlight.map(async (id) => (await call('GET', `/v1/agents/bot/executions/${id}`, { auth: K })).body.status));
    if (states.every((s) => ['succeeded', 'failed', 'cancelled'].includes(s))) return states.includes('succeeded') ? null : `ended ${states}`;
    await new Promise((r) => setTimeout(r, 1000));
  }
  return 'still not finished after 30 s';
});
await check('hook keeps its key and starts work', async () => {
  const list = await call('GET', '/v1/hooks', { auth: K });
  if (list.body.data?.[0]?.keyId !== limited.id) return `keyId ${JSON.stringify(list.body.data?.[0])}`;
  const id = `msg_${Date.now()}`;
  const ts = Math.floor(Date.now() / 1000);
  const payload = JSON.stringify({ hello: 'after upgrade' });
  const signature = createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${id}.${ts}.${payload}`).digest('base64');
  return expectStatus(await call('POST', '/v1/hooks/hook-upgrade-1', { body: payload, headers: { 'webhook-id': id, 'webhook-timestamp': String(ts), 'webhook-signature': `v1,${signature}` } }), 202);
});
await check('outgoing webhook and its deliveries', async () => {
  const hooks = await call('GET', '/v1/agents/bot/webhooks', { auth: K });
  return expectStatus(hooks, 200) ?? (hooks.body.data.length === 1 ? null : JSON.stringify(hooks.body));
});
await check('audit log reads', async () => expectStatus(await call('GET', '/v1/audit', { auth: K }), 200));
await stop(current);
upstream.close();
rmSync(work, { recursive: true, force: true });

let failed = 0;
for (const [name, problem] of results) {
  console.log(`${problem ? 'FAIL' : 'ok  '} ${name}${problem ? `: ${problem}` : ''}`);
  if (problem) failed++;
}
console.log(`upgrade from ${rev}: ${results.length - failed}/${results.length} checks passed`);
process.exit(failed ? 1 : 0);
