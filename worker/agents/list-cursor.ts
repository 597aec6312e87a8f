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
const executionsOf = (tenantId: string, agentId: string) => `executions/${tenantId}/${agentId}`;
const deliveriesOf = (tenantId: string, agentId: string) => `deliveries/${tenantId}/${agentId}`;

export const encodeAgentCursor = (tenantId: string, lastId: string): Promise<string> => agentCursors.encode(agentsOf(tenantId), lastId);

/** The id to list after, or undefined for the first page; a cursor of another list or tenant is 400. */
export const decodeAgentCursor = (tenantId: string, cursor: string | undefined): Promise<string | undefined> => agentCursors.decode(agentsOf(tenantId), cursor);

export const encodeExecutionCursor = (tenantId: string, agentId: string, lastId: string): Promise<string> => executionCursors.encode(executionsOf(tenantId, agentId), lastId);

/** The execution id to list before, or undefined for the first page; a cursor of another agent's list, another tenant's or another list is 400. */
export const decodeExecutionCursor = (tenantId: string, agentId: string, cursor: string | undefined): Promise<string | undefined> =>
  executionCursors.decode(executionsOf(tenantId, agentId), cursor);

export const encodeDeliveryCursor = (tenantId: string, agentId: string, lastId: string): Promise<string> => deliveryCursors.encode(deliveriesOf(tenantId, agentId), lastId);

/** The delivery id to list before, or undefined for the first page; another agent's cursor, or another list's, is 400. */
export const decodeDeliveryCursor = (tenantId: string, agentId: string, cursor: string | undefined): Promise<string | undefined> =>
  deliveryCursors.decode(deliveriesOf(tenantId, agentId), cursor);
