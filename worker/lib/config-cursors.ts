import { scopedCursors } from './scoped-cursor';

/**
 * The cursors of a tenant's incoming hooks and pools, naming their list (worker/lib/scoped-cursor.ts),
 * as the agent, execution and delivery lists' do. A bare id was the same in every tenant's list
 * and in every `?agentId=` filter's: one read in another list paged it from that id on,
 * skipping what came before without a word. The operator's list of a tenant's hooks is that
 * tenant's list, so a cursor pages on in either.
 */
const hookCursors = scopedCursors('[a-zA-Z0-9_-]{8,64}');
const poolCursors = scopedCursors('[a-zA-Z0-9_.-]{1,64}');

const hooksOf = (tenantId: string, agentId: string | undefined) => `hooks/${tenantId}${agentId === undefined ? '' : `?agentId=${agentId}`}`;
const poolsOf = (tenantId: string) => `pools/${tenantId}`;

export const encodeHookCursor = (tenantId: string, agentId: string | undefined, lastId: string): Promise<string> => hookCursors.encode(hooksOf(tenantId, agentId), lastId);

/** The hook id to list after, or undefined for the first page; another tenant's or another filter's cursor is 400. */
export const decodeHookCursor = (tenantId: string, agentId: string | undefined, cursor: string | undefined): Promise<string | undefined> =>
  hookCursors.decode(hooksOf(tenantId, agentId), cursor);

export const encodePoolCursor = (tenantId: string, lastName: string): Promise<string> => poolCursors.encode(poolsOf(tenantId), lastName);

/** The pool name to list after, or undefined for the first page; another tenant's cursor is 400. */
export const decodePoolCursor = (tenantId: string, cursor: string | undefined): Promise<string | undefined> => poolCursors.decode(poolsOf(tenantId), cursor);
