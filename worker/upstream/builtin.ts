import { UpstreamError, type AttemptOptions, type Upstream, type UpstreamReply, type UpstreamRequest } from './types';

interface Topic {
  id: string;
  patterns: RegExp[];
  reply: string;
}

/** The small FAQ of the built-in customer-service responder, matched in order. */
const TOPICS: Topic[] = [
  {
    id: 'refunds',
    patterns: [/\brefund/i, /money back/i, /\breturn(s|ing)?\b/i],
    reply: 'Refunds are issued to the original payment method within 5 business days of us receiving the returned item. Items can be returned within 30 days of delivery.',
  },
  {
    id: 'orders',
    patterns: [/\border\b/i, /\bpackage\b/i, /\bparcel\b/i, /\btrack/i],
    reply: 'You can follow your order from the Orders page of your account; orders leave our warehouse within 1 business day and the tracking number is emailed as soon as they ship.',
  },
  {
    id: 'shipping',
    patterns: [/\bship(ping)?\b/i, /\bdeliver/i, /\bpostage\b/i],
    reply: 'Standard shipping takes 3-5 business days and is free over 50 EUR; express shipping takes 1-2 business days for 9.90 EUR.',
  },
  {
    id: 'opening_hours',
    patterns: [/\bopen(ing)?\b/i, /\bhours\b/i, /\bclos(e|ed|ing)\b/i],
    reply: 'Our support team is available Monday to Friday, 9:00-18:00 CET, and Saturday 10:00-14:00 CET.',
  },
  {
    id: 'greeting',
    patterns: [/^\s*(hi|hello|hey|good (morning|afternoon|evening))\b/i],
    reply: 'Hello! I can help with orders, refunds, shipping and our opening hours. What can I do for you?',
  },
];

const UNKNOWN_REPLY =
  "I'm sorry, I don't know the answer to that. I can help with orders, refunds, shipping and opening hours, or pass you to a human colleague.";

/** Longest simulated think time, so a demo input cannot pin an execution slot for long. */
const MAX_LATENCY_MS = 30_000;

/** The text the responder answers: `input.message`, a string input, or else the intent. */
export function messageOf(request: Pick<UpstreamRequest, 'intent' | 'input'>): string {
  const { input } = request;
  if (typeof input === 'string') return input;
  if (input && typeof input === 'object' && 'message' in input && typeof input.message === 'string') return input.message;
  return request.intent;
}

function simulatedLatency(input: unknown): number {
  if (input && typeof input === 'object' && 'simulateLatencyMs' in input) {
    const ms = Number(input.simulateLatencyMs);
    if (Number.isFinite(ms) && ms > 0) return Math.min(ms, MAX_LATENCY_MS);
  }
  return 0;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason as Error); }, { once: true });
  });
}

/**
 * A built-in upstream's work of `ms`, cut short as a remote call's would be: by the attempt's
 * timeout (`upstream_timeout`, as for every upstream) or by a cancel.
 */
export async function thinkFor(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, signal);
  } catch {
    const reason: unknown = signal.reason;
    if (reason instanceof DOMException && reason.name === 'TimeoutError') throw new UpstreamError('timeout', 'upstream attempt timed out', true);
    throw new UpstreamError('cancelled', 'execution was cancelled', false);
  }
}

/** The label of an agent's own builtin upstream, which its executions' attempts record. */
export const BUILTIN_LABEL = 'builtin';

/**
 * Deterministic customer-service responder that needs no network: it stands in for a model so
 * the gateway works offline. The same message always gets the same answer; it remembers the
 * last topic in the agent's context. `input.simulateLatencyMs` (up to 30 s) makes it think.
 */
export const builtinUpstream: Upstream = {
  label: BUILTIN_LABEL,
  async call(request: UpstreamRequest, { signal }: AttemptOptions): Promise<UpstreamReply> {
    const latency = simulatedLatency(request.input);
    if (latency > 0) {
      await thinkFor(latency, signal);
    }
    const message = messageOf(request);
    const topic = TOPICS.find((t) => t.patterns.some((p) => p.test(message)));
    const reply = topic?.reply ?? UNKNOWN_REPLY;
    const topicId = topic?.id ?? 'unknown';
    return {
      output: { reply, topic: topicId, answered: topic !== undefined },
      // Read where the patch is merged (in the same turn, with the context as it is then), not
      // here: runs started together answer in interleaved turns, and a count read here by each
      // of them before the first merged counted them all as one.
      get contextPatch() {
        const turns = request.context.turns;
        return { lastTopic: topicId, turns: (typeof turns === 'number' ? turns : 0) + 1 };
      },
    };
  },
};
