import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';
import { setResponseHeader } from './response-headers';

const BOOKMARK = /^[A-Za-z0-9_.:-]{1,256}$/;

/** Opens the D1 session a request runs its queries in, on the first query: most hot requests make none. */
class LazySession {
  private session: D1DatabaseSession | undefined;

  constructor(
    private readonly db: D1Database,
    private readonly asked: string | undefined,
  ) {}

  get(): D1DatabaseSession {
    if (this.session) return this.session;
    try {
      this.session = this.db.withSession(this.asked ?? 'first-unconstrained');
    } catch {
      this.session = this.db.withSession('first-unconstrained');
    }
    return this.session;
  }

  /** The bookmark to hand back: the session's latest, else (no query ran) the one the client sent. */
  bookmark(): string | null {
    return this.session ? this.session.getBookmark() : (this.asked ?? null);
  }
}

/** A session that stands in for the database: queries go through it, the rest to `db`. */
function sessionAsDatabase(db: D1Database, session: LazySession): D1Database {
  return Object.assign(Object.create(db) as D1Database, {
    prepare: (query: string) => session.get().prepare(query),
    batch: <T>(statements: D1PreparedStatement[]) => session.get().batch<T>(statements),
    // A session of its own (a key's status is read at the primary) starts from the binding.
    withSession: (constraint?: string) => db.withSession(constraint),
  });
}

/**
 * Read-your-writes across requests with D1 read replicas: every /v1 request runs its D1 queries
 * in a D1 session that starts from the client's `x-d1-bookmark` (else from any replica), and
 * the response carries the session's latest bookmark for the next request.
 *
 * @example app.use('/v1/*', d1Session())
 */
export function d1Session(): MiddlewareHandler<AppEnv> {
  return async function d1Session(c, next) {
    const asked = c.req.header('x-d1-bookmark');
    const session = new LazySession(c.env.DB, asked && BOOKMARK.test(asked) ? asked : undefined);
    c.env = { ...c.env, DB: sessionAsDatabase(c.env.DB, session) };
    await next();
    const bookmark = session.bookmark();
    if (bookmark) setResponseHeader(c, 'x-d1-bookmark', bookmark);
  };
}
