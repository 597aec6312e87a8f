import { describe, expect, it } from 'vitest';
import { ApiError } from '../../worker/errors';
import { decodeCursor, encodeCursor } from '../../worker/lib/cursor';

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw');
}

describe('encodeCursor / decodeCursor', () => {
  it.each([
    'a',
    'ab',
    'abc',
    'agt_01J9ZQ4X7W3K8M2N5P6R7S8T9V',
    '01HZX3K5N7Q9S1T3V5W7Y9ZB2D',
    'with-dash_and_underscore',
    '___---zzz',
    '-',
    'x'.repeat(80),
  ])('round-trips %s', (key) => {
    const cursor = encodeCursor(key);
    expect(decodeCursor(cursor)).toBe(key);
  });

  it('makes URL-safe cursors without padding', () => {
    for (const key of ['a', 'ab', 'abc', 'abcd', '___', '---', 'zZ9_-', 'agt_01J9ZQ4X7W3K8M2N5P6R7S8T9V']) {
      expect(encodeCursor(key)).toMatch(/^[A-Za-z0-9_-]+$/);
    }
  });

  it('does not expose the key as is', () => {
    expect(encodeCursor('agt_123')).not.toContain('agt_123');
  });

  it('treats a missing or empty cursor as "from the start"', () => {
    expect(decodeCursor(undefined)).toBeUndefined();
    expect(decodeCursor('')).toBeUndefined();
  });

  it.each([
    ['not base64 at all', '!!!not a cursor!!!'],
    ['a lone base64 character', 'a'],
    ['a key with characters keys never have', encodeCursor('has space')],
    ['a key longer than any key', encodeCursor('x'.repeat(81))],
  ])('rejects %s with an invalid_request ApiError', (_label, cursor) => {
    const error = thrownBy(() => decodeCursor(cursor));
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).code).toBe('invalid_request');
    expect((error as ApiError).status).toBe(400);
  });
});
