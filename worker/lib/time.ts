// The last conversion, reused: the runtime's clock only moves between I/O, so one request's
// views and events mostly format the same instant (an execution's created, started and event
// times), and `toISOString` is a measurable share of an execution's CPU.
let lastMs = Number.NaN;
let lastIso = '';

export const iso = (ms: number): string => {
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
};

export const isoOrUndefined = (ms: number | null | undefined): string | undefined =>
  ms === null || ms === undefined ? undefined : iso(ms);
