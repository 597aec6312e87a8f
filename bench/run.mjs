#!/usr/bin/env node
// `npm run bench`: first-cut benchmark of the spine. Starts the gateway with `npm run dev`'s
// script on a free port and a fresh state directory, creates 100 agents, then measures with
// autocannon in one run against the same server:
//   healthz      GET /healthz (the baseline: router only, no auth, no storage)
//   chat-mock-direct            POST /v1/chat/completions on the mock upstream itself
//   chat-via-gateway-2-targets  the same through the gateway and a two-target pool
//   get-agent-100  GET /v1/agents/:id over 100 agents: auth, routing and a read-only RPC
//   sync-100     POST /v1/agents/:id/executions, sync, builtin upstream, rotating over 100 agents
//   patch-context-100  PATCH /v1/agents/:id/context (one single-agent write), rotating over 100 agents
//   tx-2 / tx-5  POST /v1/transactions over disjoint groups of 2 / 5 agents (an increment each),
//                rotating over the groups; a 409 (agent_locked when two requests meet on a group)
//                is counted, not an error: the committed rate is the 2xx rate
// Results print as a markdown table and land in bench/results/latest.json.
// Note: `wrangler dev` puts its own proxy in front of the Worker and caps a hello world near
// 1,400 req/s on a 2-core machine, so these figures measure wrangler as much as the gateway.
//
// Options: --duration S (default 10), --connections N (default 32), --agents N (default 100).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { startMockUpstream } from '../test/support/mock-upstream.mjs';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
    agents: { type: 'string', default: '100' },
  },
});
const duration = Number(values.duration);
const connections = Number(values.connections);
const agentCount = Number(values.agents);
const root = path.resolve(import.meta.dirname, '..');

const port = await new Promise((resolve) => {
  const server = createServer().listen(0, '127.0.0.1', () => {
    const { port } = server.address();
    server.close(() => resolve(port));
  });
});
const stateDir = mkdtempSync(path.join(tmpdir(), 'eag-bench-'));
const base = `http://127.0.0.1:${port}`;
const dev = spawn('node', ['scripts/dev.mjs', '--port', String(port), '--persist-to', stateDir, '--quiet'], {
  cwd: root,
  detached: true,
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
});
const stop = () => {
  try { process.kill(-dev.pid, 'SIGTERM'); } catch { /* gone */ }
  rmSync(stateDir, { recursive: true, force: true });
};
process.on('exit', stop);

await new Promise((resolve, reject) => {
  let out = '';
  dev.stdout.on('data', (chunk) => {
    out += chunk;
    if (out.includes('demo API key:')) resolve();
  });
  dev.on('exit', (code) => reject(new Error(`dev server exited ${code}`)));
});
const key = /^DEMO_API_KEY=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))[1];
const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };

const mock = await startMockUpstream();
const pool = {
  strategy: 'least-inflight',
  targets: ['a', 'b'].map((id) => ({ id, kind: 'openai-chat', baseUrl: `${mock.url}/t/${id}/ok/v1`, model: 'mock-model' })),
};
const poolRes = await fetch(`${base}/v1/pools/bench`, { method: 'PUT', headers, body: JSON.stringify(pool) });
if (!poolRes.ok) throw new Error(`creating the pool: ${poolRes.status} ${await poolRes.text()}`);

const agents = Array.from({ length: agentCount }, (_, i) => `bench-${i}`);
for (const id of agents) {
  const res = await fetch(`${base}/v1/agents`, { method: 'POST', headers, body: JSON.stringify({ id, concurrency: 32 }) });
  if (res.status !== 201) throw new Error(`creating ${id}: ${res.status} ${await res.text()}`);
}

function run(title, options) {
  return new Promise((resolve, reject) => {
    autocannon({ url: options.url ?? base, connections, duration, ...options }, (error, result) => (error ? reject(error) : resolve({ title, result })));
  });
}

