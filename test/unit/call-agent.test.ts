import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { callAgent } from '../../worker/agents/registry';
import { ApiError } from '../../worker/errors';
import { toApiError } from '../../worker/middleware/error-handler';

const route = { jurisdiction: null, locationHint: null };

describe('callAgent', () => {
  it('retries a runtime internal error when asked to, and answers with the next attempt', async () => {
    let calls = 0;
    const result = await callAgent(env, 't', 'a', route, async () => {
      calls++;
      if (calls === 1) throw new Error('internal error; reference = 0m49h5p513e5i2c5d3dkpag1');
      return 'second';
    }, { retry: true });
    expect([result, calls]).toEqual(['second', 2]);
  });

  it('answers 503 agent_unavailable with Retry-After, not 500, when internal errors persist', async () => {
    const failing = callAgent(env, 't', 'a', route, async () => { throw new Error('SQL failed (out of memory: SQLITE_NOMEM): INSERT INTO executions …'); }, { retry: true });
    await expect(failing).rejects.toSatisfy((e) => e instanceof ApiError && e.code === 'agent_unavailable' && e.headers?.['retry-after'] === '1');
  });

  it('retries an object whose storage was reset under the call (a storage operation over its timeout), and answers 503, not 500, when it persists', async () => {
    let calls = 0;
    const failing = callAgent(env, 't', 'a', route, async () => {
      calls++;
      throw new Error('Durable Object storage operation exceeded timeout which caused object to be reset.');
    }, { retry: true });
    await expect(failing).rejects.toSatisfy((e) => e instanceof ApiError && e.code === 'agent_unavailable' && e.headers?.['retry-after'] === '1');
    expect(calls).toBe(3);
  });

  it('passes the object\'s own exceptions through untouched', async () => {
    const own = new Error('a bug of ours');
    await expect(callAgent(env, 't', 'a', route, async () => { throw own; }, { retry: true })).rejects.toBe(own);
  });
});

describe('an object failure no route maps itself', () => {
  const platform = (fields: { retryable?: boolean; overloaded?: boolean; durableObjectReset?: boolean }) => Object.assign(new Error('Durable Object is unreachable'), fields);

  it('is a 503 unavailable with Retry-After when the runtime marks it retryable, overloaded or reset', () => {
    const answers = [{ retryable: true }, { overloaded: true }, { durableObjectReset: true }].map((fields) => toApiError(platform(fields), 'req'));
    expect(answers.map((a) => [a.status, a.code, a.headers?.['retry-after']])).toEqual([
      [503, 'unavailable', '1'],
      [503, 'unavailable', '2'],
      [503, 'unavailable', '1'],
    ]);
  });

  it('stays a 500 when it is an exception of our own', () => {
    const answer = toApiError(new Error('a bug of ours'), 'req');
    expect([answer.status, answer.code]).toEqual([500, 'internal_error']);
  });
});
