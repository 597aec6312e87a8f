import { describe, expect, it } from 'vitest';
import { readBodyUpTo } from '../../worker/lib/bytes';

const encoder = new TextEncoder();

/** `pieces` as a stream: a byte stream (as a fetched body is) or, with `bytes: false`, a plain one. */
function streamOf(pieces: readonly string[], { bytes = true } = {}): { stream: ReadableStream<Uint8Array>; cancelled: () => boolean } {
  let next = 0;
  let cancelled = false;
  const source = {
    pull(controller: ReadableStreamDefaultController<Uint8Array> | ReadableByteStreamController) {
      const piece = pieces[next++];
      if (piece === undefined) controller.close();
      else controller.enqueue(encoder.encode(piece));
    },
    cancel() {
      cancelled = true;
    },
  };
  const stream = bytes ? new ReadableStream({ type: 'bytes', ...source }) : new ReadableStream<Uint8Array>(source);
  return { stream: stream as ReadableStream<Uint8Array>, cancelled: () => cancelled };
}

const text = (bytes: Uint8Array | null) => (bytes === null ? null : new TextDecoder().decode(bytes));

describe('a body read whole up to a bound', () => {
  it('reads a fetched-style body smaller than its first buffer in one piece', async () => {
    expect(text(await readBodyUpTo(new Response('{"ok":true}').body!, 1024))).toBe('{"ok":true}');
  });

  it('grows its buffer for a body that arrives in many pieces past the first buffer', async () => {
    const pieces = Array.from({ length: 50 }, (_, i) => `${String(i).padStart(2, '0')}${'x'.repeat(1998)}`);
    const read = await readBodyUpTo(streamOf(pieces).stream, 1024 * 1024);
    expect(read?.byteLength).toBe(100_000);
    expect(text(read)).toBe(pieces.join(''));
  });

  it('returns a body of exactly the bound, and null with the stream cancelled for one byte more', async () => {
    expect(text(await readBodyUpTo(streamOf(['a'.repeat(20_000), 'b'.repeat(20_000)]).stream, 40_000))).toBe('a'.repeat(20_000) + 'b'.repeat(20_000));
    const over = streamOf(['a'.repeat(20_000), 'b'.repeat(20_001), 'never read']);
    expect(await readBodyUpTo(over.stream, 40_000)).toBeNull();
    expect(over.cancelled()).toBe(true);
  });

  it('holds a bound smaller than its first buffer', async () => {
    expect(text(await readBodyUpTo(new Response('0123456789').body!, 10))).toBe('0123456789');
    expect(await readBodyUpTo(new Response('0123456789A').body!, 10)).toBeNull();
  });

  it('reads an empty body as no bytes', async () => {
    expect(await readBodyUpTo(streamOf([]).stream, 10)).toEqual(new Uint8Array(0));
  });

  it('reads a stream that is not a byte stream chunk by chunk, with the same bound', async () => {
    expect(text(await readBodyUpTo(streamOf(['ab', 'cd'], { bytes: false }).stream, 4))).toBe('abcd');
    const over = streamOf(['ab', 'cde', 'f'], { bytes: false });
    expect(await readBodyUpTo(over.stream, 4)).toBeNull();
    expect(over.cancelled()).toBe(true);
  });
});
