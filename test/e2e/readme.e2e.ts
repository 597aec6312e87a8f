import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { hc } from 'hono/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppType } from '../../worker/app';
import { root, startDevServer, type DevServer } from './dev-server';


/** The bash block between `<!-- name:start -->` and `<!-- name:end -->` in the README. */
function readmeBlock(name: string): string {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const block = new RegExp(`<!-- ${name}:start -->\\s*\`\`\`bash\\n([\\s\\S]*?)\`\`\`\\s*<!-- ${name}:end -->`).exec(readme);
  if (!block?.[1]) throw new Error(`README has no ${name} block`);
  return block[1];
}

/** The README's fenced block in `lang` that holds `marker` (its examples outside the runnable blocks). */
function readmeSnippet(lang: string, marker: string): string {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  for (const block of readme.matchAll(new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``, 'g'))) {
    if (block[1]?.includes(marker)) return block[1];
  }
  throw new Error(`README has no ${lang} block with ${marker}`);
}

/** Runs an ES module's source with Node in the repository, whose packages its imports find. */
function runModule(source: string, env: Record<string, string>) {
  return spawnSync('node', ['--input-type=module'], { cwd: root, input: source, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });
}

function runBlock(name: string, env: Record<string, string>) {
  return spawnSync('bash', ['-euo', 'pipefail', '-c', readmeBlock(name)], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
}

describe('README quickstart, end to end against `npm run dev`', () => {
  let server: DevServer;
  let base: string;

  beforeAll(async () => {
    server = await startDevServer('eag-e2e-');
    base = server.base;
  });

  afterAll(() => server?.stop());

  it('prints a working demo key', async () => {
    const key = server.key;
    const res = await fetch(`${base}/v1/agents`, { headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(200);
  });

  it('runs every command of the README walk-through as written', () => {
    const key = server.key;
    const run = runBlock('walkthrough', { BASE: base, KEY: key });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const out = run.stdout;
    expect(out).toContain('"topic":"refunds"');
    expect(out).toMatch(/idempotent-replayed: true/i);
    expect(out).toContain('"status":"cancelled"');
    expect(out).toContain('"code":"already_finished"');
    // Both execution lists (?limit=5 and ?status=cancelled) show the cancelled one, newest first:
    // they read D1, which follows the agent about a second behind, and the walk-through asked
    // before D1 had it (both printed without it, the second an empty list).
    const listedFirst = /\{"data":\[\{"id":"ex_\w+","agentId":"support-bot","intent":"support\.reply","input":\{"message":"hello","simulateLatencyMs":20000\},"status":"cancelled"/g;
    expect(out.match(listedFirst)).toHaveLength(2);
    expect(out).toContain('"code":"version_mismatch"');
    expect(out).toContain('"customer":{"name":"Ada","tier":"gold"}');
    expect(out).toMatch(/"object":"chat\.completion".*Standard shipping/);
    expect(out).toContain('data: [DONE]');
    expect(out).toMatch(/"eventType":"execution\.succeeded","status":"delivered"/);
    expect(out).toMatch(/"intent":"review","input":\{"hook":"support-results","scheme":"standard"/);
    expect(out).toMatch(/event: execution\.succeeded/);
    expect(out).toContain('{"object":"list","data":[{"id":"faq","object":"model"');
  });

  it("runs the Stats example: none right after the walk-through, which deleted its agents", () => {
    const line = readmeSnippet('bash', '/v1/stats?windowMinutes=15').split('\n').find((l) => l.startsWith('curl '));
    expect(line).toBeDefined();
    const run = spawnSync('bash', ['-euo', 'pipefail', '-c', line ?? ''], { cwd: root, env: { ...process.env, BASE: base, KEY: server.key }, encoding: 'utf8', timeout: 30_000 });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toEqual({ windowMinutes: 15, executions: {}, latencyMs: { p50: null, p99: null, samples: 0 }, upstreams: [] });
  });

  it("runs the OpenAI, MCP and A2A client examples as written, against the README's pool and agent (the port aside)", async () => {
    const headers = { authorization: `Bearer ${server.key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/v1/pools/faq`, { method: 'PUT', headers, body: JSON.stringify({ targets: [{ id: 'local', kind: 'builtin' }] }) })).status).toBe(201);
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers, body: JSON.stringify({ id: 'support-bot' }) })).status).toBe(201);
    const local = (source: string) => source.replaceAll('http://127.0.0.1:8787', base).replaceAll('https://gateway.example', base);
    try {
      const openai = runModule(`${local(readmeSnippet('js', "from 'openai'"))}\nconsole.log(JSON.stringify(answer));`, { KEY: server.key });
      expect(openai.stderr).toBe('');
      expect(JSON.parse(openai.stdout)).toMatchObject({ object: 'chat.completion', choices: [{ message: { role: 'assistant', content: expect.stringMatching(/^Hello!/) } }] });

      const mcp = runModule(`${local(readmeSnippet('js', 'StreamableHTTPClientTransport'))}\nconsole.log(JSON.stringify(run.structuredContent));\nawait client.close();`, { KEY: server.key });
      expect(mcp.stderr).toBe('');
      expect(JSON.parse(mcp.stdout)).toMatchObject({ agentId: 'support-bot', intent: 'support.reply', status: 'succeeded', output: { topic: 'orders' } });

      // TypeScript: its types taken out as a build would, then run.
      const ts = createRequire(import.meta.url)('typescript') as { transpileModule(source: string, options: { compilerOptions: Record<string, unknown> }): { outputText: string } };
      const a2aSource = ts.transpileModule(local(readmeSnippet('ts', '@a2a-js/sdk/client')), { compilerOptions: { module: 99, target: 9 } }).outputText;
      const a2a = runModule([
        a2aSource,
        "const { SendMessageRequest } = await import('@a2a-js/sdk');",
        "const task = await client.sendMessage(SendMessageRequest.fromJSON({ message: { messageId: 'readme-1', role: 'ROLE_USER', parts: [{ text: 'How do refunds work?' }] } }));",
        'console.log(JSON.stringify({ interfaces: (await client.getAgentCard()).supportedInterfaces, task: task.id }));',
      ].join('\n'), { GATEWAY_KEY: server.key });
      expect(a2a.stderr).toBe('');
      expect(JSON.parse(a2a.stdout)).toEqual({
        interfaces: [expect.objectContaining({ url: `${base}/a2a/support-bot/`, protocolBinding: 'JSONRPC' })],
        task: expect.stringMatching(/^ex_/),
      });
    } finally {
      expect((await fetch(`${base}/v1/agents/support-bot`, { method: 'DELETE', headers })).status).toBe(204);
      expect((await fetch(`${base}/v1/pools/faq`, { method: 'DELETE', headers })).status).toBe(204);
    }
  });

  it("runs docs/A2A.md's conformance agent example: the agent the suite drives, its card public", async () => {
    const doc = readFileSync(path.join(root, 'docs', 'A2A.md'), 'utf8');
    const create = /^curl -s localhost:8787\/v1\/agents[^\n]*\\\n[^\n]*\n/m.exec(doc)?.[0];
    expect(create).toBeDefined();
    const run = spawnSync('bash', ['-euo', 'pipefail', '-c', (create ?? '').replaceAll('localhost:8787', base.replace('http://', ''))], { cwd: root, env: { ...process.env, KEY: server.key }, encoding: 'utf8', timeout: 30_000 });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)).toMatchObject({ id: 'tck', upstream: { kind: 'builtin', mode: 'a2a-conformance' }, concurrency: 8 });
    // The suite reads the card without a key, from <sut-host>/.well-known/agent-card.json.
    const card = await fetch(`${base}/a2a/tck/.well-known/agent-card.json`, { headers: { 'a2a-version': '1.0' } });
    expect(card.status).toBe(200);
    expect(((await card.json()) as { supportedInterfaces: { url: string }[] }).supportedInterfaces[0]?.url).toBe(`${base}/a2a/tck/`);
    expect((await fetch(`${base}/v1/agents/tck`, { method: 'DELETE', headers: { authorization: `Bearer ${server.key}` } })).status).toBe(204);
  });

  it('runs the operator block: tenant, its reading and the tenant list, key, listing, revocation', () => {
    const run = runBlock('operator', { BASE: base });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const lines = run.stdout.trim().split('\n');
    const tenant = JSON.parse(lines[0] ?? '');
    expect(tenant).toMatchObject({ id: expect.stringMatching(/^tn_/), name: 'Acme' });
    const tenants = JSON.parse(lines[1] ?? '');
    expect(tenants.data.map((t: { id: string }) => t.id)).toContain(tenant.id);
    expect(JSON.parse(lines[2] ?? '')).toEqual({ data: [], nextCursor: null });
    expect(JSON.parse(lines[3] ?? '').data).toHaveLength(1);
    expect(JSON.parse(lines[4] ?? '').error.code).toBe('unauthorized');
  });

  it('runs the limits block: a limited key, its PATCH, its usage and the audit log', () => {
    const run = runBlock('limits', { BASE: base });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const [patched, usage, adminAudit, ownAudit] = run.stdout.trim().split('\n').map((line) => JSON.parse(line));
    expect(patched.limits).toEqual({ perSecond: 50, perMinute: 600, concurrency: 4, budget: { requests: 10000, period: 'month' } });
    expect(usage).toMatchObject({ limits: patched.limits, inFlight: 0, budget: { period: 'month', requests: 0 } });
    expect(adminAudit.data.map((e: { action: string }) => e.action)).toEqual(['key.update']);
    expect(ownAudit.data.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['key.update', 'key.create']));
    expect(ownAudit.data[0].action).toBe('key.update');
  });

  it('serves an OpenAPI 3.1 document that a real validator accepts', async () => {
    const { Validator } = await import('@seriousme/openapi-schema-validator');
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as Record<string, unknown>;
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('runs the transactions block: a committed transfer, a guarded abort, the record', () => {
    const key = server.key;
    const run = runBlock('transactions', { BASE: base, KEY: key });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const out = run.stdout;
    expect(out).toMatch(/"status":"committed","versions":\{"wallet-a":2,"wallet-b":1\}/);
    expect(out).toContain('"status":"aborted"');
    expect(out).toContain('"reason":"guard_failed"');
    expect(out).toContain('{"version":1,"data":{"lastTransfer":"transfer-7","balance":30}}');
  });

  it('drives the running gateway with the typed client of docs/CLIENT.md', async () => {
    const client = hc<AppType>(base, { headers: { authorization: `Bearer ${server.key}` } });
    const created = await client.v1.agents.$post({ json: { name: 'Typed e2e' } });
    expect(created.status).toBe(201);
    if (created.status !== 201) return;
    const agent = await created.json();
    const run = await client.v1.agents[':id'].executions.$post({ param: { id: agent.id }, header: { 'idempotency-key': 'order-42' }, json: { intent: 'support.reply', input: { message: 'Where is my order?' } } });
    expect(run.status).toBe(200);
    if (run.status === 200) expect((await run.json()).status).toBe('succeeded');
    const again = await client.v1.agents.$post({ json: { id: agent.id } });
    expect(again.status).toBe(409);
    if (again.status === 409) expect((await again.json()).error.code).toBe('conflict');
    expect((await client.v1.agents[':id'].$delete({ param: { id: agent.id } })).status).toBe(204);
  });

  it('runs the health probes on GET /__scheduled, as the README says (dev runs no cron)', async () => {
    const headers = { authorization: `Bearer ${server.key}`, 'content-type': 'application/json' };
    // Nothing listens on the discard port: its probe fails.
    const target = { id: 'nowhere', kind: 'agent-http', url: 'http://127.0.0.1:9/agent' };
    expect((await fetch(`${base}/v1/pools/probed`, { method: 'PUT', headers, body: JSON.stringify({ targets: [target] }) })).status).toBe(201);
    const run = await fetch(`${base}/__scheduled`);
    expect(run.status).toBe(200);
    let probe: { ok: boolean } | null = null;
    for (let i = 0; i < 50 && !probe; i++) {
      const pool = (await (await fetch(`${base}/v1/pools/probed`, { headers })).json()) as { targets: { health: { probe: { ok: boolean } | null } }[] };
      probe = pool.targets[0]?.health.probe ?? null;
      if (!probe) await new Promise((r) => setTimeout(r, 100));
    }
    expect(probe).toMatchObject({ ok: false });
    expect((await fetch(`${base}/v1/pools/probed`, { method: 'DELETE', headers })).status).toBe(204);
  });

  it('has deleted what the walk-through made: its agents and its incoming hook', async () => {
    const headers = { authorization: `Bearer ${server.key}` };
    for (const agent of ['support-bot', 'reviewer']) expect((await fetch(`${base}/v1/agents/${agent}`, { headers })).status).toBe(404);
    // A hook is the tenant's, not its agent's: left behind, it would start work on the next
    // agent named reviewer, for whoever knows its secret.
    expect(await (await fetch(`${base}/v1/hooks`, { headers })).json()).toEqual({ data: [], nextCursor: null });
  });
});

