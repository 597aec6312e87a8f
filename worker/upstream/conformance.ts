import type { Env } from '../env';
import { thinkFor } from './builtin';
import { UpstreamError, type AttemptOptions, type Upstream, type UpstreamReply, type UpstreamRequest } from './types';

/**
 * The scripted behaviours of the A2A conformance suite (a2aproject/a2a-tck): the suite drives
 * its system under test by the prefix of the message id. Every behaviour runs as an ordinary
 * execution; its output tells the A2A layer which task state and artifacts to show
 * (`output.a2a`, see durable/a2a-view.ts). A production agent must never change behaviour on
 * a client-chosen message id, so the mode is refused unless the operator enables it.
 */
export const conformanceEnabled = (env: Pick<Env, 'ENABLE_CONFORMANCE_UPSTREAM'>): boolean => env.ENABLE_CONFORMANCE_UPSTREAM === 'true';

/** The A2A outcome an upstream can ask for, beyond plain success (COMPLETED). */
export type A2AOutcomeState = 'input-required' | 'auth-required' | 'rejected';

/** Parts in A2A's JSON form (`{text}`, `{data}`, `{url, mediaType, filename}`, `{raw}`). */
export type WirePart = Record<string, unknown>;

export interface A2AOutcome {
  state?: A2AOutcomeState;
  artifacts?: { name: string; parts: WirePart[] }[];
}

/** Longest a `tck-cancel` task waits for its cancel, so an abandoned run frees its slot. */
const CANCEL_WAIT_MS = 120_000;
const LONG_RUNNING_MS = 1_000;

interface ConformanceInput {
  messageId: string;
  text: string;
  /** 1 for the message that created the task, 2… for follow-ups of an interrupted task. */
  turn: number;
}

function inputOf(request: UpstreamRequest): ConformanceInput {
  const input = (request.input ?? {}) as Record<string, unknown>;
  return {
    messageId: typeof input.messageId === 'string' ? input.messageId : '',
    text: typeof input.message === 'string' ? input.message : '',
    turn: typeof input.turn === 'number' ? input.turn : 1,
  };
}

const reply = (text: string, a2a: A2AOutcome = {}): UpstreamReply => ({ output: { reply: text, a2a } });

/** Behaviours by message-id prefix, longest first so no prefix shadows a longer one. */
const BEHAVIOURS: [string, (input: ConformanceInput, signal: AbortSignal) => Promise<UpstreamReply>][] = [
  ['tck-artifact-file-url', async () => reply('file url artifact', { artifacts: [{ name: 'file-url', parts: [{ url: 'https://example.com/output.txt', mediaType: 'text/plain', filename: 'output.txt' }] }] })],
  ['tck-message-response', async () => reply('Direct message response')],
  ['tck-artifact-text', async () => reply('text artifact', { artifacts: [{ name: 'text', parts: [{ text: 'Generated text content' }] }] })],
  ['tck-artifact-data', async () => reply('data artifact', { artifacts: [{ name: 'data', parts: [{ data: { key: 'value', count: 42 } }] }] })],
  ['tck-artifact-file', async () => reply('file artifact', { artifacts: [{ name: 'file', parts: [{ raw: btoa('tck'), mediaType: 'text/plain', filename: 'output.txt' }] }] })],
  ['tck-complete-task', async () => reply('Hello from TCK')],
  ['tck-input-required', async (input) => (input.turn > 1 ? reply('Thanks, that is all I needed') : reply('Please provide more input', { state: 'input-required' }))],
  ['tck-stream-chunked', async () => reply('chunked', { artifacts: [{ name: 'chunked', parts: [{ text: 'chunk 1 ' }, { text: 'chunk 2 ' }, { text: 'chunk 3' }] }] })],
  ['tck-auth-required', async () => reply('Authentication required', { state: 'auth-required' })],
  ['tck-long-running', async (_input, signal) => { await thinkFor(LONG_RUNNING_MS, signal); return reply('long running work finished'); }],
  ['tck-task-failure', async () => { throw new UpstreamError('refused', 'tck-task-failure: the scripted failure', false); }],
  ['tck-reject-task', async () => reply('Request rejected', { state: 'rejected' })],
  ['tck-stream-basic', async () => reply('Streaming response', { artifacts: [{ name: 'stream', parts: [{ text: 'Streaming response' }] }] })],
  ['tck-multi-turn', async (input) => (input.text.trim().toLowerCase() === 'done' ? reply('Conversation complete') : reply(`Received "${input.text}"; send "done" to finish`, { state: 'input-required' }))],
  ['tck-cancel', async (_input, signal) => { await thinkFor(CANCEL_WAIT_MS, signal); return reply('was never cancelled'); }],
];

export const conformanceUpstream: Upstream = {
  label: 'builtin a2a-conformance',
  async call(request: UpstreamRequest, { signal }: AttemptOptions): Promise<UpstreamReply> {
    const input = inputOf(request);
    const behaviour = BEHAVIOURS.find(([prefix]) => input.messageId.startsWith(prefix));
    if (behaviour) return behaviour[1](input, signal);
    // A follow-up of an interrupted task (its own message id carries no prefix) completes it.
    if (input.turn > 1) return reply('Thanks, that is all I needed');
    return reply(`Unhandled messageId prefix: ${input.messageId || '(none)'}`);
  },
};
