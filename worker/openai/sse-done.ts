/**
 * `[DONE]` as an event stream's own line, the chat completions stream's end. Only a line that
 * starts with it counts: the same text inside a JSON event (an answer that explains streaming)
 * sits mid-line, since JSON escapes line breaks, and must not make a cut stream look finished.
 * The SSE spec makes the space after `data:` optional, and some servers leave it out.
 */
const DONE_LINE = /^data: ?\[DONE\]/;
/**
 * An error event's data line, as OpenAI-compatible servers (vLLM, LiteLLM, OpenAI) send one
 * when they fail mid-stream, often followed by `[DONE]`: JSON whose first member is an `error`
 * object or message (`"error": null` is none, as the official client reads it).
 */
const ERROR_LINE = /^data: ?\{\s*"error"\s*:\s*[{"]/;
/** Longest line start worth keeping: `data: {"error":`, with some spaces, and a little. */
const KEPT = 32;

export class DoneLine {
  /** The start of the line not yet ended (at most KEPT characters). */
  private line = '';
  /** The text so far ended on a CR, so a LF that starts the next text ends the same line. */
  private endedOnCR = false;
  /** Whether a `[DONE]` line has been seen. */
  seen = false;
  /** Whether an error event came before it: the stream ended, but its answer failed. */
  errored = false;
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
      const line = this.line + (lines[i] ?? '').slice(0, KEPT);
      this.line = '';
      if (this.seen && line === '') {
        this.complete = true;
        return;
      }
      if (DONE_LINE.test(line)) this.seen = true;
      else if (!this.seen && ERROR_LINE.test(line)) this.errored = true;
    }
    if (this.line.length < KEPT) this.line += (lines[last] ?? '').slice(0, KEPT - this.line.length);
  }

  /** The stream has ended: a last line without its line break counts too. */
  end(): boolean {
    if (!this.seen && DONE_LINE.test(this.line)) this.seen = true;
    return this.seen;
  }
}
