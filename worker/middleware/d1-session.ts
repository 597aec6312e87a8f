import type { MiddlewareHandler } from 'hono';
import type { AppEnv } from '../env';

const BOOKMARK = /^[A-Za-z0-9_.:-]{1,256}$/;

/** A session that stands in for the database: queries go through it, the rest to `db`. */
function sessionAsDatabase(db: D1Database, session: D1DatabaseSession): D1Database {
  return Object.assign(Object.create(db) as D1Database, {
    prepare: (query: string) => session.prepare(query),
    batch: <T>(statements: D1PreparedStatement[]) => session.batch<T>(statements),
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
    let session: D1DatabaseSession;
    try {
      session = c.env.DB.withSession(asked && BOOKMARK.test(asked) ? asked : 'first-unconstrained');
    } catch {
      session = c.env.DB.withSession('first-unconstrained');
    }
    c.env = { ...c.env, DB: sessionAsDatabase(c.env.DB, session) };
    await next();
    const bookmark = session.getBookmark();
    if (bookmark) c.res.headers.set('x-d1-bookmark', bookmark);
  };
}
