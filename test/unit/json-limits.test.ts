import { describe, expect, it } from 'vitest';
import { exceedsJsonBytes, jsonLimitProblem } from '../../worker/lib/json-limits';

describe('JSON size limits, counted in UTF-8 bytes', () => {
  it('counts multi-byte text by its encoded size, not its length', () => {
    // "€" is 3 bytes in UTF-8: 10 of them and the quotes are 32 bytes in 12 UTF-16 units.
    const euros = '€'.repeat(10);
    expect(exceedsJsonBytes(euros, 32)).toBe(false);
    expect(exceedsJsonBytes(euros, 31)).toBe(true);
    expect(exceedsJsonBytes('a'.repeat(10), 12)).toBe(false);
    expect(exceedsJsonBytes('a'.repeat(10), 11)).toBe(true);
  });

  it('names the size and the limit when a value is over it, and nothing when it is within', () => {
    expect(jsonLimitProblem({ note: '€'.repeat(10) }, { maxBytes: 20 })).toBe('41 bytes of JSON exceed the limit of 20');
    expect(jsonLimitProblem({ note: '€'.repeat(10) }, { maxBytes: 41 })).toBeNull();
    expect(jsonLimitProblem([[[1]]], { maxBytes: 100, maxDepth: 2 })).toBe('nested deeper than 2 levels');
  });
});
