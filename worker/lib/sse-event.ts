/**
 * The JSON of one SSE event's data lines (joined as the SSE spec joins them), or undefined: an
 * event without data, data that is not JSON, or OpenAI's `[DONE]`. `text` is the event without
 * its closing blank line.
 */
export function sseEventData(text: string): unknown {
  const data = text
    .split(/\r\n|\r|\n/)
    .filter((line) => line.startsWith('data:'))
    .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
    .join('\n');
  if (data === '[DONE]') return undefined;
  try {
    return JSON.parse(data) as unknown;
  } catch {
    return undefined;
  }
}
