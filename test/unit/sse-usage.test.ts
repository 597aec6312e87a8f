import { describe, expect, it } from 'vitest';
import type { ChatUsage } from '../../worker/limits/usage';
import { UsageStripper } from '../../worker/openai/sse-usage';

const encoder = new TextEncoder();
const USAGE = { prompt_tokens: 12, completion_tokens: 34, total_tokens: 46 };
const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm' };
const event = (payload: unknown, eol = '\n') => `data: ${JSON.stringify(payload)}${eol}${eol}`;

/** A stream as OpenAI sends it when asked for usage: `usage: null` on each chunk, then the usage chunk. */
function openaiStream(eol = '\n') {
  const before = [
    event({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], usage: null }, eol),
    event({ ...base, choices: [{ index: 0, delta: { content: 'Grüße — 👋' }, finish_reason: null }], usage: null }, eol),
    event({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: null }, eol),
  ].join('');
  const usage = event({ ...base, choices: [], usage: USAGE }, eol);
  const after = `data: [DONE]${eol}${eol}`;
  return { before, usage, after };
}

/** Feeds `bytes` to a stripper in pieces of `size` bytes; what reached the client and the usage reported. */
function strip(bytes: Uint8Array, size: number) {
  const reported: ChatUsage[] = [];
  const stripper = new UsageStripper((usage) => reported.push(usage));
  const out: number[] = [];
  for (let at = 0; at < bytes.byteLength; at += size) for (const part of stripper.push(bytes.slice(at, at + size))) out.push(...part);
  const rest = stripper.flush();
  if (rest) out.push(...rest);
  return { out: new Uint8Array(out), reported };
}

