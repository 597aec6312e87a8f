import type { Env } from '../env';
import { wholeNumberSetting } from '../lib/whole-number-setting';

/** Days D1 keeps a finished execution's row unless the operator sets `D1_EXECUTION_RETENTION_DAYS`. */
export const DEFAULT_EXECUTION_RETENTION_DAYS = 90;
/** About a hundred years: a larger setting is a typo, not a policy. */
export const MAX_EXECUTION_RETENTION_DAYS = 36_500;
const DAY_MS = 24 * 3_600_000;

export type ExecutionRetention = { ok: true; days: number } | { ok: false; error: string };

/**
 * The operator's setting (unset or blank: the default; 0: D1 keeps every execution). One that
 * is not whole days in digits ("90d", "1e2", "-1", "7.5") is refused rather than read as
 * something near what was meant, since the value decides what is deleted.
 */
export function executionRetention(env: Pick<Env, 'D1_EXECUTION_RETENTION_DAYS'>): ExecutionRetention {
  const setting = env.D1_EXECUTION_RETENTION_DAYS;
  const days = wholeNumberSetting(setting, 0, MAX_EXECUTION_RETENTION_DAYS);
  if (days === undefined) return { ok: true, days: DEFAULT_EXECUTION_RETENTION_DAYS };
  if (days !== null) return { ok: true, days };
  return { ok: false, error: `D1_EXECUTION_RETENTION_DAYS must be whole days from 0 to ${MAX_EXECUTION_RETENTION_DAYS}, not ${JSON.stringify(String(setting).slice(0, 40))}` };
}

/**
 * The time before which a finished execution has no place in D1, or null when D1 keeps every
 * one: retention off (0), or a setting that cannot be read, which keeps everything rather than
 * guess what to delete (the cron logs it as an error every tick).
 */
export function executionRetentionCutoff(env: Pick<Env, 'D1_EXECUTION_RETENTION_DAYS'>, now: number): number | null {
  const retention = executionRetention(env);
  return retention.ok && retention.days > 0 ? now - retention.days * DAY_MS : null;
}
