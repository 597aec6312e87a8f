import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { root, startDevServer, type DevServer } from './dev-server';

/** What the page's globals offer that these tests read (the DOM library is not loaded here). */
type PageStorage = { getItem(name: string): string | null };
/** An element as the layout checks read it. */
interface PageBox { id: string; scrollWidth: number; clientWidth: number; parentElement: PageBox; getClientRects(): { length: number } }
interface PageDocument { documentElement: PageBox; activeElement: PageBox | null; querySelectorAll(selector: string): Iterable<PageBox> }
interface PageGlobals { localStorage: PageStorage; sessionStorage: PageStorage; document: PageDocument }

// The dashboard (public/dashboard/, served by Workers static assets), driven in Debian's
// Chromium against `npm run dev`: paste the demo key, create an agent, run an execution and
// watch it go queued → running → succeeded on the live event stream. And the API reference
// page (/docs), rendered with nothing reachable but the gateway. One dev server and one browser
// for both pages, so the second costs seconds, not another start.

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOT = path.join(root, 'test-results', 'dashboard.png');

// CI installs Chromium (.ci/run) and fails without it; a developer machine without it skips
// this file with a note instead of failing the whole `npm test`.
const browserMissing = !existsSync(CHROMIUM) && !process.env.CI;
if (browserMissing) console.warn(`skipping the dashboard e2e test: ${CHROMIUM} is missing (apt-get install -y --no-install-recommends chromium)`);

