import { describe, expect, it } from 'vitest';
import { RETRY_SCHEDULE_MS, retrySchedule } from '../../durable/agent-webhooks';

describe('retrySchedule (WEBHOOK_RETRY_SCHEDULE_MS)', () => {
  it('is the Standard Webhooks-like default when unset or blank', () => {
    expect(retrySchedule(undefined)).toBe(RETRY_SCHEDULE_MS);
    expect(retrySchedule('  ')).toBe(RETRY_SCHEDULE_MS);
    expect(RETRY_SCHEDULE_MS[0]).toBe(5_000);
  });

  it('reads comma-separated waits in milliseconds', () => {
    expect(retrySchedule('500, 1000,2000')).toEqual([500, 1_000, 2_000]);
  });

  it.each(['abc', '500,,1000', '50', '1.5', '-1000', String(25 * 3_600_000), Array.from({ length: 21 }, () => '1000').join(',')])(
    'falls back to the default for a malformed value %s',
    (setting) => {
      expect(retrySchedule(setting)).toBe(RETRY_SCHEDULE_MS);
    },
  );
});
