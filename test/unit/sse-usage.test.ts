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
  it('removes the usage chunk and nothing else, however the stream is split', () => {
    for (const eol of ['\n', '\r\n']) {
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
});
