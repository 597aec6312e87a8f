import { ApiError } from '../errors';

/** The statement that finds tenant `id` (one row if it exists), to run alone or in a batch. */
export function tenantLookup(db: Pick<D1Database, 'prepare'>, id: string): D1PreparedStatement {
  return db.prepare('SELECT 1 AS one FROM tenants WHERE id = ?').bind(id);
}

/** An operator route on an unknown tenant is a 404, not an empty list or a dangling write. */
export function requireTenant(found: boolean, id: string): void {
  if (!found) throw new ApiError('not_found', `tenant ${id} not found`);
}
