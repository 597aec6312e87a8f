import type { Env } from '../worker/env';
import { fail, type Failure } from '../worker/errors';
import { wholeNumberSetting } from '../worker/lib/whole-number-setting';

/**
 * The cap on an agent's open streams: its event streams, SSE and WebSocket, and its A2A streams
 * together (README, "Webhooks and events"; durable/a2a-stream-slots.ts). Their bytes were
 * bounded (4 MiB each, 16 MiB for all), their number was not: one key could open thousands,
 * each held in the object's memory and a connection of the isolate. The object counts what it
 * holds (`AgentEvents.openStreams`, `A2AServer.streams`), as the one writer of it, so the count
 * is exact and comes back as each stream ends, however it ends.
 */

/** Streams one agent holds open unless the operator sets `MAX_STREAMS_PER_AGENT`. */
export const DEFAULT_STREAMS_PER_AGENT = 32;
/** The highest value an operator can set: past it, the byte bounds alone would have to hold. */
const MOST_STREAMS_PER_AGENT = 10_000;

/**
 * Seconds a refused client is told to wait: a slot comes back when a stream ends, and one whose
 * client went without a word is found at a heartbeat (every 15 s), after a minute of silence.
 */
export const STREAM_RETRY_AFTER_S = 15;

/** The agent's cap: `MAX_STREAMS_PER_AGENT` when it is a whole number from 1 to 10,000 in digits, else the default. */
export function streamsPerAgent(env: Pick<Env, 'MAX_STREAMS_PER_AGENT'>): number {
  return wholeNumberSetting(env.MAX_STREAMS_PER_AGENT, 1, MOST_STREAMS_PER_AGENT) ?? DEFAULT_STREAMS_PER_AGENT;
}

/** Streams one API key holds open across agents unless the operator sets `MAX_STREAMS_PER_KEY` (durable/key-stream-leases.ts). */
export const DEFAULT_STREAMS_PER_KEY = 64;
/** The highest per-key value an operator can set. */
const MOST_STREAMS_PER_KEY = 100_000;

/** The key's cap: `MAX_STREAMS_PER_KEY` when it is a whole number from 1 to 100,000 in digits, else the default. */
export function streamsPerKey(env: Pick<Env, 'MAX_STREAMS_PER_KEY'>): number {
  return wholeNumberSetting(env.MAX_STREAMS_PER_KEY, 1, MOST_STREAMS_PER_KEY) ?? DEFAULT_STREAMS_PER_KEY;
}

/** 429 `too_many_streams` when `open` streams already fill the cap `max`; null when one more fits. */
export function streamRefusal(open: number, max: number): Failure | null {
  if (open < max) return null;
  const message = `this agent has ${open} streams open (event and A2A streams together), the most it may hold (${max}): close one, or retry after ${STREAM_RETRY_AFTER_S} s`;
  return fail('too_many_streams', message, { limit: 'streams.perAgent', max, open, retryAfter: STREAM_RETRY_AFTER_S });
}

/** 429 `too_many_streams` when the key's `open` streams, across its agents, already fill its cap `max`. */
export function keyStreamRefusal(open: number, max: number): Failure | null {
  if (open < max) return null;
  const message = `this API key has ${open} streams open across its agents (event and A2A streams together), the most it may hold (${max}): close one, or retry after ${STREAM_RETRY_AFTER_S} s`;
  return fail('too_many_streams', message, { limit: 'streams.perKey', max, open, retryAfter: STREAM_RETRY_AFTER_S });
}
