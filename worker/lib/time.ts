export const iso = (ms: number): string => new Date(ms).toISOString();
export const isoOrUndefined = (ms: number | null | undefined): string | undefined =>
  ms === null || ms === undefined ? undefined : iso(ms);
