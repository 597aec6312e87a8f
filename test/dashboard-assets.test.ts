import { SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';

// The dashboard's files (and the API reference's script) are static assets the Worker serves
// through its ASSETS binding (wrangler.toml runs it first for their paths), so they carry an
// x-request-id like every other response. Here SELF reaches the Worker directly; the dev
// server's routing of those paths to it is checked end to end (test/e2e/dashboard.e2e.ts).

const get = (path: string, headers: Record<string, string> = {}) => SELF.fetch(`https://gateway.test${path}`, { headers, redirect: 'manual' });
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('the dashboard, served as static assets through the Worker', () => {
  it('answers its files with an x-request-id, the assets headers file kept', async () => {
    const page = await get('/dashboard/');
    expect(page.status).toBe(200);
    expect(page.headers.get('x-request-id')).toMatch(UUID);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await page.text()).toContain('data-testid="key-input"');

    const script = await get('/dashboard/app.js', { 'x-request-id': 'dash-trace-1' });
    expect(script.status).toBe(200);
    expect(script.headers.get('x-request-id')).toBe('dash-trace-1');
    expect(script.headers.get('content-type')).toMatch(/javascript/);
    await script.arrayBuffer();

    const reference = await get('/vendor/scalar/standalone.js');
    expect(reference.status).toBe(200);
    expect(reference.headers.get('x-request-id')).toMatch(UUID);
    await reference.arrayBuffer();
  });

  it('carries it on the trailing-slash redirect, a revalidation and a missing file too', async () => {
    const redirect = await get('/dashboard');
    expect([301, 307, 308]).toContain(redirect.status);
    expect(redirect.headers.get('location')).toMatch(/\/dashboard\/$/);
    expect(redirect.headers.get('x-request-id')).toMatch(UUID);

    const first = await get('/dashboard/style.css');
    const etag = first.headers.get('etag');
    await first.arrayBuffer();
    expect(etag).toBeTruthy();
    const revalidated = await get('/dashboard/style.css', { 'if-none-match': etag ?? '' });
    expect(revalidated.status).toBe(304);
    expect(revalidated.headers.get('x-request-id')).toMatch(UUID);

    // A file that is not there is the API's 404, as it was before the Worker served the files.
    const missing = await get('/dashboard/nope.js');
    expect(missing.status).toBe(404);
    const body = (await missing.json()) as { error: { code: string; requestId: string } };
    expect(body.error.code).toBe('not_found');
    expect(body.error.requestId).toBe(missing.headers.get('x-request-id'));
  });

  it('serves every module of the page, each import found, each one preloaded by the page', async () => {
    const html = await (await get('/dashboard/')).text();
    const entries = [...html.matchAll(/<script type="module" src="([^"]+)">/g)].map((m) => m[1]);
    const preloaded = new Set([...html.matchAll(/<link rel="modulepreload" href="([^"]+)">/g)].map((m) => m[1]));
    expect(entries).toEqual(['/dashboard/app.js']);
    // The import graph from the entry, fetched through the Worker as the browser would.
    const seen = new Set<string>();
    const queue = [...entries];
    while (queue.length) {
      const modulePath = queue.shift() ?? '';
      if (seen.has(modulePath)) continue;
      seen.add(modulePath);
      const res = await get(modulePath);
      expect(res.status, modulePath).toBe(200);
      expect(res.headers.get('content-type'), modulePath).toMatch(/javascript/);
      // The page's CSP must let it run: scripts from this origin only.
      expect(res.headers.get('content-security-policy'), modulePath).toContain("script-src 'self'");
      const source = await res.text();
      expect(source.split('\n').length, modulePath).toBeLessThan(400);
      for (const [, specifier = ''] of source.matchAll(/^import [^;]*? from '([^']+)';$/gm)) {
        expect(specifier, `${modulePath} imports ${specifier}`).toMatch(/^\.\/[a-z-]+\.js$/);
        queue.push(new URL(specifier, `https://gateway.test${modulePath}`).pathname);
      }
    }
    expect(seen.size).toBeGreaterThan(5);
    expect([...seen].filter((p) => p !== '/dashboard/app.js').sort()).toEqual([...preloaded].sort());
  });
});
