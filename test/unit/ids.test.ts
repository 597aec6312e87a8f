import { describe, expect, it } from 'vitest';
import { newId } from '../../worker/lib/ids';

describe('newId', () => {
  it('is the prefix and a lower-case ULID', () => {
    expect(newId('ex')).toMatch(/^ex_[0-9a-hjkmnp-tv-z]{26}$/);
  });

  it('sorts in creation order and never repeats, many per millisecond', () => {
    const ids = Array.from({ length: 5_000 }, () => newId('ex'));
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
  });
});
