import { describe, expect, it } from 'vitest';
import { builtinUpstream, messageOf } from '../../worker/upstream/builtin';
import { UpstreamError } from '../../worker/upstream/types';
import { upstreamRequest } from './fixtures';

const request = upstreamRequest;

const live = () => ({ signal: new AbortController().signal });

async function ask(message: string) {
  const reply = await builtinUpstream.call(request({ input: { message } }), live());
  return reply.output as { reply: string; topic: string; answered: boolean };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('builtinUpstream', () => {
  it('is labelled builtin', () => {
    expect(builtinUpstream.label).toBe('builtin');
  });

  it('is deterministic: the same request twice gives the same reply', async () => {
    const req = request({ input: { message: 'When will my order ship?' }, context: { turns: 2 } });
    const first = await builtinUpstream.call(req, live());
    const second = await builtinUpstream.call(req, live());
    expect(second).toEqual(first);
  });

  it.each([
    ['greeting', 'Hello!'],
    ['greeting', 'hi there'],
    ['greeting', 'Good morning'],
    ['orders', 'Where is my order?'],
    ['orders', 'How do I track my parcel?'],
    ['refunds', 'I would like a refund'],
    ['refunds', 'Can I get my money back?'],
    ['shipping', 'How long does shipping take?'],
    ['shipping', 'Do you deliver to Belgium?'],
    ['opening_hours', 'What are your opening hours?'],
    ['opening_hours', 'When are you closed?'],
  ])('answers the %s topic for "%s"', async (topic, message) => {
    const output = await ask(message);
    expect(output.topic).toBe(topic);
    expect(output.answered).toBe(true);
    expect(output.reply).toEqual(expect.any(String));
    expect(output.reply.length).toBeGreaterThan(0);
  });

  it('gives each topic its own answer', async () => {
    const replies = await Promise.all(['hello', 'my order', 'refund', 'shipping', 'opening hours'].map(async (m) => (await ask(m)).reply));
    expect(new Set(replies).size).toBe(5);
  });

  it('says so when it does not know the answer', async () => {
    const output = await ask('What is the meaning of life?');
    expect(output).toEqual({ reply: expect.any(String), topic: 'unknown', answered: false });
    expect(output.reply).not.toBe((await ask('hello')).reply);
  });

  describe('the text it answers', () => {
    it('is input.message when there is one', async () => {
      const reply = await builtinUpstream.call(request({ intent: 'shipping', input: { message: 'refund please' } }), live());
      expect(reply.output).toMatchObject({ topic: 'refunds' });
    });

    it('is the input itself when the input is a string', async () => {
      const reply = await builtinUpstream.call(request({ intent: 'shipping', input: 'refund please' }), live());
      expect(reply.output).toMatchObject({ topic: 'refunds' });
    });

    it('falls back to the intent when the input has no string message', async () => {
      for (const input of [{ other: 'refund' }, { message: 42 }, null, 7, ['refund']]) {
        const reply = await builtinUpstream.call(request({ intent: 'track my parcel', input }), live());
        expect(reply.output).toMatchObject({ topic: 'orders' });
      }
    });

    it('messageOf picks the same text', () => {
      expect(messageOf({ intent: 'i', input: { message: 'm' } })).toBe('m');
      expect(messageOf({ intent: 'i', input: 's' })).toBe('s');
      expect(messageOf({ intent: 'i', input: { message: 1 } })).toBe('i');
      expect(messageOf({ intent: 'i', input: undefined })).toBe('i');
    });
  });

  describe('contextPatch', () => {
    it('starts counting turns at 1 and records the topic', async () => {
      const reply = await builtinUpstream.call(request({ input: 'refund?', context: {} }), live());
      expect(reply.contextPatch).toEqual({ lastTopic: 'refunds', turns: 1 });
    });

    it('increments the turns found in the context', async () => {
      const reply = await builtinUpstream.call(request({ input: 'xyzzy', context: { turns: 4, lastTopic: 'orders' } }), live());
      expect(reply.contextPatch).toEqual({ lastTopic: 'unknown', turns: 5 });
    });

    it('restarts at 1 when the context\'s turns is not a number', async () => {
      const reply = await builtinUpstream.call(request({ input: 'hi', context: { turns: '4' } }), live());
      expect(reply.contextPatch).toEqual({ lastTopic: 'greeting', turns: 1 });
    });

    it('does not modify the request context', async () => {
      const context = { turns: 1 };
      await builtinUpstream.call(request({ context }), live());
      expect(context).toEqual({ turns: 1 });
    });
  });

  describe('simulateLatencyMs', () => {
    it('waits before answering', async () => {
      let settled = false;
      const pending = builtinUpstream
        .call(request({ input: { message: 'hello', simulateLatencyMs: 80 } }), live())
        .finally(() => { settled = true; });
      await sleep(10);
      expect(settled).toBe(false);
      const reply = await pending;
      expect(reply.output).toMatchObject({ topic: 'greeting', answered: true });
    });

    it('ignores a latency that is not a positive number', async () => {
      for (const simulateLatencyMs of [0, -5, 'soon', null]) {
        const reply = await builtinUpstream.call(request({ input: { message: 'hello', simulateLatencyMs } }), live());
        expect(reply.output).toMatchObject({ topic: 'greeting' });
      }
    });

    it('rejects with a cancelled UpstreamError when the signal is aborted while it waits', async () => {
      const controller = new AbortController();
      const pending = builtinUpstream.call(request({ input: { message: 'hello', simulateLatencyMs: 10_000 } }), { signal: controller.signal });
      setTimeout(() => controller.abort(), 10);
      const error = await pending.then(
        () => { throw new Error('expected a rejection'); },
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UpstreamError);
      expect(error).toMatchObject({ kind: 'cancelled', retryable: false });
    });

    it('rejects at once with a cancelled UpstreamError when the signal is already aborted', async () => {
      const controller = new AbortController();
      controller.abort();
      await expect(
        builtinUpstream.call(request({ input: { message: 'hello', simulateLatencyMs: 10_000 } }), { signal: controller.signal }),
      ).rejects.toMatchObject({ name: 'UpstreamError', kind: 'cancelled' });
    });

    it('rejects with a retryable timeout UpstreamError when the attempt times out', async () => {
      await expect(
        builtinUpstream.call(request({ input: { message: 'hello', simulateLatencyMs: 10_000 } }), { signal: AbortSignal.timeout(10) }),
      ).rejects.toMatchObject({ name: 'UpstreamError', kind: 'timeout', retryable: true });
    });
  });
});
