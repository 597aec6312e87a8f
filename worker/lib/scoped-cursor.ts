import { decodeCursor, encodeCursor, invalidCursor } from './cursor';
import { sha256Hex } from './hash';

/**
 * Cursors that name their list: the last key seen, after a tag of the list (a digest of its
 * scope: the tenant, and the agent for an agent's lists). A bare key was the same shape in every
 * list of its kind: one agent's execution cursor paged another agent's executions from that
 * point in time, and one tenant's agent cursor another's agents. The ':' keeps it out of every
 * bare-key list's pattern; the tag refuses another scope's (400 `param: "cursor"`).
 */
export interface ScopedCursors {
  encode(scope: string, lastKey: string): Promise<string>;
  /** The key to page from, or undefined for the first page; a cursor of another list or scope is 400. */
  decode(scope: string, cursor: string | undefined): Promise<string | undefined>;
}

const tagOf = async (scope: string): Promise<string> => (await sha256Hex(scope)).slice(0, 8);

/** `keySource`: the pattern of the list's keys (a regex source, no anchors, no ':'). */
export function scopedCursors(keySource: string): ScopedCursors {
  const shape = new RegExp(`^[0-9a-f]{8}:(?:${keySource})$`);
  return {
    encode: async (scope, lastKey) => encodeCursor(`${await tagOf(scope)}:${lastKey}`),
    async decode(scope, cursor) {
      const key = decodeCursor(cursor, shape);
      if (key === undefined) return undefined;
      const at = key.indexOf(':');
      if (key.slice(0, at) !== (await tagOf(scope))) throw invalidCursor();
      return key.slice(at + 1);
    },
  };
}