describe.skipIf(browserMissing)('dashboard and API reference, end to end in Chromium against `npm run dev`', () => {
  let server: DevServer;
  let browser: Browser | undefined;
  let base: string;
  let key: string;
  // A page on a second origin (another port), listed in MCP_ALLOWED_ORIGINS, for the MCP CORS test.
  let pages: Server | undefined;
  let pageOrigin: string;

  beforeAll(async () => {
    pages = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>MCP client page</title>'));
    await new Promise<void>((resolve) => pages!.listen(0, '127.0.0.1', resolve));
    pageOrigin = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`);
    const [launched, started] = await Promise.all([
      chromium.launch({
        executablePath: CHROMIUM,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      }),
      startDevServer('eag-dash-', { MCP_ALLOWED_ORIGINS: pageOrigin }),
    ]);
    browser = launched;
    server = started;
    base = server.base;
    key = server.key;
  });

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    server?.stop();
    pages?.close();
  });

  /** A fresh page on the sign-in form, counting the API requests it sends (`sent.count`). */
  async function signInPage() {
    const context = await browser!.newContext();
    const page = await context.newPage();
    const sent = { count: 0 };
    page.on('request', (request) => { if (request.url().includes('/v1/')) sent.count += 1; });
    await page.goto(`${base}/dashboard/`);
    return { context, page, sent, field: page.getByLabel('API key') };
  }

  it('serves the dashboard as static assets next to the API', async () => {
    const redirect = await fetch(`${base}/dashboard`, { redirect: 'manual' });
    expect([301, 307, 308]).toContain(redirect.status);
    expect(redirect.headers.get('location')).toMatch(/\/dashboard\/$/);
    const page = await fetch(`${base}/dashboard/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await page.text()).toContain('data-testid="key-input"');
    const script = await fetch(`${base}/dashboard/app.js`);
    expect(script.headers.get('content-type')).toMatch(/javascript/);
    // The Worker serves them (run_worker_first), so they carry a request id like the API's answers.
    for (const answer of [redirect, page, script, await fetch(`${base}/vendor/scalar/standalone.js`)]) expect(answer.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    // The API still answers from the Worker, and the headers file is not served.
    expect((await fetch(`${base}/v1/agents`)).status).toBe(401);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/_headers`)).status).toBe(404);
  });

  it('creates an agent, runs an execution and shows it live, queued → running → succeeded', async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const pool = await fetch(`${base}/v1/pools/dash-pool`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ targets: [{ id: 'local', kind: 'builtin' }] }),
    });
    expect(pool.status).toBe(201);
    // An agent behind the pool runs once, so the pool's target has a recent latency to show.
    const pooled = await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-pooled', upstream: { kind: 'pool', pool: 'dash-pool' } }) });
    expect(pooled.status).toBe(201);
    const viaPool = await fetch(`${base}/v1/agents/dash-pooled/executions`, { method: 'POST', headers: auth, body: JSON.stringify({ intent: 'support.reply', input: { message: 'hi', simulateLatencyMs: 50 } }) });
    expect(viaPool.status).toBe(200);

    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    // Once the test takes the page offline, Chromium logs each failed poll as an error: those
    // are the test's doing (the page's own handling of them is checked below), nothing else is.
    let wentOffline = false; // never reset: Chromium may log a failure after coming back
    let deletedAgent = false;
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      if (wentOffline && message.text().includes('net::ERR_INTERNET_DISCONNECTED')) return;
      if (deletedAgent && message.text().includes('status of 404')) return;
      problems.push(`console: ${message.text()}`);
    });
    const foreign: string[] = [];
    page.on('request', (request) => { if (!request.url().startsWith(base) && !request.url().startsWith('data:')) foreign.push(request.url()); });

    const started = Date.now();
    await page.goto(`${base}/dashboard`);
    expect(page.url()).toBe(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.getByTestId('agent-form').waitFor();

    await page.getByLabel('New agent id (optional)').fill('dash-e2e');
    await page.getByTestId('agent-create').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-e2e"]').waitFor();
    await expect.poll(() => page.getByTestId('agent-name').textContent()).toBe('dash-e2e');
    await expect.poll(() => page.getByTestId('stream-state').textContent(), { timeout: 15_000 }).toBe('live');

    // The built-in responder thinks for a moment, so the running state is observable.
    await page.getByLabel('Input (JSON)').fill('{"message":"How do refunds work? <b>bold</b>","simulateLatencyMs":1500}');
    await page.getByTestId('run-submit').click();
    const row = page.locator('[data-testid="execution-row"]').first();
    await row.waitFor();
    await expect.poll(() => row.getAttribute('data-status'), { timeout: 20_000 }).toBe('succeeded');
    const executionId = await row.getAttribute('data-execution-id');
    expect(executionId).toBeTruthy();
    // Every transition came over the live event stream, in order.
    expect(await row.getAttribute('data-events')).toBe('queued,running,succeeded');
    expect(await row.getByTestId('execution-status').textContent()).toBe('succeeded');
    const liveMs = Date.now() - started;

    // The agent list shows the agent's state and counts (polled), and the pools panel its target.
    const agentRow = page.locator('[data-testid="agent-row"][data-agent-id="dash-e2e"]');
    await expect.poll(() => agentRow.getByTestId('agent-state').textContent(), { timeout: 10_000 }).toBe('idle');
    expect(await agentRow.getByTestId('agent-running').textContent()).toBe('0');
    expect(await agentRow.getByTestId('agent-queued').textContent()).toBe('0');
    const target = page.getByTestId('pool-target-row').first();
    await target.waitFor({ timeout: 10_000 });
    expect(await target.textContent()).toContain('dash-pool');
    expect(await target.textContent()).toContain('closed');
    expect(await target.locator('td').nth(5).textContent()).toMatch(/^\d+ ms$/);

    // Data is text, never markup; the key stays in this tab's sessionStorage only.
    expect(await page.locator('#executions-body b').count()).toBe(0);
    // Run in the page (each function is sent as its source): its storages, typed without the DOM library.
    expect(await page.evaluate(() => Object.keys((globalThis as unknown as PageGlobals).localStorage).length)).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('eag.dashboard.apiKey'))).toBe(key);

    // The API agrees with what the page shows.
    const res = await fetch(`${base}/v1/agents/dash-e2e/executions/${executionId}`, { headers: auth });
    expect(((await res.json()) as { status: string }).status).toBe('succeeded');

    // The stream drops (the browser goes offline); meanwhile an execution runs to the end. Back
    // online, the page reconnects with Last-Event-ID and the missed events are replayed.
    const streamRequests: (string | undefined)[] = [];
    page.on('request', (request) => { if (request.url().endsWith('/v1/agents/dash-e2e/events')) streamRequests.push(request.headers()['last-event-id']); });
    wentOffline = true;
    await context.setOffline(true);
    await expect.poll(() => page.getByTestId('stream-state').textContent(), { timeout: 15_000 }).toMatch(/reconnecting/);
    // The polls fail too: the page says the tables are its last answers, not "Connected.".
    await expect.poll(() => page.getByTestId('message').textContent(), { timeout: 10_000 }).toMatch(/^The gateway cannot be reached \(.+\): the tables show its last answers/);
    const missed = (await (await fetch(`${base}/v1/agents/dash-e2e/executions`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ intent: 'support.reply', input: { message: 'When are you open?' } }),
    })).json()) as { id: string; status: string };
    expect(missed.status).toBe('succeeded');
    await context.setOffline(false);
    const replayed = page.locator(`[data-testid="execution-row"][data-execution-id="${missed.id}"]`);
    await expect.poll(() => replayed.getAttribute('data-events'), { timeout: 30_000 }).toBe('queued,running,succeeded');
    expect(streamRequests.length).toBeGreaterThan(0);
    expect(streamRequests.at(-1)).toMatch(/^\d+$/);
    await expect.poll(() => page.getByTestId('stream-state').textContent(), { timeout: 15_000 }).toBe('live');
    await expect.poll(() => page.getByTestId('message').textContent(), { timeout: 10_000 }).toBe('Connected.');
    // Newest first.
    expect(await page.locator('[data-testid="execution-row"]').first().getAttribute('data-execution-id')).toBe(missed.id);

    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });

    // An agent deleted elsewhere: its stream ends, and its panel closes instead of showing it on.
    // Chromium logs the reconnect's 404 as an error: that one is the test's doing.
    deletedAgent = true;
    expect((await fetch(`${base}/v1/agents/dash-e2e`, { method: 'DELETE', headers: auth })).status).toBe(204);
    await expect.poll(() => page.getByTestId('agent-panel').isHidden(), { timeout: 20_000 }).toBe(true);
    expect(await page.getByTestId('message').textContent()).toBe('Agent dash-e2e no longer exists.');
    await expect.poll(() => page.locator('[data-testid="agent-row"][data-agent-id="dash-e2e"]').count(), { timeout: 10_000 }).toBe(0);

    expect(existsSync(SCREENSHOT)).toBe(true);
    expect(problems).toEqual([]);
    expect(foreign).toEqual([]);
    console.log(`dashboard e2e: key → agent → execution seen succeeded live in ${liveMs} ms`);
    await context.close();
  });

  it("shows nothing of the previous key's tenant once another key is pasted, not even an answer still on its way", async () => {
    const auth = (bearer: string) => ({ authorization: `Bearer ${bearer}`, 'content-type': 'application/json' });
    const post = async (route: string, bearer: string, body: unknown, method = 'POST') => {
      const res = await fetch(`${base}${route}`, { method, headers: auth(bearer), body: JSON.stringify(body) });
      expect(res.status, route).toBe(201);
      return (await res.json()) as Record<string, string>;
    };
    await post('/v1/pools/tenant-a-pool', key, { targets: [{ id: 'tenant-a-target', kind: 'builtin' }] }, 'PUT');
    await post('/v1/agents', key, { id: 'tenant-a-agent' });
    const admin = /^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';
    const other = await post('/v1/admin/tenants', admin, { name: 'Other tenant' });
    const otherKey = (await post(`/v1/admin/tenants/${other.id}/keys`, admin, { name: 'dashboard' })).key ?? '';

    const context = await browser!.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="tenant-a-agent"]').waitFor();
    await page.getByTestId('pool-target-row').filter({ hasText: 'tenant-a-pool' }).waitFor({ timeout: 10_000 });

    // The first key's next agent poll is held in flight, and the second key's pool list too.
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    let firstKeyPollHeld = () => undefined as void;
    const firstKeyPoll = new Promise<void>((resolve) => { firstKeyPollHeld = resolve; });
    await page.route('**/v1/**', async (route) => {
      const request = route.request();
      const bearer = request.headers().authorization;
      const url = new URL(request.url());
      const firstKeyList = bearer === `Bearer ${key}` && url.pathname === '/v1/agents';
      if (firstKeyList) firstKeyPollHeld();
      if (firstKeyList || (bearer === `Bearer ${otherKey}` && url.pathname === '/v1/pools')) await held;
      await route.continue().catch(() => undefined); // the page may have given the request up meanwhile
    });
    await firstKeyPoll;

    await page.getByLabel('API key').fill(otherKey);
    await page.getByTestId('key-submit').click();
    // Submitting hides the tables until the new key's agents have loaded.
    await page.locator('#main').waitFor({ state: 'visible' });
    expect(await page.getByTestId('message').textContent()).toBe('Connected.');
    expect(await page.getByTestId('pools-body').textContent()).not.toContain('tenant-a');
    expect(await page.getByTestId('agents-body').textContent()).not.toContain('tenant-a');

    // The first key's answer arrives now: it is dropped, so the second key's next poll (held by
    // its own route below) finds the table as that key left it.
    let nextPoll = () => undefined as void;
    const secondKeyPoll = new Promise<void>((resolve) => { nextPoll = resolve; });
    await page.route((url) => url.pathname === '/v1/agents' && url.search === '?limit=100', async (route) => {
      if (route.request().headers().authorization === `Bearer ${otherKey}`) nextPoll();
      else await route.fallback();
    });
    release();
    await secondKeyPoll;
    expect(await page.getByTestId('agents-body').textContent()).not.toContain('tenant-a');
    expect(await page.getByTestId('pools-body').textContent()).not.toContain('tenant-a');
    await context.close();
  });

  it("fills every agent's counts and pool's health under a key with a small perSecond limit, and keeps them through its 429s", async () => {
    const auth = (bearer: string) => ({ authorization: `Bearer ${bearer}`, 'content-type': 'application/json' });
    const post = async (route: string, bearer: string, body: unknown, status = 201) => {
      const res = await fetch(`${base}${route}`, { method: 'POST', headers: auth(bearer), body: JSON.stringify(body) });
      expect(res.status, route).toBe(status);
      return (await res.json()) as Record<string, string>;
    };
    const admin = /^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';
    const tenant = await post('/v1/admin/tenants', admin, { name: 'Small limits' });
    const setup = (await post(`/v1/admin/tenants/${tenant.id}/keys`, admin, { name: 'setup' })).key ?? '';
    await post('/v1/agents/batch', setup, { agents: Array.from({ length: 8 }, (_, i) => ({ id: `limited-${i}` })) }, 200);
    // And six pools, whose targets' health is in each pool's detail (GET /v1/pools/:name).
    for (let i = 0; i < 6; i += 1) {
      const res = await fetch(`${base}/v1/pools/limited-${i}`, { method: 'PUT', headers: auth(setup), body: JSON.stringify({ targets: [{ id: 'local', kind: 'builtin' }] }) });
      expect(res.status).toBe(201);
    }
    // Three requests a second: one agent list and two statuses; the page asks for nine a round.
    const limited = (await post(`/v1/admin/tenants/${tenant.id}/keys`, admin, { name: 'dashboard', limits: { perSecond: 3 } })).key ?? '';

    const context = await browser!.newContext();
    const page = await context.newPage();
    const refused: string[] = [];
    page.on('response', (res) => { if (res.status() === 429) refused.push(new URL(res.url()).pathname); });
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(limited);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"]').nth(7).waitFor();
    const counts = async () => page.locator('[data-testid="agent-row"] [data-testid="agent-running"]').allTextContents();
    await expect.poll(counts, { timeout: 40_000, interval: 500 }).toEqual(Array(8).fill('0'));
    // A pool's detail refused kept blanking its targets' circuit: the page asked for every
    // pool's detail every 5 s, seven requests at once here, and showed '–' for each refused one.
    const circuits = async () => page.locator('[data-testid="pool-target-row"] td:nth-child(3)').allTextContents();
    await expect.poll(circuits, { timeout: 40_000, interval: 500 }).toEqual(Array(6).fill('closed'));
    // The limit did refuse status and pool requests on the way, and every row still shows its answer.
    expect(refused.some((route) => route.endsWith('/status')), refused.join()).toBe(true);
    expect(refused.some((route) => route.startsWith('/v1/pools')), refused.join()).toBe(true);
    await page.waitForTimeout(5_500);
    expect(await counts()).toEqual(Array(8).fill('0'));
    expect(await circuits()).toEqual(Array(6).fill('closed'));
    await context.close();
  });

  it("loads once the gateway answers, says why the API refused a key, keeps long intents and names inside their panels", async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const long = (c: string, n: number) => c.repeat(n);
    expect((await fetch(`${base}/v1/pools/${long('p', 64)}`, { method: 'PUT', headers: auth, body: JSON.stringify({ targets: [{ id: long('t', 64), kind: 'builtin' }] }) })).status).toBe(201);
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-long' }) })).status).toBe(201);
    const run = await fetch(`${base}/v1/agents/dash-long/executions`, { method: 'POST', headers: auth, body: JSON.stringify({ intent: long('x', 256), input: { message: 'hi' } }) });
    expect(run.status).toBe(200);
    const admin = /^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';

    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    // The gateway cannot be reached when the key is pasted: the page tries again until it answers
    // (the key field is emptied, so the user could not simply submit again).
    await context.setOffline(true);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await expect.poll(() => page.getByTestId('message').textContent()).toMatch(/^The gateway cannot be reached \(.+\): trying again every 3 s\.$/);
    await context.setOffline(false);
    await page.locator('#main').waitFor({ state: 'visible', timeout: 10_000 });
    expect(await page.getByTestId('message').textContent()).toBe('Connected.');

    // The operator token is not an API key: the page passes on the API's reason, not just "401".
    await page.getByLabel('API key').fill(admin);
    await page.getByTestId('key-submit').click();
    await expect.poll(() => page.getByTestId('message').textContent(), { timeout: 10_000 }).toMatch(/^The API key was refused \(401\): not an API key: .*ADMIN_TOKEN/);
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('eag.dashboard.apiKey'))).toBeNull();

    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-long"] button').click();
    await page.locator('[data-testid="execution-row"]').first().waitFor();
    await page.getByTestId('pool-target-row').filter({ hasText: long('p', 64) }).waitFor({ timeout: 10_000 });
    // A 256-character intent without a break stretched the executions table to about 2,700 px.
    const overflow = (testid: string) => page.getByTestId(testid).evaluate((table) => {
      const box = (table as unknown as PageBox).parentElement; // what scrolls sideways when the table is too wide
      return box.scrollWidth - box.clientWidth;
    });
    expect(await overflow('executions-table')).toBe(0);
    expect(await overflow('pools-table')).toBe(0);

    // A phone (320 px): the page never scrolls sideways, nor does a panel (its heading, form and
    // the textarea stay in view: the agents panel ran 17 px over, the agent's 336 px); the agents
    // table fits whole, and the wider executions and pools tables scroll in their own boxes.
    await page.setViewportSize({ width: 320, height: 800 });
    const narrow = await page.evaluate(() => {
      const { document } = globalThis as unknown as PageGlobals;
      const over = (box: PageBox) => box.scrollWidth - box.clientWidth;
      const panels = [...document.querySelectorAll('.panel')].filter((panel) => panel.getClientRects().length > 0);
      return { page: over(document.documentElement), panels: panels.map(over) };
    });
    expect(narrow).toEqual({ page: 0, panels: [0, 0, 0] });
    expect(await overflow('agents-table')).toBe(0);
    await context.close();
  });

  it('refuses a key of only spaces on the page, sending nothing, and offers the key field to no password manager', async () => {
    // `npm run dev` says where the page is, next to the key to paste in it.
    expect(server.banner).toContain(`dashboard:    ${base}/dashboard/`);
    const { context, page, sent, field } = await signInPage();
    expect(await field.getAttribute('type')).toBe('password');
    for (const [name, value] of [['autocomplete', 'off'], ['autocapitalize', 'off'], ['spellcheck', 'false'], ['data-1p-ignore', ''], ['data-lpignore', 'true']] as const) {
      expect(await field.getAttribute(name), name).toBe(value);
    }
    await field.fill('   ');
    await page.getByTestId('key-submit').click();
    await expect.poll(() => page.getByTestId('message').textContent()).toBe('The API key is empty (only spaces): paste the key itself.');
    expect(sent.count).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('eag.dashboard.apiKey'))).toBeNull();
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.id)).toBe('key-input');
    expect(await page.locator('#main').isHidden()).toBe(true);
    // Spaces around a real key are cut off, not sent.
    await field.fill(`  ${key}\t`);
    await page.getByTestId('key-submit').click();
    await page.locator('#main').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('eag.dashboard.apiKey'))).toBe(key);
    await context.close();
  });

  it("says nothing of a create or a run answered for the previous key once another key is pasted", async () => {
    const auth = (bearer: string) => ({ authorization: `Bearer ${bearer}`, 'content-type': 'application/json' });
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth(key), body: JSON.stringify({ id: 'tenant-a-runner' }) })).status).toBe(201);
    const admin = /^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';
    const other = (await (await fetch(`${base}/v1/admin/tenants`, { method: 'POST', headers: auth(admin), body: JSON.stringify({ name: 'Late answers' }) })).json()) as { id: string };
    const otherKey = ((await (await fetch(`${base}/v1/admin/tenants/${other.id}/keys`, { method: 'POST', headers: auth(admin), body: JSON.stringify({ name: 'dashboard' }) })).json()) as { key: string }).key;
    const context = await browser!.newContext();
    const page = await context.newPage();
    const useKey = async (bearer: string) => {
      await page.getByLabel('API key').fill(bearer);
      await page.getByTestId('key-submit').click();
      await expect.poll(() => page.getByTestId('message').textContent()).toBe('Connected.');
    };
    await page.goto(`${base}/dashboard/`);
    await useKey(key);
    await page.locator('[data-testid="agent-row"][data-agent-id="tenant-a-runner"] button').click();
    // The first key's create and run are held until the second key is in use.
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    let sent = 0;
    await page.route((url) => url.pathname === '/v1/agents' || url.pathname === '/v1/agents/tenant-a-runner/executions', async (route) => {
      if (route.request().method() !== 'POST') return route.fallback();
      sent += 1;
      await held;
      await route.continue();
    });
    await page.getByLabel('New agent id (optional)').fill('tenant-a-late');
    await page.getByTestId('agent-create').click();
    await page.getByTestId('run-submit').click();
    await expect.poll(() => sent).toBe(2);
    await useKey(otherKey);
    const answered = Promise.all([1, 2].map(() => page.waitForResponse((response) => response.request().method() === 'POST')));
    release();
    await answered;
    await page.waitForTimeout(500);
    // Both were done for the first tenant (its agent created, its run queued), and neither is
    // reported under the second tenant's key.
    expect((await fetch(`${base}/v1/agents/tenant-a-late`, { headers: auth(key) })).status).toBe(200);
    expect(await page.getByTestId('message').textContent()).toBe('Connected.');
    expect(await page.locator('body').innerText()).not.toContain('tenant-a');
    await context.close();
  });

  it('takes a key pasted with its `Bearer ` scheme (copied from a header), and sends back the newest D1 bookmark the API handed it', async () => {
    const context = await browser!.newContext();
    const page = await context.newPage();
    // Each /v1 request's bookmark as sent, and every bookmark an answer handed back.
    const sent: (string | undefined)[] = [];
    const handed = new Set<string>();
    page.on('request', (request) => { if (request.url().includes('/v1/')) sent.push(request.headers()['x-d1-bookmark']); });
    page.on('response', (response) => {
      const bookmark = response.headers()['x-d1-bookmark'];
      if (response.url().includes('/v1/') && bookmark) handed.add(bookmark);
    });
    await page.goto(`${base}/dashboard/`);
    const field = page.getByLabel('API key');
    // The scheme alone is no key: refused on the page, nothing sent.
    await field.fill(' Bearer ');
    await page.getByTestId('key-submit').click();
    await expect.poll(() => page.getByTestId('message').textContent()).toBe('The API key is empty (only "Bearer"): paste the key itself.');
    expect(sent).toEqual([]);
    // It used to go out as `Bearer Bearer eag_…`, refused with a 401 and forgotten.
    await field.fill(`  bEaReR   ${key} `);
    await page.getByTestId('key-submit').click();
    await page.locator('#main').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('eag.dashboard.apiKey'))).toBe(key);
    expect(await page.getByTestId('message').textContent()).toBe('Connected.');
    // The first request has no bookmark to send; the polls after it send one the API handed back.
    expect(sent[0]).toBeUndefined();
    await expect.poll(() => sent.filter((bookmark) => bookmark !== undefined && handed.has(bookmark)).length, { timeout: 10_000 }).toBeGreaterThan(0);
    expect(sent.every((bookmark) => bookmark === undefined || handed.has(bookmark))).toBe(true);
    await context.close();
  });

  it('refuses a key with a character no header carries (the "…" of a masked key), sending nothing, instead of taking the gateway for unreachable', async () => {
    const { context, page, sent, field } = await signInPage();
    // fetch refuses such a header before sending it: the page said "The gateway cannot be
    // reached" and tried again every 3 s, for as long as it stayed open.
    for (const [pasted, named] of [[`eag_…${key.slice(-4)}`, '"…"'], [`${key.slice(0, 10)} ${key.slice(10)}`, 'a space']] as const) {
      await field.fill(pasted);
      await page.getByTestId('key-submit').click();
      await expect.poll(() => page.getByTestId('message').textContent()).toBe(`The API key has a character no API key has (${named}): paste the key itself, not its masked form.`);
      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('eag.dashboard.apiKey'))).toBeNull();
      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.id)).toBe('key-input');
    }
    await page.waitForTimeout(3_500);
    expect(sent.count).toBe(0);
    expect(await page.locator('#main').isHidden()).toBe(true);
    await context.close();
  });

  it('forgets a key the gateway refuses (revoked), not one a 429 or 503 turned away, nor one pasted since, and leaves the key field ready', async () => {
    const admin = /^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';
    const asAdmin = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    const tenant = (await (await fetch(`${base}/v1/admin/tenants`, { method: 'POST', headers: asAdmin, body: JSON.stringify({ name: 'Revoked' }) })).json()) as { id: string };
    const created = (await (await fetch(`${base}/v1/admin/tenants/${tenant.id}/keys`, { method: 'POST', headers: asAdmin, body: JSON.stringify({ name: 'dashboard' }) })).json()) as { id: string; key: string };
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: { authorization: `Bearer ${created.key}`, 'content-type': 'application/json' }, body: JSON.stringify({ id: 'dash-revoked' }) })).status).toBe(201);

    const context = await browser!.newContext();
    // The page's polls wait on a clock the test moves on: each comes only when the test asks.
    await context.clock.install({ time: new Date('2026-12-06T09:00:00Z') });
    await context.clock.pauseAt(new Date('2026-12-06T09:00:01Z'));
    const page = await context.newPage();
    const storedKey = () => page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('eag.dashboard.apiKey'));
    const message = () => page.getByTestId('message').textContent();
    // Whether a refresh is on its way, read in the page (the module the page loaded): a refresh
    // is busy from the moment its timer fires until its tables are drawn. Network events reach the
    // test later than the page sends: counting them once called the page quiet while a poll the
    // clock had just fired was still unseen, and that poll's 401 after the revoke below ended
    // the session before the click it was meant to leave to (a flake in CI).
    const quiet = () => page.evaluate<boolean>(`(async () => {
      const { state } = await import('/dashboard/state.js');
      return state.session !== null && !state.session.agentsBusy && !state.session.poolsBusy;
    })()`);
    const useKey = async (bearer: string) => {
      await page.getByLabel('API key').fill(bearer);
      await page.getByTestId('key-submit').click();
      // A first load turned away (a 503 from a local D1 busy with the other suites) is tried again
      // after its Retry-After, on the page's clock, which this test holds: moved on only then.
      await expect
        .poll(async () => (await page.locator('#main').isVisible()) || (await context.clock.runFor(1_000), false), { timeout: 30_000, interval: 250 })
        .toBe(true);
    };
    const forgotten = async () => {
      await expect.poll(message).toMatch(/^The API key was refused \(401\): .+\. It was forgotten: paste a valid key\.$/);
      expect(await storedKey()).toBeNull();
      expect(await page.locator('#main').isHidden()).toBe(true);
      expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.id)).toBe('key-input');
    };
    const createRefused = async (route: Parameters<Parameters<typeof page.route>[1]>[0]) => {
      if (route.request().method() !== 'POST') return route.fallback();
      await route.fulfill({ status: 401, contentType: 'application/json', body: JSON.stringify({ error: { code: 'unauthorized', message: 'revoked meanwhile' } }) });
    };
    await page.goto(`${base}/dashboard/`);
    await useKey(key);

    // A 401 to the previous key, arriving after another key was pasted, leaves the new one be.
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    let createSent = () => undefined as void;
    const createHeld = new Promise<void>((resolve) => { createSent = resolve; });
    const agentsList = (url: URL) => url.pathname === '/v1/agents';
    await page.route(agentsList, async (route) => {
      if (route.request().method() !== 'POST') return route.fallback();
      createSent();
      await held;
      await createRefused(route);
    });
    await page.getByLabel('New agent id (optional)').fill('dash-late');
    await page.getByTestId('agent-create').click();
    await createHeld;
    await useKey(created.key);
    const refused = page.waitForResponse((response) => response.request().method() === 'POST');
    release();
    await refused;
    // Nor does it speak for the new key: the create was the previous key's (it used to say
    // "Could not create the agent: revoked meanwhile" under the new one).
    await new Promise((resolve) => { setTimeout(resolve, 300); });
    await page.evaluate('new Promise((resolve) => { const channel = new MessageChannel(); channel.port1.onmessage = resolve; channel.port2.postMessage(0); })');
    expect(await message()).toBe('Connected.');
    expect(await storedKey()).toBe(created.key);
    expect(await page.locator('#main').isVisible()).toBe(true);
    await page.unroute(agentsList);

    // A 401 to the key in use, here to a form: the page says why, not just that the form failed.
    await page.route(agentsList, createRefused);
    await page.getByTestId('agent-create').click();
    await forgotten();
    await page.unroute(agentsList);
    await useKey(created.key);

    // A 429 to the next agent poll and a 503 to the next pool poll say nothing about the key: it stays.
    const turnedAway: number[] = [];
    for (const [pathname, status] of [['/v1/agents', 429], ['/v1/pools', 503]] as const) {
      let served = false;
      await page.route((url) => url.pathname === pathname, async (route) => {
        if (served) return route.fallback();
        served = true;
        turnedAway.push(status);
        await route.fulfill({ status, headers: { 'retry-after': '1' }, contentType: 'application/json', body: JSON.stringify({ error: { code: status === 429 ? 'rate_limited' : 'unavailable', message: 'try again' } }) });
      });
    }
    // The clock moves on until both polls came (one still busy when its time comes is skipped).
    await expect.poll(async () => {
      await page.clock.runFor(1_000);
      return [...turnedAway].sort();
    }).toEqual([429, 503]);
    expect(await storedKey()).toBe(created.key);
    await expect.poll(quiet).toBe(true);

    // Revoked for real: opening an agent (its status, executions and stream all refused) says why.
    expect((await fetch(`${base}/v1/admin/keys/${created.id}`, { method: 'DELETE', headers: asAdmin })).status).toBe(204);
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-revoked"] button').click();
    await forgotten();

    // A reload does not send it again.
    const sent: string[] = [];
    page.on('request', (request) => { if (new URL(request.url()).pathname.startsWith('/v1/')) sent.push(request.url()); });
    await page.reload();
    await expect.poll(message).toBe('Paste an API key to begin.');
    expect(sent).toEqual([]);
    await context.close();
  });

  it('keeps trying a first agent list turned away (429, 503) after its Retry-After, and reports an agent it created as created when the list after it is refused', async () => {
    const context = await browser!.newContext();
    // The page's timers wait on a clock only the test moves on: no poll comes unasked.
    await context.clock.install({ time: new Date('2026-12-06T09:00:00Z') });
    await context.clock.pauseAt(new Date('2026-12-06T09:00:01Z'));
    const page = await context.newPage();
    const message = () => page.getByTestId('message').textContent();
    // Each agent list (GET /v1/agents) takes the next refusal queued here, if any.
    const refusals: { status: number; code: string; retryAfter: string }[] = [
      { status: 429, code: 'rate_limited', retryAfter: '5' },
      { status: 503, code: 'unavailable', retryAfter: '2' },
    ];
    let lists = 0;
    await page.route((url) => url.pathname === '/v1/agents', async (route) => {
      if (route.request().method() !== 'GET') return route.fallback();
      lists += 1;
      const refusal = refusals.shift();
      if (!refusal) return route.fallback();
      await route.fulfill({ status: refusal.status, headers: { 'retry-after': refusal.retryAfter }, contentType: 'application/json', body: JSON.stringify({ error: { code: refusal.code, message: 'try again later' } }) });
    });
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    // A 429 says nothing about the key: the page waits out its Retry-After and asks again (it used
    // to give up, the tables hidden and the key field empty, until the page was reloaded).
    await expect.poll(message).toBe('Could not load agents (429: try again later): trying again in 5 s.');
    await page.clock.runFor(4_000);
    await page.waitForTimeout(300);
    expect(lists).toBe(1);
    await page.clock.runFor(1_500);
    await expect.poll(message).toBe('Could not load agents (503: try again later): trying again in 2 s.');
    expect(lists).toBe(2);
    await page.clock.runFor(2_500);
    await page.locator('#main').waitFor({ state: 'visible' });
    expect(await message()).toBe('Connected.');
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).sessionStorage.getItem('eag.dashboard.apiKey'))).toBe(key);

    // The list read after a create is refused: the agent exists all the same, and the page says
    // so and opens it (it used to say "Could not create the agent", and a retry then got 409).
    refusals.push({ status: 429, code: 'rate_limited', retryAfter: '1' });
    await page.getByLabel('New agent id (optional)').fill('dash-created');
    await page.getByTestId('agent-create').click();
    await expect.poll(message).toBe('Created agent dash-created.');
    await expect.poll(() => page.getByTestId('agent-name').textContent()).toBe('dash-created');
    expect(await page.getByTestId('agent-panel').isVisible()).toBe(true);
    expect(await message()).toBe('Created agent dash-created.');
    expect(refusals).toEqual([]);
    expect((await fetch(`${base}/v1/agents/dash-created`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    await context.close();
  });

  it("holds no more than the newest 100 executions of an open agent, however many its stream brings", async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-busy' }) })).status).toBe(201);
    const context = await browser!.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-busy"] button').click();
    await expect.poll(() => page.getByTestId('stream-state').textContent(), { timeout: 15_000 }).toBe('live');
    let last = '';
    for (let i = 0; i < 110; i += 1) {
      const run = await fetch(`${base}/v1/agents/dash-busy/executions`, { method: 'POST', headers: auth, body: JSON.stringify({ intent: 'support.reply', input: `message ${i}` }) });
      expect(run.status).toBe(200);
      last = ((await run.json()) as { id: string }).id;
    }
    // The stream is in order: once the last one shows finished, every earlier event has been read.
    const newest = page.locator('[data-testid="execution-row"]').first();
    await expect.poll(() => newest.getAttribute('data-execution-id'), { timeout: 30_000 }).toBe(last);
    await expect.poll(() => newest.getAttribute('data-events'), { timeout: 10_000 }).toBe('queued,running,succeeded');
    expect(await page.locator('[data-testid="execution-row"]').count()).toBe(100);
    // What the page holds (the module the page loaded, read in the page): the table's 100 rows,
    // not every execution seen since the panel opened (a tab left open on a busy agent grew
    // without end, each record with its input and output).
    const held = await page.evaluate<{ executions: number; events: number }>(`(async () => {
      const { state } = await import('/dashboard/state.js');
      return { executions: state.selected.executions.size, events: state.selected.events.size };
    })()`);
    expect(held).toEqual({ executions: 100, events: 100 });
    await context.close();
  });

  it("shows the newest 100 executions of an agent opened after they ran, as README says, not the newest 50", async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-history' }) })).status).toBe(201);
    const ids: string[] = [];
    for (let i = 0; i < 105; i += 1) {
      const run = await fetch(`${base}/v1/agents/dash-history/executions`, { method: 'POST', headers: auth, body: JSON.stringify({ intent: 'support.reply', input: `message ${i}` }) });
      expect(run.status).toBe(200);
      ids.push(((await run.json()) as { id: string }).id);
    }
    // D1's list follows the agent a moment behind: the panel is opened once it holds them all.
    await expect.poll(async () => {
      const list = (await (await fetch(`${base}/v1/agents/dash-history/executions?limit=100`, { headers: auth })).json()) as { data: { id: string }[] };
      return list.data[0]?.id;
    }, { timeout: 15_000 }).toBe(ids.at(-1));
    const context = await browser!.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-history"] button').click();
    const rows = page.locator('[data-testid="execution-row"]');
    await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(100);
    expect(await rows.first().getAttribute('data-execution-id')).toBe(ids.at(-1));
    expect(await rows.last().getAttribute('data-execution-id')).toBe(ids[5]);
    await context.close();
  });

  it('pages through more than 100 agents, 100 at a time, so every agent can be opened', async () => {
    const admin = /^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';
    const asAdmin = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    const tenant = (await (await fetch(`${base}/v1/admin/tenants`, { method: 'POST', headers: asAdmin, body: JSON.stringify({ name: 'Many agents' }) })).json()) as { id: string };
    const many = ((await (await fetch(`${base}/v1/admin/tenants/${tenant.id}/keys`, { method: 'POST', headers: asAdmin, body: JSON.stringify({ name: 'dashboard' }) })).json()) as { key: string }).key;
    const id = (i: number) => `fleet-${String(i).padStart(3, '0')}`;
    for (const from of [0, 100]) {
      const agents = Array.from({ length: from === 0 ? 100 : 30 }, (_, i) => ({ id: id(from + i) }));
      const res = await fetch(`${base}/v1/agents/batch`, { method: 'POST', headers: { authorization: `Bearer ${many}`, 'content-type': 'application/json' }, body: JSON.stringify({ agents }) });
      expect(res.status).toBe(200);
    }
    const context = await browser!.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(many);
    await page.getByTestId('key-submit').click();
    const rows = page.locator('[data-testid="agent-row"]');
    const ids = async () => rows.evaluateAll((list) => list.map((row) => (row as unknown as { dataset: { agentId: string } }).dataset.agentId));
    const range = () => page.getByTestId('agents-range').textContent();
    await expect.poll(ids, { timeout: 10_000 }).toEqual(Array.from({ length: 100 }, (_, i) => id(i)));
    // The 101st agent on was out of the page's reach: it said only that the API lists them.
    await page.getByTestId('agents-pages').waitFor();
    expect(await range()).toBe('Agents 1–100');
    expect(await page.getByTestId('agents-previous').isDisabled()).toBe(true);
    await page.getByTestId('agents-next').click();
    await expect.poll(ids, { timeout: 10_000 }).toEqual(Array.from({ length: 30 }, (_, i) => id(100 + i)));
    expect(await range()).toBe('Agents 101–130');
    expect(await page.getByTestId('agents-next').isDisabled()).toBe(true);
    // The keyboard's focus, on Next as it turned disabled, went to Previous.
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.id)).toBe('agents-previous');
    // Later polls keep to the page shown.
    await page.locator(`[data-testid="agent-row"][data-agent-id="${id(120)}"] button`).click();
    await expect.poll(() => page.getByTestId('agent-name').textContent()).toBe(id(120));
    await expect.poll(() => page.locator(`[data-testid="agent-row"][data-agent-id="${id(120)}"] [data-testid="agent-queued"]`).textContent(), { timeout: 15_000 }).toBe('0');
    expect(await ids()).toEqual(Array.from({ length: 30 }, (_, i) => id(100 + i)));
    await page.getByTestId('agents-previous').focus();
    await page.keyboard.press('Enter');
    await expect.poll(ids, { timeout: 10_000 }).toEqual(Array.from({ length: 100 }, (_, i) => id(i)));
    expect(await range()).toBe('Agents 1–100');
    expect(await page.getByTestId('agent-name').textContent()).toBe(id(120));
    await context.close();
  });

  it('shows an execution that ended just before its agent was opened, before D1 had it, once D1 has it', async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-lag' }) })).status).toBe(201);
    const context = await browser!.newContext();
    await context.clock.install({ time: new Date('2026-12-06T09:00:00Z') });
    await context.clock.pauseAt(new Date('2026-12-06T09:00:01Z'));
    const page = await context.newPage();
    // The panel's list (read from D1) is answered at once; its event stream is held until the
    // execution below has ended, as a stream that connects a moment after it would be.
    let release = () => undefined as void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    await page.route('**/v1/agents/dash-lag/events', async (route) => { await held; await route.continue().catch(() => undefined); });
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    const listed = page.waitForResponse((res) => new URL(res.url()).pathname === '/v1/agents/dash-lag/executions');
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-lag"] button').click();
    await listed;
    const run = await fetch(`${base}/v1/agents/dash-lag/executions`, { method: 'POST', headers: auth, body: JSON.stringify({ intent: 'support.reply', input: 'hi' }) });
    const { id } = (await run.json()) as { id: string };
    // D1 has it now (the list the panel read did not, and the stream starts after it).
    await expect.poll(async () => ((await (await fetch(`${base}/v1/agents/dash-lag/executions`, { headers: auth })).json()) as { data: { id: string }[] }).data.map((e) => e.id), { timeout: 10_000 }).toEqual([id]);
    release();
    await expect.poll(() => page.getByTestId('stream-state').textContent(), { timeout: 10_000 }).toBe('live');
    // D1 follows the agent a second or so behind: the panel reads it again once that has passed
    // since its stream began (it used to show the agent without this execution for good).
    await page.clock.runFor(2_500);
    const shown = () => page.locator('[data-testid="execution-row"]').evaluateAll((rows) => rows.map((row) => {
      const { executionId, status } = (row as unknown as { dataset: { executionId: string; status: string } }).dataset;
      return `${executionId} ${status}`;
    }));
    await expect.poll(shown, { timeout: 10_000 }).toEqual([`${id} succeeded`]);
    await context.close();
  });

  it('hands the keyboard focus to the agents panel when the open agent, focus inside its panel, is deleted elsewhere', async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-focus' }) })).status).toBe(201);
    const context = await browser!.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-focus"] button').click();
    await expect.poll(() => page.getByTestId('stream-state').textContent(), { timeout: 15_000 }).toBe('live');
    await page.getByLabel('Intent').focus();
    expect((await fetch(`${base}/v1/agents/dash-focus`, { method: 'DELETE', headers: auth })).status).toBe(204);
    await expect.poll(() => page.getByTestId('agent-panel').isHidden(), { timeout: 20_000 }).toBe(true);
    // It used to fall to the page's body, so the keyboard started over from the top.
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).document.activeElement?.id)).toBe('agents-title');
    await context.close();
  });

  it("dates an execution's time when it is not of the page's today", async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-dated' }) })).status).toBe(201);
    const run = await fetch(`${base}/v1/agents/dash-dated/executions`, { method: 'POST', headers: auth, body: JSON.stringify({ intent: 'support.reply', input: 'hi' }) });
    const { createdAt } = (await run.json()) as { createdAt: string };
    const context = await browser!.newContext();
    // The page's today is a year after the execution's.
    const later = new Date(Date.parse(createdAt) + 365 * 86_400_000);
    await context.clock.install({ time: later });
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-dated"] button').click();
    const created = page.locator('[data-testid="execution-row"] td').nth(3);
    await created.waitFor({ timeout: 10_000 });
    // As the page's own locale writes that moment, date and time (it showed the time alone, as if of today).
    const expected = await page.evaluate<string>(`new Date(${JSON.stringify(createdAt)}).toLocaleString()`);
    expect(await created.textContent()).toBe(expected);
    expect(expected).toContain(String(new Date(createdAt).getFullYear()));
    await context.close();
  });

  it('brings the agent panel into view when an agent far down the list is opened', async () => {
    const admin = /^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';
    const asAdmin = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    const tenant = (await (await fetch(`${base}/v1/admin/tenants`, { method: 'POST', headers: asAdmin, body: JSON.stringify({ name: 'Long list' }) })).json()) as { id: string };
    const listKey = ((await (await fetch(`${base}/v1/admin/tenants/${tenant.id}/keys`, { method: 'POST', headers: asAdmin, body: JSON.stringify({ name: 'dashboard' }) })).json()) as { key: string }).key;
    const agents = Array.from({ length: 60 }, (_, i) => ({ id: `row-${String(i).padStart(2, '0')}` }));
    expect((await fetch(`${base}/v1/agents/batch`, { method: 'POST', headers: { authorization: `Bearer ${listKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ agents }) })).status).toBe(200);
    const panelTop = (page: Page) => page.getByTestId('agent-panel').evaluate((panel) => (panel as unknown as { getBoundingClientRect(): { top: number } }).getBoundingClientRect().top);
    const innerHeight = (page: Page) => page.evaluate<number>('innerHeight');
    // A wide screen, where the panel heads the second column, and a phone, where it follows the list.
    for (const viewport of [{ width: 1280, height: 700 }, { width: 375, height: 700 }]) {
      const context = await browser!.newContext({ viewport });
      const page = await context.newPage();
      await page.goto(`${base}/dashboard/`);
      await page.getByLabel('API key').fill(listKey);
      await page.getByTestId('key-submit').click();
      const last = page.locator('[data-testid="agent-row"][data-agent-id="row-59"] button');
      await last.scrollIntoViewIfNeeded();
      await last.click();
      await expect.poll(() => page.getByTestId('agent-name').textContent()).toBe('row-59');
      // The panel's top is on screen: it opened above (or below) what was in view, and the
      // click seemed to do nothing.
      const top = await panelTop(page);
      expect(top, `${viewport.width} px`).toBeGreaterThanOrEqual(0);
      expect(top, `${viewport.width} px`).toBeLessThan(await innerHeight(page));
      await context.close();
    }
  });

  it('runs an intent whose answer was lost once only, when Run is pressed again, and says why a run was refused and when to try again', async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-lost' }) })).status).toBe(201);
    const context = await browser!.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-lost"] button').click();
    await expect.poll(() => page.getByTestId('stream-state').textContent(), { timeout: 15_000 }).toBe('live');
    const runMessage = () => page.getByTestId('run-message').textContent();
    // The run reaches the gateway, which queues it, but its answer is lost on the way back.
    let lost = 0;
    await page.route('**/v1/agents/dash-lost/executions', async (route) => {
      if (route.request().method() !== 'POST' || lost > 0) return route.fallback();
      lost += 1;
      await route.fetch();
      await route.abort('connectionreset');
    });
    await page.getByTestId('run-submit').click();
    await expect.poll(runMessage).toMatch(/^Could not run: the gateway cannot be reached \(.+\)\. It may have been queued: Run sends it again with the same Idempotency-Key, so it runs once\.$/);
    // Pressed again, the same run is answered with the execution the lost answer had: one, not two.
    await page.getByTestId('run-submit').click();
    await expect.poll(runMessage).toMatch(/^Queued ex_\w+\.$/);
    const queued = /^Queued (ex_\w+)\.$/.exec((await runMessage()) ?? '')?.[1];
    await expect.poll(async () => {
      const list = (await (await fetch(`${base}/v1/agents/dash-lost/executions`, { headers: auth })).json()) as { data: { id: string }[] };
      return list.data.map((execution) => execution.id);
    }, { timeout: 10_000 }).toEqual([queued]);
    // Another run after an answer is a new execution, with a new key.
    await page.getByTestId('run-submit').click();
    await expect.poll(runMessage).not.toBe(`Queued ${queued}.`);
    expect(await runMessage()).toMatch(/^Queued ex_\w+\.$/);
    // A refusal names its status and code, and its Retry-After.
    await page.unrouteAll();
    await page.route('**/v1/agents/dash-lost/executions', (route) => route.request().method() !== 'POST' ? route.fallback() : route.fulfill({
      status: 429, headers: { 'retry-after': '7', 'content-type': 'application/json' },
      body: JSON.stringify({ error: { code: 'rate_limited', message: 'rate limit exceeded (perSecond)' } }),
    }));
    await page.getByTestId('run-submit').click();
    await expect.poll(runMessage).toBe('Could not run (429 rate_limited: rate limit exceeded (perSecond)): try again in 7 s.');
    await context.close();
  });

  it("says what became of a run next to the agent's run form, in view where the form is", async () => {
    const admin = /^ADMIN_TOKEN=(.+)$/m.exec(readFileSync(path.join(root, '.dev.vars'), 'utf8'))?.[1] ?? '';
    const asAdmin = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' };
    const tenant = (await (await fetch(`${base}/v1/admin/tenants`, { method: 'POST', headers: asAdmin, body: JSON.stringify({ name: 'Run messages' }) })).json()) as { id: string };
    const runKey = ((await (await fetch(`${base}/v1/admin/tenants/${tenant.id}/keys`, { method: 'POST', headers: asAdmin, body: JSON.stringify({ name: 'dashboard' }) })).json()) as { key: string }).key;
    const agents = Array.from({ length: 30 }, (_, i) => ({ id: `runner-${String(i).padStart(2, '0')}` }));
    expect((await fetch(`${base}/v1/agents/batch`, { method: 'POST', headers: { authorization: `Bearer ${runKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ agents }) })).status).toBe(200);
    // A phone: the agent's panel follows the list of 30 agents, far below the page's header.
    const context = await browser!.newContext({ viewport: { width: 375, height: 700 } });
    const page = await context.newPage();
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(runKey);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="runner-29"] button').click();
    await expect.poll(() => page.getByTestId('stream-state').textContent(), { timeout: 15_000 }).toBe('live');
    const inView = (text: string) => page.getByText(text, { exact: true }).evaluateAll((found) => found.some((element) => {
      const { top, bottom } = (element as unknown as { getBoundingClientRect(): { top: number; bottom: number } }).getBoundingClientRect();
      return top >= 0 && bottom <= (globalThis as unknown as { innerHeight: number }).innerHeight;
    }));
    const submit = page.getByTestId('run-submit');
    await page.getByLabel('Input (JSON)').fill('{not json');
    await submit.scrollIntoViewIfNeeded();
    await submit.click();
    // It was said in the page's header alone, out of view: the click seemed to do nothing.
    await expect.poll(() => inView('Input must be JSON.')).toBe(true);
    await page.getByLabel('Input (JSON)').fill('{"message":"hi"}');
    await submit.click();
    await expect.poll(() => page.getByTestId('run-message').textContent()).toMatch(/^Queued ex_\w+\.$/);
    expect(await inView((await page.getByTestId('run-message').textContent()) ?? '')).toBe(true);
    await context.close();
  });

  it("holds the event stream's reconnect back for a 429's or 503's Retry-After (60 s at most), and shows it paused", async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await fetch(`${base}/v1/agents`, { method: 'POST', headers: auth, body: JSON.stringify({ id: 'dash-paused' }) })).status).toBe(201);
    const context = await browser!.newContext();
    // The page's timers wait on a clock only the test moves on, so a 30 s pause takes no 30 s.
    await context.clock.install({ time: new Date('2026-12-06T09:00:00Z') });
    await context.clock.pauseAt(new Date('2026-12-06T09:00:01Z'));
    const page = await context.newPage();
    // The stream's first attempt is refused 429 (Retry-After 30), the second 503 (Retry-After
    // 3600, held to 60 s); the third reaches the gateway.
    const refusals = [{ status: 429, retryAfter: '30' }, { status: 503, retryAfter: '3600' }];
    let attempts = 0;
    await page.route('**/v1/agents/dash-paused/events', async (route) => {
      const refusal = refusals[attempts];
      attempts += 1;
      if (!refusal) return route.continue();
      await route.fulfill({ status: refusal.status, headers: { 'retry-after': refusal.retryAfter }, contentType: 'application/json', body: JSON.stringify({ error: { code: 'rate_limited', message: 'slow down' } }) });
    });
    await page.goto(`${base}/dashboard/`);
    await page.getByLabel('API key').fill(key);
    await page.getByTestId('key-submit').click();
    await page.locator('[data-testid="agent-row"][data-agent-id="dash-paused"] button').click();
    const streamState = page.getByTestId('stream-state');
    await expect.poll(() => streamState.textContent()).toBe('rate limited (429): paused 30 s, then reconnecting…');
    // Until the Retry-After has passed (the backoff alone would have tried again after 2 s)…
    await page.clock.runFor(29_000);
    await page.waitForTimeout(300);
    expect(attempts).toBe(1);
    await page.clock.runFor(2_000);
    await expect.poll(() => streamState.textContent()).toBe('unavailable (503): paused 60 s, then reconnecting…');
    expect(attempts).toBe(2);
    await page.clock.runFor(59_000);
    await page.waitForTimeout(300);
    expect(attempts).toBe(2);
    await page.clock.runFor(2_000);
    await expect.poll(() => streamState.textContent()).toBe('live');
    expect(attempts).toBe(3);
    await context.close();
  });

  it('renders the API reference at /docs with nothing reachable but the gateway', async () => {
    const html = await (await fetch(`${base}/docs`)).text();
    expect(html).toContain('<script src="/vendor/scalar/standalone.js"></script>');
    expect(html).not.toMatch(/https?:\/\/[^"]*(jsdelivr|unpkg|scalar\.com)/);
    const script = await fetch(`${base}/vendor/scalar/standalone.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toMatch(/javascript/);
    expect((await script.arrayBuffer()).byteLength).toBeGreaterThan(1_000_000);
    expect(await (await fetch(`${base}/vendor/scalar/LICENSE`)).text()).toContain('MIT License');

    // Offline but for this origin: any other request is refused and recorded.
    const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
    const foreign: string[] = [];
    await context.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(`${base}/`) || url.startsWith('data:')) return route.continue();
      foreign.push(url);
      return route.abort('internetdisconnected');
    });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    page.on('console', (message) => { if (message.type() === 'error') problems.push(`console: ${message.text()}`); });
    const started = Date.now();
    await page.goto(`${base}/docs`);
    // The document's title and an operation's summary: Scalar ran and read /openapi.json.
    await page.locator('h1').filter({ hasText: 'edge-agent-gateway' }).waitFor({ timeout: 30_000 });
    await page.getByText('Create a tenant (operator token)').first().waitFor({ timeout: 10_000 });
    const renderedMs = Date.now() - started;
    expect(await page.title()).toBe('edge-agent-gateway API');
    expect(foreign).toEqual([]);
    expect(problems).toEqual([]);
    // Scalar's client previews an HTML or PDF answer (an upstream's error page passed through
    // by /v1/chat/completions) as <object type=… data=blob:…>: the page's policy must let it load.
    // Page code as a string: this project compiles without the DOM's types.
    const preview = await page.evaluate<{ ok: boolean; refused: string[]; text: string | null }>(`(async () => {
      const refused = [];
      const object = document.createElement('object');
      object.type = 'text/html';
      object.data = URL.createObjectURL(new Blob(['<p id="answer">an upstream page</p>'], { type: 'text/html' }));
      // A refused load fires the policy's event, and no load on the element.
      const ok = await new Promise((resolve) => {
        object.onload = () => resolve(true);
        object.onerror = () => resolve(false);
        document.addEventListener('securitypolicyviolation', (event) => { refused.push(event.violatedDirective + ' ' + event.blockedURI); resolve(false); });
        document.body.append(object);
      });
      return { ok, refused, text: object.contentDocument?.getElementById('answer')?.textContent ?? null };
    })()`);
    expect(preview).toEqual({ ok: true, refused: [], text: 'an upstream page' });
    // An icon of its own, as the dashboard has: else a browser asks /favicon.ico, a 404 in the
    // console (this test's request routing keeps Chromium from asking, so look at the page).
    expect(await page.evaluate<string | null>(`document.querySelector('link[rel~="icon"]')?.getAttribute('href') ?? null`)).toBe('data:,');
    console.log(`docs e2e: API reference rendered from this origin alone in ${renderedMs} ms`);
    await context.close();
  });

  it('lets a page on an origin in MCP_ALLOWED_ORIGINS call /mcp with fetch and read its answers; another origin is blocked', async () => {
    const context = await browser!.newContext();
    const page = await context.newPage();
    // The page's origin differs from the gateway's by port: Authorization and JSON make Chromium preflight.
    const callMcp = (bearer: string) =>
      page.evaluate(
        async ({ url, bearer }) => {
          try {
            const res = await fetch(url, {
              method: 'POST',
              headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' },
              body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'page', version: '1' } } }),
            });
            return { status: res.status, session: res.headers.get('mcp-session-id'), challenge: res.headers.get('www-authenticate'), body: await res.text() };
          } catch (error) {
            return { blocked: String(error) };
          }
        },
        { url: `${base}/mcp`, bearer },
      );
    await page.goto(`${pageOrigin}/`);
    const served = await callMcp(key);
    expect(served).toMatchObject({ status: 200, session: expect.stringMatching(/^[0-9a-f-]{36}$/) });
    expect(served.body).toContain('edge-agent-gateway');
    expect(await callMcp('eag_not-a-real-key')).toMatchObject({ status: 401, challenge: 'Bearer' });
    // The same page server under another name is another origin, not listed: the browser refuses.
    await page.goto(`${pageOrigin.replace('127.0.0.1', 'localhost')}/`);
    expect(await callMcp(key)).toMatchObject({ blocked: expect.stringMatching(/Failed to fetch/) });
    await context.close();
  });
});
