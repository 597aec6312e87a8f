import { scopedCursors } from '../lib/scoped-cursor';

/**
 * Cursors of the audit log naming their list: the tenant and the action it was filtered by
 * (worker/lib/scoped-cursor.ts). A bare entry id was a point in time in every list: one tenant's
 * cursor paged another tenant's entries from there, and a filtered page's cursor, read in the
 * unfiltered list, skipped every entry newer than that page's last.
 */
const auditCursors = scopedCursors('au_[a-zA-Z0-9_-]{1,76}');

/** The operator's list of a tenant and a tenant key's own are one list: their cursors agree. */
const listOf = (q: { tenantId?: string; action?: string }): string => `audit/${JSON.stringify([q.tenantId ?? null, q.action ?? null])}`;

export const encodeAuditCursor = (q: { tenantId?: string; action?: string }, lastId: string): Promise<string> => auditCursors.encode(listOf(q), lastId);

/** The entry id to list before, or undefined for the first page; a cursor of another tenant's or action's list is 400. */
export const decodeAuditCursor = (q: { tenantId?: string; action?: string }, cursor: string | undefined): Promise<string | undefined> => auditCursors.decode(listOf(q), cursor);
