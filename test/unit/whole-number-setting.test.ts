import { describe, expect, it } from 'vitest';
import { wholeNumberSetting } from '../../worker/lib/whole-number-setting';

describe("an operator's whole-number setting", () => {
  it('reads digits within the range, spaces around them allowed', () => {
    expect(wholeNumberSetting('32', 1, 100)).toBe(32);
    expect(wholeNumberSetting(' 7 ', 1, 100)).toBe(7);
    expect(wholeNumberSetting('0', 0, 10)).toBe(0);
  });

  it('is undefined when unset or blank, so the caller takes its default', () => {
    expect(wholeNumberSetting(undefined, 1, 100)).toBeUndefined();
    expect(wholeNumberSetting('  ', 1, 100)).toBeUndefined();
  });

  it('is null for what Number() would have read as another number, or out of range', () => {
    for (const setting of ['0x10', '1e3', '0b11', '7.5', '-1', '+5', '16px', '101', '0']) expect(wholeNumberSetting(setting, 1, 100), setting).toBeNull();
  });
});
