import type { AgentEvent } from '../worker/schemas/webhook';

/**
 * An SSE stream as the agent's event log feeds it (durable/agent-events.ts). One ended with
 * frames its client has not taken yet stays until the client takes them or the heartbeat finds
 * it has taken nothing for a minute, which lets them go.
 */
export interface Subscriber {
  /** The API key the stream was opened with (none: not checked). */
  keyId?: string;
  push(event: AgentEvent): void;
  /** Bytes of frames waiting for the client to read them. */
  backlog(): number;
  end(): void;
  /** Ends the stream because its key was revoked, telling the client so. */
  revoked(): void;
  /** A heartbeat at `now`; ends the stream when its client has taken nothing for STREAM_STALL_MS. */
  beat(now: number): void;
}