// A second `npm run dev` on a port already taken (the first one still running in another
// terminal, or anything else there) must say so and stop, not print a key as if it had started.
describe('README quickstart, on a port already taken', () => {
  it('stops with a message naming the port, before touching the database, and prints no key', async () => {
    // Answers /healthz as a gateway already running there would.
    const taken = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok'));
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    const stateDir = mkdtempSync(path.join(tmpdir(), 'eag-busy-'));
    try {
      const dev = spawn('node', ['scripts/dev.mjs', '--port', String(port), '--persist-to', stateDir], { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      dev.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
      dev.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
      const code = await new Promise<number | null>((resolve) => dev.on('exit', resolve));
      // It printed the banner and the demo key (the other server had answered its /healthz),
      // then wrangler failed to bind the port.
      expect(stdout).not.toContain('demo API key:');
      expect(stdout).not.toContain('is running on');
      expect(code).toBe(1);
      expect(stderr).toContain(`port ${port} on 127.0.0.1 is already in use`);
      expect(readdirSync(stateDir)).toEqual([]);
    } finally {
      taken.close();
      rmSync(stateDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('refuses a --port that is no port number, before touching the database', () => {
    const stateDir = mkdtempSync(path.join(tmpdir(), 'eag-badport-'));
    try {
      const run = spawnSync('node', ['scripts/dev.mjs', '--port', 'abc', '--persist-to', stateDir], { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' }, encoding: 'utf8', timeout: 60_000 });
      // It ran the migrations, then handed wrangler the port NaN, which failed with an internal error.
      expect(run.status).toBe(1);
      expect(run.stderr.trim()).toBe('npm run dev: --port must be a port number (1-65535), not "abc"');
      expect(readdirSync(stateDir)).toEqual([]);
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});

// .dev.vars made anew (deleted to get fresh secrets, say) next to a local database that kept its
// state: the demo key `npm run dev` prints is the new one, and it must be the one that works.
describe('README quickstart, a new .dev.vars over an old local database', () => {
  it('prints a demo key the gateway takes, not the one the database had before', async () => {
    const stateDir = mkdtempSync(path.join(tmpdir(), 'eag-rekey-'));
    const wrangler = (args: string[]) => {
      const run = spawnSync('node_modules/.bin/wrangler', [...args, '--local', '--persist-to', stateDir], { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' }, encoding: 'utf8', timeout: 120_000 });
      expect(run.status, run.stderr).toBe(0);
    };
    // What an earlier `npm run dev` left: the demo tenant, with the demo key of an older .dev.vars.
    wrangler(['d1', 'migrations', 'apply', 'edge-agent-gateway']);
    const older = createHash('sha256').update('eag_an-older-demo-key-from-a-deleted-dev-vars').digest('hex');
    wrangler(['d1', 'execute', 'edge-agent-gateway', '--command', `INSERT INTO tenants (id, name, created_at) VALUES ('demo', 'Demo tenant', 1); INSERT INTO api_keys (id, tenant_id, hash, prefix, name, created_at) VALUES ('key_demo', 'demo', '${older}', 'eag_an-older', 'demo key', 1);`]);
    const dev = await startDevServer('eag-rekey-', {}, stateDir);
    try {
      // It printed the key of .dev.vars, which the database did not know: every request 401.
      expect(dev.banner).toContain(`demo API key: ${dev.key}`);
      const res = await fetch(`${dev.base}/v1/agents`, { headers: { authorization: `Bearer ${dev.key}` } });
      expect(res.status).toBe(200);
    } finally {
      dev.stop();
    }
  }, 240_000);
});

// The same, when the older demo key had been revoked (DELETE /v1/admin/keys/key_demo): the new key
// took over the revoked row, so the key printed was refused as before.
describe('README quickstart, a new .dev.vars over a database whose demo key was revoked', () => {
  it('prints a demo key the gateway takes, not one revoked with the key it replaced', async () => {
    const stateDir = mkdtempSync(path.join(tmpdir(), 'eag-rekey-revoked-'));
    const wrangler = (args: string[]) => {
      const run = spawnSync('node_modules/.bin/wrangler', [...args, '--local', '--persist-to', stateDir], { cwd: root, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' }, encoding: 'utf8', timeout: 120_000 });
      expect(run.status, run.stderr).toBe(0);
    };
    wrangler(['d1', 'migrations', 'apply', 'edge-agent-gateway']);
    const older = createHash('sha256').update('eag_an-older-demo-key-revoked-then-dev-vars-deleted').digest('hex');
    wrangler(['d1', 'execute', 'edge-agent-gateway', '--command', `INSERT INTO tenants (id, name, created_at) VALUES ('demo', 'Demo tenant', 1); INSERT INTO api_keys (id, tenant_id, hash, prefix, name, created_at, revoked_at) VALUES ('key_demo', 'demo', '${older}', 'eag_an-older', 'demo key', 1, 2);`]);
    const dev = await startDevServer('eag-rekey-revoked-', {}, stateDir);
    try {
      expect(dev.banner).toContain(`demo API key: ${dev.key}`);
      expect((await fetch(`${dev.base}/v1/agents`, { headers: { authorization: `Bearer ${dev.key}` } })).status).toBe(200);
    } finally {
      dev.stop();
    }
  }, 240_000);
});

// The quickstart names the oldest Node it runs on; every package `npm ci` installs must run there
// (eslint and vite, which `npm test` and `npm run lint` load, need 20.19; undici, under wrangler, 20.18.1).
describe('README quickstart, the Node version it names', () => {
  it('is one every installed package, and package.json engines, accept', () => {
    const semver = createRequire(import.meta.url)('semver') as { satisfies(version: string, range: string): boolean; minVersion(range: string): { version: string } | null };
    const named = /needs nothing but Node (\d+(?:\.\d+)?)\+/.exec(readFileSync(path.join(root, 'README.md'), 'utf8'))?.[1];
    expect(named).toBeDefined();
    const oldest = semver.minVersion(`>=${named}`)?.version ?? '';
    const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(semver.minVersion(manifest.engines.node)?.version).toBe(oldest);
    const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string }; optional?: boolean }> };
    const refusing = Object.entries(lock.packages)
      .filter(([name, entry]) => name !== '' && !entry.optional && entry.engines?.node !== undefined && !semver.satisfies(oldest, entry.engines.node))
      .map(([name, entry]) => `${name} (${entry.engines?.node})`);
    expect(refusing).toEqual([]);
  });

  // Past 20: engines used to be >=20.19.0 and the README said 22.12+ on Node 22, while eslint
  // (npm run lint) takes ^22.13.0 || >=24 only: npm accepted a Node that a package refuses.
  it('accepts exactly the Node versions every installed package accepts, and the README names them', () => {
    const semver = createRequire(import.meta.url)('semver') as { satisfies(version: string, range: string): boolean };
    const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { engines: { node: string } };
    const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { engines?: { node?: string }; optional?: boolean }> };
    const ranges = Object.entries(lock.packages).filter(([name, entry]) => name !== '' && !entry.optional && entry.engines?.node !== undefined).map(([, entry]) => entry.engines?.node ?? '');
    const probes = ['20.18.0', '20.19.0', '21.7.0', '22.11.0', '22.12.0', '22.13.0', '23.11.0', '24.0.0', '25.0.0'];
    const byPackages = probes.filter((version) => ranges.every((range) => semver.satisfies(version, range)));
    expect(probes.filter((version) => semver.satisfies(version, manifest.engines.node))).toEqual(byPackages);
    expect(lock.packages['']?.engines?.node).toBe(manifest.engines.node);
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const node22 = /\((\d+\.\d+)\+ on Node 22/.exec(readme)?.[1];
    expect(byPackages.find((version) => version.startsWith('22.'))).toBe(`${node22}.0`);
  });
});
