/**
 * An operator's whole-number setting (a wrangler var), read the one way every such setting is:
 * digits only, within `min`..`max`. `Number()` read "0x10" as 16, "1e3" as 1000 and "0b11" as
 * 3 — a limit other than the one the operator meant to write — and "7.5" or "-1" near enough to
 * pass a looser check.
 *
 * @returns the number; `undefined` when unset or blank (the caller's default); `null` when it
 * is set to something else (the caller's choice: its default, or a refusal it reports).
 */
export function wholeNumberSetting(setting: string | undefined, min: number, max: number): number | null | undefined {
  const text = setting?.trim();
  if (!text) return undefined;
  if (!/^\d{1,15}$/.test(text)) return null;
  const value = Number(text);
  return value >= min && value <= max ? value : null;
}
