// How times, durations and results read in the tables.

/** A moment of today as its time alone; of another day with its date, or last week's 5 pm reads as today's. */
export function time(iso) {
  if (!iso) return '';
  const at = new Date(iso);
  return at.toDateString() === new Date().toDateString() ? at.toLocaleTimeString() : at.toLocaleString();
}
export const ms = (value) => (value === null || value === undefined ? '–' : `${Math.round(value)} ms`);

export function summary(execution) {
  if (execution.error) return `${execution.error.code}: ${execution.error.message}`;
  if (execution.output === undefined) return '';
  const output = execution.output;
  const text = typeof output === 'string' ? output : typeof output?.reply === 'string' ? output.reply : JSON.stringify(output);
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}
