import { describe, expect, it } from 'vitest';
import { iso, isoOrUndefined } from '../../worker/lib/time';

describe('iso', () => {
  it('formats each instant as Date does, whether or not it repeats the last one', () => {
    for (const ms of [0, 1_700_000_000_123, 1_700_000_000_123, 1_700_000_000_124, 0, 8.64e15]) {
      expect(iso(ms)).toBe(new Date(ms).toISOString());
    }
    expect(isoOrUndefined(null)).toBeUndefined();
    expect(isoOrUndefined(5)).toBe('1970-01-01T00:00:00.005Z');
  });
});