const chatBody = JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: 'How do refunds work?' }] });
/** Disjoint groups of `size` agents, and a transaction body per group that increments each. */
function transactionBodies(size) {
  const bodies = [];
  for (let i = 0; i + size <= agents.length; i += size) {
    const operations = agents.slice(i, i + size).map((agentId) => ({ agentId, increment: { n: 1 } }));
    bodies.push(JSON.stringify({ operations }));
  }
  return bodies;
}
const tx2 = transactionBodies(2);
const tx5 = transactionBodies(5);

const executionBody = JSON.stringify({ intent: 'support.reply', input: { message: 'How do refunds work?' } });
let next = 0;
const scenarios = [
  ['healthz', { requests: [{ method: 'GET', path: '/healthz' }] }],
  ['chat-mock-direct', { url: mock.url, requests: [{ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chatBody }] }],
  ['chat-via-gateway-2-targets', { requests: [{ method: 'POST', path: '/v1/chat/completions', headers, body: chatBody.replace('"mock-model"', '"bench"') }] }],
  [
    `get-agent-${agentCount}`,
    {
      requests: [{
        method: 'GET',
        headers,
        setupRequest: (req) => ({ ...req, path: `/v1/agents/${agents[next++ % agents.length]}` }),
      }],
    },
  ],
  [
    `sync-${agentCount}`,
    {
      requests: [{
        method: 'POST',
        headers,
        body: executionBody,
        setupRequest: (req) => ({ ...req, path: `/v1/agents/${agents[next++ % agents.length]}/executions` }),
      }],
    },
  ],
  [
    `patch-context-${agentCount}`,
    {
      requests: [{
        method: 'PATCH',
        headers,
        body: JSON.stringify({ n: 1 }),
        setupRequest: (req) => ({ ...req, path: `/v1/agents/${agents[next++ % agents.length]}/context` }),
      }],
    },
  ],
  ['tx-2', { requests: [{ method: 'POST', path: '/v1/transactions', headers, setupRequest: (req) => ({ ...req, body: tx2[next++ % tx2.length] }) }] }],
  ['tx-5', { requests: [{ method: 'POST', path: '/v1/transactions', headers, setupRequest: (req) => ({ ...req, body: tx5[next++ % tx5.length] }) }] }],
];
/** Scenarios where a 409 is contention between concurrent requests, an expected answer. */
const conflictsExpected = new Set(['tx-2', 'tx-5']);

// Warm-up: both paths once for a few seconds so isolates and objects are hot.
for (const [, options] of scenarios) await new Promise((r) => autocannon({ url: options.url ?? base, connections: 8, duration: 2, ...options }, r));

const results = [];
for (const [title, options] of scenarios) {
  const { result } = await run(title, options);
  results.push({
    scenario: title,
    rps: Math.round(result.requests.average),
    ok2xx: Math.round(result['2xx'] / duration),
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    total: result.requests.total,
  });
}
const baseline = results[0].rps;
const direct = results.find((r) => r.scenario === 'chat-mock-direct');
const viaGateway = results.find((r) => r.scenario === 'chat-via-gateway-2-targets');
console.log(`\nserver: wrangler dev (npm run dev), ${connections} connections, ${duration} s per scenario, ${agentCount} agents\n`);
console.log('| scenario | req/s | 2xx/s | vs healthz | p50 ms | p99 ms | non-2xx | errors |');
console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const r of results) {
  console.log(`| ${r.scenario} | ${r.rps} | ${r.ok2xx} | ${(r.rps / baseline).toFixed(2)} | ${r.p50} | ${r.p99} | ${r.non2xx} | ${r.errors} |`);
}
console.log(`\nchat through the gateway: ${(viaGateway.rps / direct.rps).toFixed(2)} of the mock called directly; added latency p50 ${viaGateway.p50 - direct.p50} ms, p99 ${viaGateway.p99 - direct.p99} ms`);
await mock.close();
writeFileSync(path.join(root, 'bench/results/latest.json'), JSON.stringify({ at: new Date().toISOString(), connections, duration, agents: agentCount, results }, null, 2));
stop();
process.exit(results.some((r) => (r.non2xx > 0 && !conflictsExpected.has(r.scenario)) || r.errors > 0) ? 1 : 0);