describe('UsageStripper', () => {
  it('removes the usage chunk and nothing else, however the stream is split, whatever its line endings', () => {
    for (const eol of ['\n', '\r\n', '\r']) {
      const { before, usage, after } = openaiStream(eol);
      const input = encoder.encode(before + usage + after);
      const expected = encoder.encode(before + after);
      for (let size = 1; size <= input.byteLength; size++) {
        const { out, reported } = strip(input, size);
        expect(out, `pieces of ${size} bytes, ${JSON.stringify(eol)}`).toEqual(expected);
        expect(reported).toEqual([USAGE]);
      }
    }
  });

  it('keeps an empty-choices chunk without usage (Azure prompt_filter_results) and a content chunk carrying usage, reporting the last usage', () => {
    const filter = event({ ...base, choices: [], prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }] });
    const early = { prompt_tokens: 12, completion_tokens: 1, total_tokens: 13 };
    const content = event({ ...base, choices: [{ index: 0, delta: { content: 'hi' }, finish_reason: 'stop' }], usage: early });
    const input = encoder.encode(filter + content + event({ ...base, choices: [], usage: USAGE }) + 'data: [DONE]\n\n');
    const { out, reported } = strip(input, 5);
    expect(new TextDecoder().decode(out)).toBe(filter + content + 'data: [DONE]\n\n');
    expect(reported).toEqual([early, USAGE]);
  });

  it('passes an event too long to be a usage chunk on as it arrives, and still strips the usage chunk after it', () => {
    for (const eol of ['\n', '\r\n']) {
      const long = event({ ...base, choices: [{ index: 0, delta: { content: 'x'.repeat(40_000) }, finish_reason: null }], usage: null }, eol);
      const { usage, after } = openaiStream(eol);
      const input = encoder.encode(long + usage + after);
      const stripper = new UsageStripper(() => undefined);
      // Halfway through the long event, most of what arrived has gone on.
      const half = stripper.push(input.slice(0, 20_000)).reduce((n, part) => n + part.byteLength, 0);
      expect(half).toBeGreaterThan(20_000 - 8 * 1024 - 1);
      for (const size of [1, 2, 3, 1000, 4096]) {
        const { out, reported } = strip(input, size);
        expect(out, `pieces of ${size} bytes, ${JSON.stringify(eol)}`).toEqual(encoder.encode(long + after));
        expect(reported).toEqual([USAGE]);
      }
    }
  });

  it('hands out an event the stream never ended as it came, and reports nothing for a stream without usage', () => {
    const input = encoder.encode(event({ ...base, choices: [{ index: 0, delta: { content: 'x' }, finish_reason: null }] }) + 'data: {"choi');
    const { out, reported } = strip(input, 3);
    expect(out).toEqual(input);
    expect(reported).toEqual([]);
  });

  it('counts the answer text of a stream without usage as it passes, however it is split, changing nothing', () => {
    const text = ['Grüße — 👋', ' und', '!'];
    const input = encoder.encode([
      event({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }),
      ...text.map((content) => event({ ...base, choices: [{ index: 0, delta: { content }, finish_reason: null }] })),
      event({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'get', arguments: '{"a":' } }] }, finish_reason: null }] }),
      event({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '1}' } }] }, finish_reason: null }] }),
      event({ ...base, choices: [{ index: 0, delta: { refusal: 'no' } }, { index: 1, delta: { content: 'two' } }] }),
      event({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }),
      'data: [DONE]\n\n',
    ].join(''));
    const expected = text.join('').length + 'get'.length + '{"a":1}'.length + 'no'.length + 'two'.length;
    for (const size of [...Array.from({ length: 64 }, (_, i) => i + 1), 97, 256, 511, input.byteLength]) {
      const stripper = new UsageStripper(() => undefined, false, true);
      const out: number[] = [];
      for (let at = 0; at < input.byteLength; at += size) for (const part of stripper.push(input.slice(at, at + size))) out.push(...part);
      const rest = stripper.flush();
      if (rest) out.push(...rest);
      expect(new Uint8Array(out), `pieces of ${size} bytes`).toEqual(input);
      expect(stripper.completionChars, `pieces of ${size} bytes`).toBe(expected);
      expect(stripper.sawUsage).toBe(false);
    }
  });

  it('counts nothing without `count`, and notes a usage when one passes', () => {
    const { before, usage, after } = openaiStream();
    const stripper = new UsageStripper(() => undefined);
    stripper.push(encoder.encode(before + usage + after));
    expect(stripper.completionChars).toBe(0);
    expect(stripper.sawUsage).toBe(true);
  });

  it('counts a long event whole however it is split, still passing it on as it arrives; one too long to keep at its length in bytes', () => {
    const long = (n: number) => event({ ...base, choices: [{ index: 0, delta: { content: 'ü'.repeat(n) }, finish_reason: null }] });
    const tail = event({ ...base, choices: [{ index: 0, delta: { content: 'abc' } }] });
    for (const [n, expected] of [[40_000, 40_003], [300_000, encoder.encode(long(300_000)).byteLength + 3]] as const) {
      for (const size of n < 100_000 ? [1, 7, 1000, 65_536] : [4096, 65_536]) {
        const stripper = new UsageStripper(() => undefined, false, true);
        const input = encoder.encode(long(n) + tail);
        let out = 0;
        let mostHeld = 0;
        for (let at = 0; at < input.byteLength; at += size) {
          out += stripper.push(input.slice(at, at + size)).reduce((sum, part) => sum + part.byteLength, 0);
          mostHeld = Math.max(mostHeld, Math.min(at + size, input.byteLength) - out);
        }
        // Nothing past MAX_HELD (8 KiB) waits for its event's end.
        expect(mostHeld).toBeLessThanOrEqual(8 * 1024 + size);
        expect(stripper.flush()).toBeNull();
        expect(out).toBe(input.byteLength);
        // Past what is kept, never less than its text: the estimate errs towards the charge.
        expect(stripper.completionChars, `${n} characters in pieces of ${size} bytes`).toBe(expected);
      }
    }
    const cut = new UsageStripper(() => undefined, false, true);
    const torn = encoder.encode(long(20_000)).slice(0, 30_000);
    cut.push(torn);
    expect(cut.flush()).toBeNull();
    expect(cut.completionChars).toBe(30_000);
    const unended = new UsageStripper(() => undefined, false, true);
    unended.push(encoder.encode(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: 'tail' } }] })}\n`));
    expect(unended.flush()).not.toBeNull();
    expect(unended.completionChars).toBe(4);
    const done = new UsageStripper(() => undefined, false, true);
    done.push(encoder.encode('data: [DONE]\n'));
    done.flush();
    expect(done.completionChars).toBe(0);
  });
});
