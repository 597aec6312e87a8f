import { decodeCursor, encodeCursor, invalidCursor } from '../lib/cursor';
import { sha256Hex } from '../lib/hash';

/**
 * The cursor of a tenant's agent list: the last id seen, after a tag of the list and tenant.
 * A bare id was also the shape of an execution list's cursor (agent ids may look like
 * `ex_…`) and of every other tenant's agent cursor, so each list read the other's as a place
 * in itself and answered a wrong page instead of 400. The ':' keeps it out of every other
 * list's key pattern (ids, pool names); the tag keeps another tenant's out of this one.
 */
const AGENT_CURSOR = /^[0-9a-f]{8}:[a-zA-Z0-9_-]{1,64}$/;

async function listTag(tenantId: string): Promise<string> {
  return (await sha256Hex(`agents/${tenantId}`)).slice(0, 8);
}

export async function encodeAgentCursor(tenantId: string, lastId: string): Promise<string> {
  return encodeCursor(`${await listTag(tenantId)}:${lastId}`);
}

/** The id to list after, or undefined for the first page; a cursor of another list or tenant is 400. */
export async function decodeAgentCursor(tenantId: string, cursor: string | undefined): Promise<string | undefined> {
  const key = decodeCursor(cursor, AGENT_CURSOR);
  if (key === undefined) return undefined;
  const [tag, id] = key.split(':') as [string, string];
  if (tag !== (await listTag(tenantId))) throw invalidCursor();
  return id;
}
