import { TrieRouter } from 'hono/router/trie-router';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../worker/app';
import { GatewayRouter } from '../../worker/lib/router';

// The app's router answers every request as Hono's trie router (its default here before) did,
// while matching most of them by regular expression.

type Handler = () => void;
const named = (name: string): Handler => Object.assign(() => undefined, { label: name });

/** A match as a comparable value: each handler with its parameters, in order. */
function matched(router: { match: (method: string, path: string) => unknown }, method: string, path: string): string[] {
  const [handlers, stash] = router.match(method, path) as [[Handler & { label?: string }, Record<string, string | number>][], string[]?];
  return handlers.map(([handler, params]) => {
    const values = Object.entries(params).sort(([a], [b]) => a.localeCompare(b)).map(([key, value]) => `${key}=${stash && typeof value === 'number' ? stash[value] : value}`);
    return `${handler.label ?? handler.name}(${values.join(',')})`;
  });
}

/** Paths to ask: each route's, its parameters filled in several ways, and their near misses. */
function samplePaths(paths: readonly string[]): string[] {
  const out = new Set<string>(['/', '/v1', '/v1/', '/nowhere', '/v1/agents/batch/', '//v1/agents/batch', '/v1/agents/batch/executions', '/v1/agents/batch-7/executions']);
  for (const path of paths) {
    for (const value of ['a1', 'batch', 'batch-7', 'x%2Fy', '']) {
      const filled = path.replace(/:[^/{]+(\{[^}]*\})?/g, value).replace(/\*$/, 'rest/of/it');
      out.add(filled);
      out.add(`${filled}/`);
      out.add(`${filled}/extra`);
    }
  }
  return [...out];
}

describe('the gateway router', () => {
  it('matches what the trie router matches, for every route of the app and their near misses, by every method', () => {
    const app = createApp();
    const routes = app.routes.map((route, i) => ({ ...route, handler: named(`h${i}`) }));
    const trie = new TrieRouter<Handler>();
    const gateway = new GatewayRouter<Handler>();
    for (const { method, path, handler } of routes) {
      trie.add(method, path, handler);
      gateway.add(method, path, handler);
    }
    expect(gateway.usesRegExp).toBe(true);
    const methods = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
    let compared = 0;
    for (const path of samplePaths(routes.map((r) => r.path))) {
      for (const method of methods) {
        expect(matched(gateway, method, path), `${method} ${path}`).toEqual(matched(trie, method, path));
        compared += 1;
      }
    }
    expect(compared).toBeGreaterThan(1000);
  });

  it("matches most of the app's requests by regular expression: a route that does not fit is left to the trie, not the whole app", () => {
    const app = createApp();
    expect((app.router as GatewayRouter<unknown>).usesRegExp).toBe(true);
  });

  it('refuses a route added after the first match, as Hono\'s routers do', () => {
    const gateway = new GatewayRouter<Handler>();
    gateway.add('GET', '/a', named('a'));
    expect(matched(gateway, 'GET', '/a')).toEqual(['a()']);
    expect(() => gateway.add('GET', '/b', named('b'))).toThrow(/already built/);
  });

  it('answers from the trie alone when the regular expressions cannot hold the routes', () => {
    const gateway = new GatewayRouter<Handler>();
    const trie = new TrieRouter<Handler>();
    // Two parameters with different patterns at one place: RegExpRouter refuses them.
    for (const [path, name] of [['/items/:id{[0-9]+}', 'numeric'], ['/items/:slug{[a-z]+}', 'slug']] as const) {
      gateway.add('GET', path, named(name));
      trie.add('GET', path, named(name));
    }
    expect(gateway.usesRegExp).toBe(false);
    for (const path of ['/items/42', '/items/abc', '/items/-']) expect(matched(gateway, 'GET', path)).toEqual(matched(trie, 'GET', path));
  });
});
