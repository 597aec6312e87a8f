import { callersStatus, errorStatus } from './stream-error';

/**
 * `[DONE]` as an event stream's own line, the chat completions stream's end. Only a line that
 * starts with it counts: the same text inside a JSON event (an answer that explains streaming)
 * sits mid-line, since JSON escapes line breaks, and must not make a cut stream look finished.
 * The SSE spec makes the space after `data:` optional, and some servers leave it out.
 */
const DONE_LINE = /^data: ?\[DONE\]/;
/**
 * An error event's data line, as OpenAI-compatible servers (vLLM, LiteLLM, OpenAI) send one
 * when they fail mid-stream, often followed by `[DONE]`: JSON with an `error` member that is an
 * object or a message (`"error": null` is none, as the official client reads it). Where the
 * member is the first (the usual case) its line start says so; elsewhere in the object (after
 * an `id`, say) the line is parsed, but only a line that holds `"error"` at all, a few in a
 * stream: answer text spells its quotes escaped, so it never does. Either is parsed for the
 * status it names, which says whose error it is (`callersStatus`).
 */
const ERROR_FIRST = /^data: ?\{\s*"error"\s*:\s*[{"]/;
/** Text every error event's data holds (answer text spells its quotes escaped). */
export const ERROR_NAME = '"error"';
/**
 * Longest line kept whole to be parsed for an error member that is not its JSON's first. An
 * error event is a few hundred bytes; a longer line that holds `"error"` is judged by its start.
 */
const MAX_LINE = 64 * 1024;

/**
 * The error an error event's data line names (see `errorMember`), or `true` for a line that
 * starts as one but cannot be read whole (longer than MAX_LINE, or no JSON): its status is
 * then unknown. Undefined for every other line.
 */
export function lineError(line: string, whole: boolean): string | object | true | undefined {
  if (!line.startsWith('data:') || !line.includes(ERROR_NAME)) return undefined;
  const first = ERROR_FIRST.test(line) || undefined;
  if (!whole) return first;
  let data: unknown;
  try {
    data = JSON.parse(line.slice(line.startsWith('data: ') ? 6 : 5));
  } catch {
    return first;
  }
  return errorMember(data) ?? first;
}

/**
 * The `error` member of an event's parsed data when it names an error: a message or an object
 * (`null` is none, as the official client reads it).
 */
export function errorMember(data: unknown): string | object | undefined {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return undefined;
  const error: unknown = (data as { error?: unknown }).error;
  return typeof error === 'string' || (typeof error === 'object' && error !== null) ? error : undefined;
}

export class DoneLine {
  /** The line not yet ended (at most MAX_LINE characters). */
  private line = '';
  /** The line not yet ended was longer than MAX_LINE: `line` is its start. */
  private cut = false;
  /** The text so far ended on a CR, so a LF that starts the next text ends the same line. */
  private endedOnCR = false;
  /** Whether a `[DONE]` line has been seen. */
  seen = false;
  /**
   * Whether an error event of the target's came before it: the stream ended, but its answer
   * failed. One whose status is the caller's (`callersStatus`) is none, as a 4xx answer is none.
   */
  errored = false;
  /** Whether an error event whose status is the caller's came before it (and `errored` may follow). */
  callersError = false;
  /**
   * Whether the `[DONE]` event has ended too (the blank line after it): nothing the stream may
   * still send is part of the answer, so it is complete whether or not the server closes it.
   */
  complete = false;

  /** Reads the next decoded text of the stream. */
  push(text: string): void {
    if (this.complete || text === '') return;
    const rest = this.endedOnCR && text.startsWith('\n') ? text.slice(1) : text;
    this.endedOnCR = text.endsWith('\r');
    const lines = rest.split(/\r\n|\r|\n/);
    const last = lines.length - 1;
    for (let i = 0; i < last; i++) {
      const part = lines[i] ?? '';
      const line = this.line ? this.keep(part) : part;
      const whole = !this.cut && line.length <= MAX_LINE;
      this.line = '';
      this.cut = false;
      if (this.seen && line === '') {
        this.complete = true;
        return;
      }
      if (DONE_LINE.test(line)) this.seen = true;
      else if (!this.seen && !this.errored) this.judge(line, whole);
    }
    this.line = this.keep(lines[last] ?? '');
  }

  /** The stream has ended: a last line without its line break counts too. */
  end(): boolean {
    if (!this.seen && DONE_LINE.test(this.line)) this.seen = true;
    return this.seen;
  }

  /** Notes the error event `line` is, if it is one: the caller's (a 4xx status it names) or the target's. */
  private judge(line: string, whole: boolean): void {
    const error = lineError(line, whole);
    if (error === undefined) return;
    if (error !== true && callersStatus(errorStatus(error))) this.callersError = true;
    else this.errored = true;
  }

  /** The line not yet ended with `part` after it, up to MAX_LINE characters (`cut` past them). */
  private keep(part: string): string {
    const room = MAX_LINE - this.line.length;
    if (part.length > room) this.cut = true;
    // Past the bound only the start matters, and it is kept already.
    if (room <= 0) return this.line;
    return this.line + (part.length > room ? part.slice(0, room) : part);
  }
}
