import { MESSAGE_MATCHER_IS_ALREADY_BUILT, UnsupportedPathError, type Result, type Router } from 'hono/router';
import { RegExpRouter } from 'hono/router/reg-exp-router';
import { TrieRouter } from 'hono/router/trie-router';

type Route<T> = readonly [method: string, path: string, handler: T];

/**
 * Hono's RegExpRouter (one regular expression per method) for every request it can answer,
 * its TrieRouter for the few it cannot. Hono's default picks one router for the whole app:
 * RegExpRouter refuses a literal segment beside a parameter under the same method
 * (`POST /v1/agents/batch` beside `POST /v1/agents/:id/executions`), so every request walked
 * the trie, a few per cent of a request's CPU in the profiles (BENCHMARKS, thirty-seventh pass).
 *
 * Such literal routes are left out of the regular expressions and answered by the trie, which
 * holds every route. A literal route matches only paths naming its last segment, so a path
 * without that text gets the same answer from both: the trie is asked only for paths that
 * contain it (an agent named "batch-7" as well), and for every path if the regular expressions
 * cannot be built at all.
 */
export class GatewayRouter<T> implements Router<T> {
  name = 'GatewayRouter';
  private readonly routes: Route<T>[] = [];
  private readonly trie = new TrieRouter<T>();
  /** Built at the first match, once every route is added; null: the app's routes do not fit it. */
  private regExp: RegExpRouter<T> | null | undefined;
  /** Last segments of the literal routes left to the trie. */
  private trieTails: string[] = [];

  add(method: string, path: string, handler: T): void {
    // As Hono's routers: a route added after the first match would be missing from the regular expressions.
    if (this.regExp !== undefined) throw new Error(MESSAGE_MATCHER_IS_ALREADY_BUILT);
    this.routes.push([method, path, handler]);
    this.trie.add(method, path, handler);
  }

  match(method: string, path: string): Result<T> {
    const regExp = this.regExp === undefined ? this.build() : this.regExp;
    if (regExp === null || this.trieTails.some((tail) => path.includes(tail))) return this.trie.match(method, path);
    return regExp.match(method, path);
  }

  /** Whether requests other than those naming a literal route left to the trie match by regular expression. */
  get usesRegExp(): boolean {
    return (this.regExp === undefined ? this.build() : this.regExp) !== null;
  }

  private build(): RegExpRouter<T> | null {
    const toTrie = new Set(this.routes.filter((route) => isLiteral(route[1]) && this.routes.some((other) => shadowedBy(route, other))).map((route) => route[1]));
    const regExp = new RegExpRouter<T>();
    try {
      for (const [method, path, handler] of this.routes) if (!toTrie.has(path)) regExp.add(method, path, handler);
      // The regular expressions are built at the first match: a route they cannot hold throws here.
      regExp.match('GET', '/');
    } catch (error) {
      if (!(error instanceof UnsupportedPathError)) throw error;
      this.regExp = null;
      return null;
    }
    this.trieTails = [...toTrie].map((path) => path.split('/').filter(Boolean).pop() ?? path);
    this.regExp = regExp;
    return regExp;
  }
}

const isLiteral = (path: string): boolean => !/[:*]/.test(path);

/**
 * Whether `route`, a literal route, has a literal segment where `other` (of its method, or of
 * every method) has a parameter, after the same segments before it: what RegExpRouter refuses.
 */
function shadowedBy(route: Route<unknown>, other: Route<unknown>): boolean {
  if (other === route || (other[0] !== route[0] && other[0] !== 'ALL') || isLiteral(other[1])) return false;
  const literal = route[1].split('/');
  const pattern = other[1].split('/');
  for (let i = 0; i < Math.min(literal.length, pattern.length); i++) {
    const segment = pattern[i] as string;
    if (segment.startsWith(':')) return true;
    if (segment === '*' || segment !== literal[i]) return false;
  }
  return false;
}
