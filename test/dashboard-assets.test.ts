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
});
