import { scopedCursors } from '../lib/scoped-cursor';

/**
 * The cursors of a tenant's agent list and of an agent's execution and delivery lists, each naming its list
 * (worker/lib/scoped-cursor.ts). Agent ids may look like `ex_…`, so only the tag tells an agent
 * cursor from an execution cursor; it also tells one tenant's, or one agent's, from another's.
 */
const agentCursors = scopedCursors('[a-zA-Z0-9_-]{1,64}');
const executionCursors = scopedCursors('ex_[a-zA-Z0-9_-]{1,76}');
const deliveryCursors = scopedCursors('msg_[a-zA-Z0-9_-]{1,76}');

const agentsOf = (tenantId: string) => `agents/${tenantId}`;
/**
 * A `?status=` filter is a list of its own: a filtered page's cursor read in the unfiltered list
 * (or another status's) skipped every execution newer than that page's last, without a word.
 * The unfiltered list keeps its scope, so its cursors stay good across the deploy.
 */
const executionsOf = (tenantId: string, agentId: string, status?: string) => `executions/${tenantId}/${agentId}${status === undefined ? '' : `?status=${status}`}`;
/** As for executions: a `?status=` filter is a list of its own, and the unfiltered list keeps its scope. */
const deliveriesOf = (tenantId: string, agentId: string, status?: string) => `deliveries/${tenantId}/${agentId}${status === undefined ? '' : `?status=${status}`}`;

export const encodeAgentCursor = (tenantId: string, lastId: string): Promise<string> => agentCursors.encode(agentsOf(tenantId), lastId);

/** The id to list after, or undefined for the first page; a cursor of another list or tenant is 400. */
export const decodeAgentCursor = (tenantId: string, cursor: string | undefined): Promise<string | undefined> => agentCursors.decode(agentsOf(tenantId), cursor);

export const encodeExecutionCursor = (tenantId: string, agentId: string, lastId: string, status?: string): Promise<string> => executionCursors.encode(executionsOf(tenantId, agentId, status), lastId);

/** The execution id to list before, or undefined for the first page; a cursor of another agent's list, another tenant's, another status filter's or another list is 400. */
export const decodeExecutionCursor = (tenantId: string, agentId: string, cursor: string | undefined, status?: string): Promise<string | undefined> =>
  executionCursors.decode(executionsOf(tenantId, agentId, status), cursor);

export const encodeDeliveryCursor = (tenantId: string, agentId: string, lastId: string, status?: string): Promise<string> => deliveryCursors.encode(deliveriesOf(tenantId, agentId, status), lastId);

/** The delivery id to list before, or undefined for the first page; another agent's cursor, another status filter's, or another list's, is 400. */
export const decodeDeliveryCursor = (tenantId: string, agentId: string, cursor: string | undefined, status?: string): Promise<string | undefined> =>
  deliveryCursors.decode(deliveriesOf(tenantId, agentId, status), cursor);
