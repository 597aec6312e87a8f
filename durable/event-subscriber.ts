import type { AgentEvent } from '../worker/schemas/webhook';

/**
 * An SSE stream as the agent's event log feeds it (durable/agent-events.ts). One ended with
 * frames its client has not taken yet stays until the client takes them or the heartbeat finds
 * it has taken nothing for a minute, which lets them go.
 */
export interface Subscriber {
  /** The API key the stream was opened with (none: not checked). */
  keyId?: string;
  /** `frame`: the event as SSE, encoded once for every stream it goes to. */
  push(event: AgentEvent, frame: Uint8Array): void;
  /** Bytes of frames waiting for the client to read them. */
  backlog(): number;
  /** Ends the stream once its client has taken what waits, `frame` last (a notice). */
  end(frame?: Uint8Array): void;
  /** Ends the stream because its key was revoked, telling the client so. */
  revoked(): void;
  /** A heartbeat at `now`; ends the stream when its client has taken nothing for STREAM_STALL_MS. */
  beat(now: number): void;
  /** Breaks the stream off, letting go of the frames its client has not taken (it resumes from the log). */
  drop(): void;
}

/**
 * The bytes an agent's SSE streams may leave unread together. Each is bounded (4 MiB, then
 * `behind`), but not their number: a few clients that stopped reading a busy agent held a
 * multiple of it in the object, whose memory (128 MB) every agent of the isolate shares.
 */
export const AGENT_STREAMS_BACKLOG_BYTES = 16 * 1024 * 1024;

/** Breaks off the streams furthest behind until those left hold at most `budget` bytes unread. */
export function shedBacklog(subscribers: Iterable<Subscriber>, budget = AGENT_STREAMS_BACKLOG_BYTES): void {
  const held = [...subscribers].map((subscriber) => ({ subscriber, bytes: subscriber.backlog() }));
  let total = held.reduce((sum, h) => sum + h.bytes, 0);
  if (total <= budget) return; // every event asks: sorted only when some must go
  for (const { subscriber, bytes } of held.sort((a, b) => b.bytes - a.bytes)) {
    if (total <= budget) return;
    subscriber.drop();
    total -= bytes;
  }
}
