// How times, durations and results read in the tables.

export const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '');
export const ms = (value) => (value === null || value === undefined ? '–' : `${Math.round(value)} ms`);

export function summary(execution) {
  if (execution.error) return `${execution.error.code}: ${execution.error.message}`;
  if (execution.output === undefined) return '';
  const output = execution.output;
  const text = typeof output === 'string' ? output : typeof output?.reply === 'string' ? output.reply : JSON.stringify(output);
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}
