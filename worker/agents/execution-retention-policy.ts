import { z } from 'zod';
import type { Env } from '../env';

/** Days D1 keeps a finished execution's row unless the operator sets `D1_EXECUTION_RETENTION_DAYS`. */
export const DEFAULT_EXECUTION_RETENTION_DAYS = 90;
/** About a hundred years: a larger setting is a typo, not a policy. */
export const MAX_EXECUTION_RETENTION_DAYS = 36_500;
const DAY_MS = 24 * 3_600_000;

/**
 * Whole days, written as digits only: "90d", "1e2", "-1" or "7.5" are refused rather than read
 * as something near what was meant, since the value decides what is deleted.
 */
const RetentionDays = z
  .string()
  .trim()
  .regex(/^\d{1,6}$/, 'whole days, digits only')
  .transform(Number)
  .pipe(z.number().int().min(0).max(MAX_EXECUTION_RETENTION_DAYS));

export type ExecutionRetention = { ok: true; days: number } | { ok: false; error: string };

/** The operator's setting (unset or blank: the default; 0: D1 keeps every execution). */
export function executionRetention(env: Pick<Env, 'D1_EXECUTION_RETENTION_DAYS'>): ExecutionRetention {
  const setting = env.D1_EXECUTION_RETENTION_DAYS;
  if (setting === undefined || setting.trim() === '') return { ok: true, days: DEFAULT_EXECUTION_RETENTION_DAYS };
  const parsed = RetentionDays.safeParse(setting);
  if (parsed.success) return { ok: true, days: parsed.data };
  return { ok: false, error: `D1_EXECUTION_RETENTION_DAYS must be whole days from 0 to ${MAX_EXECUTION_RETENTION_DAYS}, not ${JSON.stringify(setting.slice(0, 40))}` };
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
