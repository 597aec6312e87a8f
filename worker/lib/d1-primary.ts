/**
 * A session that starts at the primary: a route's database may be a session reading a
 * replica (worker/middleware/d1-session.ts), and the plain binding reads the primary already.
 */
export function atPrimary(db: D1Database): Pick<D1Database, 'prepare'> {
  try {
    return db.withSession('first-primary');
  } catch {
    return db;
  }
}
