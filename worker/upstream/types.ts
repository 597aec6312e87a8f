import type { ExecutionError } from '../schemas/execution';
export type { Lease } from '../pools/runtime';

export interface HistoryEntry {
  role: 'user' | 'assistant';
  content: string;
}

/** What an agent sends to its upstream for one execution. */
export interface UpstreamRequest {
  executionId: string;
  agentId: string;
  intent: string;
  input: unknown;
  instructions: string | null;
  /** The agent's context as it is when read (durable/run-request.ts): each attempt sends it as it stands then. */
  context: Record<string, unknown>;
  history: readonly HistoryEntry[];
}

export interface UpstreamReply {
  output: unknown;
  /** JSON Merge Patch the agent applies to its context when the execution succeeds. */
  contextPatch?: Record<string, unknown>;
}

export interface AttemptOptions {
  signal: AbortSignal;
}

/** Where the next attempt goes, as `Upstream.next` chose it. */
export interface AttemptChoice {
  label: string;
  /** Per-attempt timeout the target asks for, if any. */
  timeoutMs?: number;
  /** Epoch ms before which the target asked (Retry-After) not to be called; 0 or absent: now. */
  notBefore?: number;
}

/**
 * One upstream back end. `call` makes a single attempt; retries, timeouts and failover across
 * pool targets live in `invokeUpstream`, so a pool can replace this.
 */
export interface Upstream {
  readonly label: string;
  /** Per-attempt timeout the target asks for, if any. */
  readonly timeoutMs?: number;
  /**
   * Chooses where the next attempt goes (a pool picks a target). Single-target upstreams do
   * not need it.
   */
  next?(): AttemptChoice;
  /** The attempt `next` chose will not be made (its target's Retry-After ends past the deadline). */
  skip?(): void;
  call(request: UpstreamRequest, options: AttemptOptions): Promise<UpstreamReply>;
}

export type UpstreamFailureKind = 'timeout' | 'network' | 'http' | 'invalid_response' | 'refused' | 'cancelled';

/** A failed attempt. `retryable` says whether another attempt may succeed. */
export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  constructor(
    readonly kind: UpstreamFailureKind,
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export type InvokeOutcome =
  | { ok: true; reply: UpstreamReply; attempts: number }
  | { ok: false; error: ExecutionError; attempts: number; cancelled: boolean };
