import type { AgentEvent } from '../worker/schemas/webhook';

/** The frames of an agent's SSE event stream (durable/agent-events.ts). */
export const encoder = new TextEncoder();

export function sseFrame(event: AgentEvent): Uint8Array {
  return encoder.encode(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
}

/**
 * Told to a resuming client before what it missed: `gap` (events it never got were trimmed) or
 * `reset` (its last event id is beyond the newest event, which this log never gave: it is
 * replayed from the oldest event kept). An agent deleted and created again goes on from the
 * deleted one's seq (`agentDeleted`), so its old clients get `gap` at most.
 */
export type StreamNotice =
  | { type: 'gap'; data: { missedFrom: number; missedTo: number } }
  | { type: 'reset'; data: { lastEventId: number; newestSeq: number } }
  | { type: 'behind'; data: { lastEventId: number; backlogBytes: number } };

/** A notice as SSE: no `id`, so the client's Last-Event-ID moves only with real events. */
export const noticeFrame = (notice: StreamNotice) => encoder.encode(`event: ${notice.type}\ndata: ${JSON.stringify(notice.data)}\n\n`);

/** The last frame of a stream whose key was revoked: no `id`, and the client's reconnect gets 401. */
export const revokedFrame = encoder.encode(`event: unauthorized\ndata: ${JSON.stringify({ code: 'unauthorized', message: "this stream's API key was revoked" })}\n\n`);

/** The last frame of a stream whose agent was deleted: no `id`, and the client's reconnect gets 404. */
export const deletedFrame = encoder.encode(`event: deleted\ndata: ${JSON.stringify({ code: 'not_found', message: 'the agent was deleted' })}\n\n`);
