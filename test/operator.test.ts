import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createApp } from '../worker/app';
import { api, eventually, mockUrl, newAgent, newTenant } from './support/api';
import { limitedKey } from './support/limits';

describe('OpenAPI document and docs page', () => {
  it('documents every registered route, with the error envelope', async () => {
    const doc = (await api('/openapi.json')).body;
    const documented = new Set(
      Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)),
    );
    // The document and its page, and the static files the Worker serves (dashboard, the page's script).
    const undocumentedOnPurpose = new Set(['GET /openapi.json', 'GET /docs', 'GET /dashboard', 'GET /dashboard/*', 'GET /vendor/*']);
    const registered = createApp()
      .routes.filter((r) => r.method !== 'ALL')
      // A parameter's pattern (`:model{.+}`) is not part of its documented name.
      .map((r) => `${r.method} ${r.path.replace(/:(\w+)(\{[^}]*\})?/g, '{$1}')}`)
      .filter((r) => !undocumentedOnPurpose.has(r));
    expect(registered.length).toBeGreaterThan(30);
    for (const route of registered) expect(documented, route).toContain(route);
    expect(doc.components.schemas.Error).toBeDefined();
    expect(doc.paths['/v1/agents'].post.responses['400'].content['application/json'].schema.$ref).toBe('#/components/schemas/Error');
  });

  it('documents what a sender posts to an incoming hook, and every answer it can get', async () => {
    const doc = (await api('/openapi.json')).body;
    const post = doc.paths['/v1/hooks/{id}'].post;
    expect(post.requestBody.required).toBe(true);
    expect(Object.keys(post.requestBody.content)).toEqual(['application/json', 'text/plain']);
    const headers = post.parameters.filter((p: { in: string }) => p.in === 'header').map((p: { name: string }) => p.name);
    expect(headers).toEqual(['webhook-id', 'webhook-timestamp', 'webhook-signature', 'x-github-delivery', 'x-github-event', 'x-hub-signature-256', 'stripe-signature']);
    expect(Object.keys(post.responses).sort()).toEqual(['200', '202', '400', '401', '404', '405', '413', '415', '429', '431', '500', '503']);
    expect(post.responses['503'].headers['Retry-After']).toBeDefined();
  });

  it('documents x-gateway-stale on the reads that fall back to the D1 snapshot', async () => {
    const doc = (await api('/openapi.json')).body;
    for (const path of ['/v1/agents/{id}', '/v1/agents/{id}/status', '/v1/agents/{id}/executions/{eid}']) {
      expect(doc.paths[path].get.responses['200'].headers['x-gateway-stale'], path).toBeDefined();
      expect(doc.paths[path].get.responses['503'].headers['Retry-After'], path).toBeDefined();
    }
  });

  it('documents the headers answers carry: x-request-id on every one, RateLimit-* wherever a key has limits', async () => {
    const doc = (await api('/openapi.json')).body;
    type Responses = Record<string, { headers?: Record<string, unknown> }>;
    const ops = Object.entries(doc.paths as Record<string, Record<string, { responses: Responses }>>).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, op]) => ({ name: `${method.toUpperCase()} ${path}`, path, responses: op.responses })),
    );
    const rateLimit = ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'];
    for (const op of ops) {
      // Key limits apply to tenant keys, never to the operator token of /v1/admin; an incoming
      // hook's delivery counts against the key that registered the hook. A CORS preflight
      // (OPTIONS /mcp) carries no key: browsers send none with it.
      const keyed = !op.path.startsWith('/v1/admin/') && op.path !== '/healthz' && op.name !== 'OPTIONS /mcp';
      expect('429' in op.responses, op.name).toBe(keyed);
      for (const [status, response] of Object.entries(op.responses)) {
        expect(response.headers?.['x-request-id'], `${op.name} ${status}`).toBeDefined();
        for (const name of rateLimit) expect(response.headers?.[name] !== undefined, `${op.name} ${status} ${name}`).toBe('429' in op.responses);
      }
    }

    // And the server sends what is declared: a key with limits gets RateLimit-* on a 200 and a 404.
    const { key } = await limitedKey({ perSecond: 100 });
    for (const [path, status, documented] of [['/v1/agents', 200, '/v1/agents'], ['/v1/agents/nope', 404, '/v1/agents/{id}']] as const) {
      const res = await api(path, { key });
      expect(res.status).toBe(status);
      const declared = doc.paths[documented].get.responses[String(status)].headers;
      for (const name of [...rateLimit, 'x-request-id']) {
        expect(res.headers.get(name), `${path} ${name}`).not.toBeNull();
        expect(declared[name], `${documented} ${status} ${name}`).toBeDefined();
      }
    }
  });

  it('documents x-d1-bookmark on every /v1 operation: a header it accepts and a header it answers with', async () => {
    const doc = (await api('/openapi.json')).body;
    const parameter = doc.components.parameters['x-d1-bookmark'];
    expect(parameter).toMatchObject({ in: 'header', name: 'x-d1-bookmark', required: false });
    expect(doc.components.headers['x-d1-bookmark'].schema.type).toBe('string');
    const refs = (operation: { parameters?: { $ref?: string }[] }) => (operation.parameters ?? []).map((p) => p.$ref);
    const operations = Object.entries(doc.paths as Record<string, Record<string, { parameters?: { $ref?: string }[]; responses: Record<string, { headers?: Record<string, unknown> }> }>>)
      .filter(([path]) => path.startsWith('/v1/'))
      .flatMap(([path, ops]) => Object.entries(ops).map(([method, operation]) => ({ name: `${method} ${path}`, operation })));
    expect(operations.length).toBeGreaterThan(30);
    for (const { name, operation } of operations) {
      expect(refs(operation), name).toContain('#/components/parameters/x-d1-bookmark');
      for (const [status, response] of Object.entries(operation.responses)) {
        expect(response.headers?.['x-d1-bookmark'], `${name} ${status}`).toEqual({ $ref: '#/components/headers/x-d1-bookmark' });
      }
    }
    // Routes outside /v1 have no D1 session, so no bookmark.
    expect(refs(doc.paths['/healthz'].get)).not.toContain('#/components/parameters/x-d1-bookmark');

    // And the server does what the document says: a D1 read answers with a bookmark.
    const { key } = await newTenant();
    const list = await api('/v1/agents', { key });
    expect(list.headers.get('x-d1-bookmark')).toMatch(/\S/);
  });

  it('serves the API reference page at /docs', async () => {
    const res = await api('/docs');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(res.body).toContain('/openapi.json');
    // An API client a key is typed into, on the dashboard's origin: never framed by another site, never sniffed.
    expect(res.headers.get('content-security-policy')).toBe("frame-ancestors 'none'; base-uri 'none'; object-src blob:");
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('referrer-policy')).toBe('no-referrer');
  });

  it('has the API reference page load everything from this origin: no CDN, no web fonts', async () => {
    const page = (await api('/docs')).body as string;
    const sources = [...page.matchAll(/<script[^>]*\ssrc="([^"]*)"/g)].map((m) => m[1]);
    // The file is a static asset, vendored in public/vendor/scalar/ (the end-to-end
    // test in test/e2e/dashboard.e2e.ts renders the page with only the gateway reachable).
    expect(sources).toEqual(['/vendor/scalar/standalone.js']);
    expect(page).not.toMatch(/https?:\/\//);
    expect(page).toContain('"withDefaultFonts": false');
  });
});

