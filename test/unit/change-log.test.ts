import { describe, expect, it } from 'vitest';
import { ChangeLog } from '../../worker/lib/change-log';

describe('ChangeLog', () => {
  it('says whether a key was changed after a mark, and only that key', () => {
    const log = new ChangeLog();
    const mark = log.mark();
    expect(log.changedSince('a', mark)).toBe(false);
    log.changed('a');
    expect(log.changedSince('a', mark)).toBe(true);
    expect(log.changedSince('b', mark)).toBe(false);
    expect(log.changedSince('a', log.mark())).toBe(false);
  });

  // A count per key cleared at its bound could come back to the count a lookup saw (1, cleared,
  // changed once: 1 again), and a lookup overtaken by that change would have cached the old value.
  it('calls every mark taken before it cleared its map overtaken, never unchanged', () => {
    const log = new ChangeLog(2);
    log.changed('a');
    const mark = log.mark();
    log.changed('b');
    log.changed('c');
    log.changed('a');
    expect(log.changedSince('a', mark)).toBe(true);
    expect(log.changedSince('z', mark)).toBe(true);
    expect(log.changedSince('z', log.mark())).toBe(false);
  });
});
