/**
 * `[DONE]` as an event stream's own line, the chat completions stream's end. Only a line that
 * starts with it counts: the same text inside a JSON event (an answer that explains streaming)
 * sits mid-line, since JSON escapes line breaks, and must not make a cut stream look finished.
 * The SSE spec makes the space after `data:` optional, and some servers leave it out.
 */
const DONE_LINE = /^data: ?\[DONE\]/;
/** Longest line start worth keeping: `data: [DONE]` and a little. */
const KEPT = 16;

export class DoneLine {
  /** The start of the line not yet ended (at most KEPT characters). */
  private line = '';
  /** Whether a `[DONE]` line has been seen. */
  seen = false;

  /** Reads the next decoded text of the stream. */
  push(text: string): void {
    if (this.seen) return;
    const lines = text.split(/\r\n|\r|\n/);
    const last = lines.length - 1;
    for (let i = 0; i < last; i++) {
      if (DONE_LINE.test(this.line + (lines[i] ?? '').slice(0, KEPT))) {
        this.seen = true;
        return;
      }
      this.line = '';
    }
    if (this.line.length < KEPT) this.line += (lines[last] ?? '').slice(0, KEPT - this.line.length);
  }

  /** The stream has ended: a last line without its line break counts too. */
  end(): boolean {
    if (!this.seen && DONE_LINE.test(this.line)) this.seen = true;
    return this.seen;
  }
}