describe('GET /v1/stats', () => {
  it("summarises the tenant's executions, latency and upstream error rates", async () => {
    const { key } = await newTenant();
    const ok = await newAgent(key);
    const bad = await newAgent(key, { upstream: { kind: 'agent-http', url: mockUrl('/agent?status=400') } });
    for (let i = 0; i < 3; i++) await api(`/v1/agents/${ok}/executions`, { key, body: { intent: 'hello' } });
    await api(`/v1/agents/${bad}/executions`, { key, body: { intent: 'x' } });
    const stats = await eventually(async () => {
      const res = await api('/v1/stats?windowMinutes=5', { key });
      return res.body.executions?.succeeded === 3 && res.body.executions?.failed === 1 && res.body;
    });
    expect(stats.latencyMs.samples).toBe(4);
    expect(stats.latencyMs.p50).toBeGreaterThanOrEqual(0);
    const byUpstream = Object.fromEntries(stats.upstreams.map((u: { upstream: string }) => [u.upstream, u]));
    expect(byUpstream.builtin).toMatchObject({ total: 3, failed: 0, errorRate: 0 });
    expect(Object.values(byUpstream).find((u: any) => u.failed === 1)).toMatchObject({ total: 1, errorRate: 1 });
    const other = await newTenant();
    expect((await api('/v1/stats', { key: other.key })).body).toMatchObject({ executions: {}, latencyMs: { samples: 0 }, upstreams: [] });
  });

  it('takes latency percentiles over every execution of the window, not the fastest 10,000', async () => {
    const { key, tenantId } = await newTenant();
    // 10,000 executions of 1 ms and 10,000 of 1,000 ms: the median and p99 are 1,000 ms.
    const now = Date.now();
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 19999)
       INSERT INTO executions (tenant_id, agent_id, id, status, intent, record, rev, created_at, updated_at)
       SELECT ?1, 'bulk', printf('ex_%06d', i), 'succeeded', 'x', json_object('upstream', 'builtin', 'durationMs', CASE WHEN i < 10000 THEN 1 ELSE 1000 END), 1, ?2, ?2 FROM n`,
    ).bind(tenantId, now).run();
    const res = await api('/v1/stats?windowMinutes=5', { key });
    expect(res.status).toBe(200);
    expect(res.body.executions).toEqual({ succeeded: 20_000 });
    expect(res.body.latencyMs).toEqual({ p50: 1000, p99: 1000, samples: 20_000 });
  });

  it("reads only the window's executions by index, not every execution the tenant ever had", async () => {
    const { key, tenantId } = await newTenant();
    const queries: { sql: string; params: unknown[] }[] = [];
    const app = createApp();
    // The route's own statements (in the request's D1 session), recorded as it binds them, then
    // planned against the same database.
    const recorded = <T extends object>(target: T): T =>
      new Proxy(target, {
        get(inner, name) {
          const value = Reflect.get(inner, name, inner) as unknown;
          if (name === 'withSession') return (...args: unknown[]) => recorded((value as (...a: unknown[]) => object).apply(inner, args));
          if (name !== 'prepare') return typeof value === 'function' ? value.bind(inner) : value;
          return (sql: string) => {
            const statement = (value as (q: string) => D1PreparedStatement).call(inner, sql);
            const bind = statement.bind.bind(statement);
            return Object.assign(statement, {
              bind: (...params: unknown[]) => {
                if (/FROM executions/.test(sql)) queries.push({ sql, params });
                return bind(...params);
              },
            });
          };
        },
      });
    const recording = recorded(env.DB);
    const res = await app.request('/v1/stats?windowMinutes=5', { headers: { authorization: `Bearer ${key}` } }, { ...env, DB: recording });
    expect(res.status).toBe(200);
    expect(queries).toHaveLength(3);
    for (const { sql, params } of queries) {
      expect(params[0]).toBe(tenantId);
      const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`).bind(...params).all<{ detail: string }>();
      expect(results.map((r) => r.detail).join('\n'), sql).toMatch(/SEARCH executions USING INDEX executions_by_tenant_update \(tenant_id=\? AND updated_at>\?\)/);
    }
  });
});
