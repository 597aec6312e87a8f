import { describe, expect, it } from 'vitest';
import { budgetPeriod, gcra, rescaleTat, tightest } from '../../durable/key-limiter-policy';
import { completionChars, estimateChatTokens, estimatedTokens, totalTokens } from '../../worker/limits/usage';

describe('GCRA rate window', () => {
  it('allows a burst of the limit, then refuses until one interval has passed', () => {
    let tat: number | undefined;
    const remaining: number[] = [];
    for (let i = 0; i < 3; i++) {
      const check = gcra(tat, 0, 3, 1_000);
      expect(check.allowed).toBe(true);
      remaining.push(check.state.remaining);
      tat = check.tat;
    }
    expect(remaining).toEqual([2, 1, 0]);
    const refused = gcra(tat, 0, 3, 1_000);
    expect(refused).toMatchObject({ allowed: false, retryAfter: 1, state: { limit: 3, remaining: 0, reset: 1 } });
    expect(gcra(tat, 334, 3, 1_000).allowed).toBe(true);
    expect(gcra(tat, 1_000, 3, 1_000).state.remaining).toBe(2);
  });

  it('reports Retry-After in whole seconds for a per-minute window', () => {
    let tat: number | undefined;
    for (let i = 0; i < 2; i++) tat = gcra(tat, 0, 2, 60_000).tat;
    expect(gcra(tat, 0, 2, 60_000)).toMatchObject({ allowed: false, retryAfter: 30 });
  });

  it('keeps what was used when a limit changes', () => {
    // One request used of 1/min (TAT one minute ahead) is one of 100/min: 0.6 s ahead.
    expect(rescaleTat(60_000, 0, 1, 100, 60_000)).toBeCloseTo(600);
    expect(rescaleTat(600, 0, 100, 1, 60_000)).toBeCloseTo(60_000);
    expect(rescaleTat(undefined, 0, 1, 2, 1_000)).toBeUndefined();
  });
});

describe('budget periods (UTC)', () => {
  it('names and bounds days and months', () => {
    const now = Date.UTC(2026, 10, 26, 23, 59, 59);
    expect(budgetPeriod('day', now)).toEqual({ key: 'd:2026-11-26', start: Date.UTC(2026, 10, 26), end: Date.UTC(2026, 10, 27) });
    expect(budgetPeriod('month', now)).toEqual({ key: 'm:2026-11', start: Date.UTC(2026, 10, 1), end: Date.UTC(2026, 11, 1) });
    expect(budgetPeriod('month', Date.UTC(2026, 11, 31, 12)).end).toBe(Date.UTC(2027, 0, 1));
  });
});

describe('headers and tokens', () => {
  it('reports the policy closest to refusing', () => {
    expect(tightest([{ limit: 10, remaining: 5, reset: 1 }, { limit: 100, remaining: 2, reset: 60 }])).toEqual({ limit: 100, remaining: 2, reset: 60 });
    expect(tightest([])).toBeNull();
  });

  it('estimates a chat from its cap and prompt, and reads usage.total_tokens', () => {
    // A stated cap must fit whole; the default guess may shrink to the prompt and one token.
    expect(estimateChatTokens({ max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })).toEqual({ tokens: 6, least: 6, prompt: 1, choices: 1 });
    expect(estimateChatTokens({ max_completion_tokens: 10, max_tokens: 99, messages: [{ role: 'user', content: 'x'.repeat(40) }] })).toEqual({ tokens: 20, least: 20, prompt: 10, choices: 1 });
    expect(estimateChatTokens({ messages: [{ role: 'user', content: 'x'.repeat(40) }] })).toEqual({ tokens: 266, least: 11, prompt: 10, choices: 1 });
    // Each of n choices may use the cap (or the guess); a shrunk one leaves each at least a token.
    expect(estimateChatTokens({ n: 3, max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })).toEqual({ tokens: 16, least: 16, prompt: 1, choices: 3 });
    expect(estimateChatTokens({ n: 2, messages: [{ role: 'user', content: 'hi' }] })).toEqual({ tokens: 513, least: 3, prompt: 1, choices: 2 });
    expect(estimateChatTokens({ n: 2.5, max_tokens: 5, messages: [] })).toEqual({ tokens: 5, least: 5, prompt: 0, choices: 1 });
    expect(estimateChatTokens({ messages: [] })).toEqual({ tokens: 256, least: 1, prompt: 0, choices: 1 });
    expect(estimateChatTokens(null)).toEqual({ tokens: 256, least: 1, prompt: 0 });
    expect(totalTokens('{"usage":{"total_tokens":15}}', 3, 100)).toBe(15);
    expect(totalTokens('{"usage":{}}', 3, 100)).toBeNull();
    expect(totalTokens('not json', 3, 100)).toBeNull();
  });

  it('estimates a completion without usage from its answer text, never above the reservation', () => {
    const answer = (message: Record<string, unknown>, usage: unknown = undefined) => JSON.stringify({ choices: [{ index: 0, message }], ...(usage !== undefined && { usage }) });
    // 3 prompt tokens and 9 characters: ceil(9/4) = 3.
    expect(totalTokens(answer({ role: 'assistant', content: '123456789' }), 3, 100)).toBe(6);
    expect(totalTokens(answer({ role: 'assistant', content: '123456789' }, null), 3, 100)).toBe(6);
    expect(totalTokens(answer({ role: 'assistant', content: 'x'.repeat(4000) }), 3, 100)).toBe(100);
    // Tool calls' names and arguments, a refusal and reasoning are text the model wrote too.
    const calls = { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get', arguments: '{"city":"Oslo"}' } }] };
    expect(completionChars([{ message: calls }], 'message')).toBe(3 + 15);
    expect(completionChars([{ delta: { refusal: 'no', reasoning_content: 'abc' } }, { delta: { content: 'hi', function_call: { arguments: '{}' } } }], 'delta')).toBe(2 + 3 + 2 + 2);
    expect(completionChars([{ delta: { content: 'hi' } }], 'message')).toBe(0);
    expect(completionChars(undefined, 'delta')).toBe(0);
    expect(estimatedTokens(3, 0, 100)).toBe(3);
    // Not a completion: the reservation (null) settles it.
    expect(totalTokens('{"object":"list"}', 3, 100)).toBeNull();
  });
});
