import { describe, expect, it } from 'vitest';
import type { ChatUsage } from '../../worker/limits/usage';
import { withoutCredential } from '../../worker/lib/masked-credential';
import { readFirstEvent } from '../../worker/openai/first-event';
import { EventFramer } from '../../worker/openai/sse-frame';
import { relayStream, type RelayOptions } from '../../worker/openai/stream-relay';

const encoder = new TextEncoder();
const chunk = (content: string) => `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`;
const USAGE = { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 };

/** An upstream body that yields `pieces` one read each, then ends (or stays open with `hold`). */
function upstream(pieces: string[], hold = false): { reader: ReadableStreamDefaultReader<Uint8Array>; first: Uint8Array; sent: Uint8Array[] } {
  const sent = pieces.map((piece) => encoder.encode(piece));
  let at = 1;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = sent[at++];
      if (next) controller.enqueue(next);
      else if (!hold) controller.close();
    },
  });
  return { reader: body.getReader(), first: sent[0] ?? new Uint8Array(0), sent };
}

const options = (extra: Partial<RelayOptions> = {}): RelayOptions => ({ idleMs: 5_000, deadlineAt: Date.now() + 10_000, abort: () => undefined, ...extra });

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const reader = stream.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) out.push(next.value);
  return out;
}

describe('relayStream and the usage of a stream', () => {
  it('passes every upstream chunk that ends an event on as it came without `usage` (a key without a budget), and holds a half event until its end', async () => {
    const { reader, first, sent } = upstream([chunk('a'), chunk('b').slice(0, 9), chunk('b').slice(9), chunk('c'), 'data: [DONE]\n\n']);
    const out = await readAll(relayStream(first, reader, options()));
    expect(out).toHaveLength(4);
    expect(out[0]).toBe(sent[0]); // uncopied
    expect(new TextDecoder().decode(out[1])).toBe(chunk('b'));
    expect(out[2]).toBe(sent[3]);
    expect(out[3]).toBe(sent[4]);
  });

  it('ends a stream broken inside an event with an error event of its own, for a key with a budget too, and after an event too long to hold', async () => {
    const long = chunk('x'.repeat(20_000));
    for (const [pieces, usage] of [
      [[chunk('a'), chunk('b').slice(0, 20)], undefined],
      [[chunk('a'), chunk('b').slice(0, 20)], { report: () => undefined, strip: true, unreported: () => undefined }],
      [[chunk('a'), long.slice(0, 12_000)], undefined],
    ] as const) {
      const { reader, first } = upstream([...pieces]);
      const text = new TextDecoder().decode(concat(await readAll(relayStream(first, reader, options(usage ? { usage } : {})))));
      const events = text.split('\n\n').filter(Boolean);
      expect(events.at(-1)).toMatch(/^data: \{"error":\{.*"code":"stream_interrupted"/);
      expect(text.startsWith(chunk('a')), text.slice(0, 80)).toBe(true);
    }
  });

  it('relays no part of an event longer than 8 KiB that the upstream broke off, with a budget or without: every event the client reads parses', async () => {
    const long = chunk('x'.repeat(40_000));
    for (const usage of [undefined, { report: () => undefined, strip: true, unreported: () => undefined }]) {
      const { reader, first } = upstream([chunk('a'), long.slice(0, 9_000), long.slice(9_000, 30_000)]);
      const text = new TextDecoder().decode(concat(await readAll(relayStream(first, reader, options(usage ? { usage } : {})))));
      const events = text.split('\n\n').filter(Boolean);
      for (const event of events) expect(() => JSON.parse(event.slice('data: '.length)), event.slice(0, 60)).not.toThrow();
      expect(events).toHaveLength(2);
      expect(events[1]).toMatch(/"code":"stream_interrupted"/);
    }
  });

  it('relays an event of most of a MiB whole, however it is split; one past a MiB ends the stream with an error event instead, the upstream aborted', async () => {
    const big = chunk('y'.repeat(1_000_000));
    const pieces = (text: string) => Array.from({ length: Math.ceil(text.length / 4_096) }, (_, i) => text.slice(i * 4_096, (i + 1) * 4_096));
    const whole = upstream([chunk('a'), ...pieces(big), 'data: [DONE]\n\n']);
    expect(new TextDecoder().decode(concat(await readAll(relayStream(whole.first, whole.reader, options()))))).toBe(`${chunk('a')}${big}data: [DONE]\n\n`);

    const aborted: Error[] = [];
    const huge = upstream([chunk('a'), ...pieces(chunk('z'.repeat(1_100_000))), 'data: [DONE]\n\n']);
    const text = new TextDecoder().decode(concat(await readAll(relayStream(huge.first, huge.reader, options({ abort: (reason) => aborted.push(reason) })))));
    const events = text.split('\n\n').filter(Boolean);
    expect(events).toHaveLength(2);
    expect(events[0]).toBe(chunk('a').trim());
    expect(JSON.parse(events[1]!.slice('data: '.length)).error.code).toBe('event_too_large');
    expect(aborted).toHaveLength(1);
  });

  it('hands on a whole stream unchanged however it is split: CRLF and CR line endings, comments, event: lines', async () => {
    const body = `: keep-alive\r\n\r\nevent: message\r\n${chunk('a').replace('\n\n', '\r\n\r\n')}${chunk('b').replace('\n\n', '\r\r')}id: 7\n${chunk('c')}data: [DONE]\r\n\r\n`;
    for (let cut = 1; cut < body.length; cut += 3) {
      for (const usage of [undefined, { report: () => undefined, strip: true, unreported: () => undefined }]) {
        const { reader, first } = upstream([body.slice(0, cut), body.slice(cut, cut + 5), body.slice(cut + 5)].filter(Boolean));
        const text = new TextDecoder().decode(concat(await readAll(relayStream(first, reader, options(usage ? { usage } : {})))));
        // A chunk that ends on the CR of [DONE]'s blank line ends the stream: the LF after it is not awaited.
        expect([body, body.slice(0, -1)], `cut at ${cut}: ${JSON.stringify(text)}`).toContain(text);
      }
    }
  });

  it('hands the answer text it counted to `unreported` once the upstream ends without a usage', async () => {
    const counts: number[] = [];
    const { reader, first } = upstream([chunk('Hello').slice(0, 20), chunk('Hello').slice(20) + chunk(', world'), 'data: [DONE]\n\n']);
    await readAll(relayStream(first, reader, options({ usage: { report: () => undefined, strip: false, unreported: (n) => counts.push(n) } })));
    expect(counts).toEqual([12]);
  });

  it('counts what came before a broken stream too', async () => {
    const counts: number[] = [];
    const { reader, first } = upstream([chunk('abc'), chunk('de')]);
    const text = new TextDecoder().decode(Uint8Array.from((await readAll(relayStream(first, reader, options({ usage: { report: () => undefined, strip: false, unreported: (n) => counts.push(n) } })))).flatMap((part) => [...part])));
    expect(text).toContain('stream_interrupted');
    expect(counts).toEqual([5]);
  });

  it('does not call `unreported` when the stream reports its usage, or when the client goes away first', async () => {
    const counts: number[] = [];
    const reported: ChatUsage[] = [];
    const usage = { report: (u: ChatUsage) => reported.push(u), strip: true, unreported: (n: number) => counts.push(n) };
    const withUsage = upstream([chunk('abc'), `data: ${JSON.stringify({ choices: [], usage: USAGE })}\n\n`, 'data: [DONE]\n\n']);
    await readAll(relayStream(withUsage.first, withUsage.reader, options({ usage })));
    expect(reported).toEqual([USAGE]);

    const open = upstream([chunk('abc'), chunk('de')], true);
    const client = relayStream(open.first, open.reader, options({ usage })).getReader();
    await client.read();
    await client.cancel('gone');
    expect(counts).toEqual([]);
  });
});

describe("relayStream and a target's credential spelt in base64", () => {
  const secret = 'sk-ab/cd+secret-9f3e';
  const bytesOf = (text: string) => encoder.encode(text);
  const base64 = (text: string, urlSafe = false) => {
    const encoded = btoa(String.fromCharCode(...bytesOf(text)));
    return urlSafe ? encoded.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') : encoded;
  };
  /** Error events echoing the credential in base64: a Basic credential (`user:key`), the key alone, each alignment, both alphabets. */
  const echoes = [
    `Basic ${base64(`user:${secret}`)}`,
    base64(secret),
    base64(`x${secret}`, true),
    `token=${base64(`xx${secret}!`)}&again=${base64(`xx${secret}!`, true)}`,
  ];
  const stream = `${chunk('hello')}${echoes.map((echo) => `data: ${JSON.stringify({ error: { message: `Invalid credentials: ${echo}`, type: 'server_error' } })}\n\n`).join('')}data: [DONE]\n\n`;
  /** What is left of each base64 token once decoded (a mask's characters are no base64). */
  const decodedTokens = (text: string): string =>
    [...text.matchAll(/[A-Za-z0-9+/_-]{12,}={0,2}/g)].map(([token]) => {
      const standard = token.replace(/-/g, '+').replace(/_/g, '/').replace(/=+$/, '');
      // Padded back (a lone character past a whole group holds no byte).
      const whole = standard.length % 4 === 1 ? standard.slice(0, -1) : standard;
      return atob(whole.padEnd(Math.ceil(whole.length / 4) * 4, '='));
    }).join('\n');

  it('masks it in every event as withoutCredential masks it, however the network cut the events, a byte at a time too', async () => {
    expect(decodedTokens(stream)).toContain(secret);
    const expected = withoutCredential(stream, secret);
    expect(expected).not.toBe(stream);
    expect(decodedTokens(expected)).not.toContain(secret);
    const length = bytesOf(stream).byteLength;
    for (const step of [1, 2, 3, 5, 7, 64, length]) {
      const pieces = Array.from({ length: Math.ceil(stream.length / step) }, (_, i) => stream.slice(i * step, (i + 1) * step));
      for (const usage of [undefined, { report: () => undefined, strip: true, unreported: () => undefined }]) {
        const { reader, first } = upstream(pieces);
        const text = new TextDecoder().decode(concat(await readAll(relayStream(first, reader, options({ credential: secret, ...(usage && { usage }) })))));
        expect(text, `in pieces of ${step}`).toBe(expected);
      }
    }
  });

  it('masks it in the last event of a stream held open after [DONE], and leaves other base64 as sent', async () => {
    const other = base64('user:another-key-entirely');
    const { reader, first } = upstream([chunk(other), `data: {"error":"${base64(secret)}"}\n\ndata: [DONE]\n\n`], true);
    const text = new TextDecoder().decode(concat(await readAll(relayStream(first, reader, options({ credential: secret })))));
    expect(text).toContain(other);
    expect(decodedTokens(text)).not.toContain(secret);
    expect(text).toMatch(/data: \[DONE\]\n\n$/);
  });
});

describe('readFirstEvent', () => {
  /** The first event of `text` sent in pieces of `size` bytes, as the proxy reads it. */
  const firstOf = (text: string, size: number) => {
    const pieces = Array.from({ length: Math.ceil(text.length / size) }, (_, i) => text.slice(i * size, (i + 1) * size));
    const { reader, first } = upstream(pieces, true);
    return readFirstEvent(first, reader);
  };

  it('finds an error event however it is cut and whatever its line endings, its status from its code, and reads no further than it must', async () => {
    for (const eol of ['\n', '\r\n', '\r']) {
      const text = `event: error${eol}data: {"id":"x","error":{"message":"overloaded","code":"503"}}${eol}${eol}data: [DONE]${eol}${eol}`;
      for (const size of [1, 2, 5, 64]) {
        const head = await firstOf(text, size);
        expect(head.error, `${JSON.stringify(eol)} in pieces of ${size}`).toEqual({ message: 'overloaded', status: 503 });
        // Judged at the end of its data line: [DONE] not waited for.
        expect(new TextDecoder().decode(head.bytes).includes('[DONE]'), `${JSON.stringify(eol)} in pieces of ${size}`).toBe(size === 64);
      }
    }
    expect((await firstOf('data: {"error":"overloaded"}\n\n', 3)).error).toEqual({ message: 'overloaded' });
  });

  it('finds none in a chunk, `"error": null`, or an error that is not the first event', async () => {
    for (const text of [chunk('hi') + 'data: {"error":"x"}\n\n', ': ping\n\n' + chunk('hi') + 'data: {"error":"x"}\n\n', 'data: {"error":null,"choices":[]}\n\n']) {
      expect((await firstOf(text, 4)).error, JSON.stringify(text)).toBeUndefined();
    }
  });

  it('reads past events without a data line (comments, bare fields, blank lines): the error after them is the first event, within the same 64 KiB', async () => {
    for (const text of [': ping\n\ndata: {"error":"x"}\n\n', '\r\ndata: {"error":"x"}\n\n', ':\r\n\r\nevent: ping\nid: 1\n\n: a\n: b\r\rdata: {"error":"x"}\n\n']) {
      for (const size of [1, 4, 64]) {
        expect((await firstOf(text, size)).error, `${JSON.stringify(text)} in pieces of ${size}`).toEqual({ message: 'x' });
      }
    }
  });

  it('says no event came when 64 KiB pass without a data line beginning (keep-alives, a long comment, bare fields), and reads no further', async () => {
    for (const [name, lead] of [
      ['keep-alives', ': keep-alive\n\n'.repeat(6_000)],
      ['one long comment', `: ${'p'.repeat(70_000)}\n\n`],
      ['bare fields, CR line endings', 'event: ping\rid: 1\r\r'.repeat(4_000)],
    ] as const) {
      for (const size of [1_000, 4_096]) {
        const head = await firstOf(`${lead}data: {"error":"x"}\n\n${chunk('hi')}`, size);
        expect(head.noEvent, `${name} in pieces of ${size}`).toBe(true);
        expect(head.error, name).toBeUndefined();
        expect(head.bytes.byteLength, name).toBeLessThanOrEqual(64 * 1024 + size);
      }
    }
    // Just within the bound the event is still judged; a data line that begins at the bound, cut
    // after `da`, is read on to its end; one begun and longer than the bound is relayed as it came.
    const within = ': ping\n\n'.repeat(Math.floor((64 * 1024 - 30) / 8));
    expect(await firstOf(`${within}data: {"error":"x"}\n\n`, 1_000)).toMatchObject({ error: { message: 'x' } });
    const edge = `${': ping\n\n'.repeat(8_192)}da`;
    expect(new TextEncoder().encode(edge).byteLength).toBe(64 * 1024 + 2);
    const cut = await firstOf(`${edge}ta: {"error":"x"}\n\n`, 64 * 1024 + 2);
    expect(cut).toMatchObject({ error: { message: 'x' } });
    expect(cut.noEvent).toBeUndefined();
    const long = await firstOf(`: ping\n\ndata: {"choices":[{"delta":{"content":"${'x'.repeat(70_000)}"}}]}\n\n`, 1_000);
    expect(long.noEvent).toBeUndefined();
    expect(long.error).toBeUndefined();
  });

  it('gives up looking past 64 KiB, in time linear in what came, a byte at a time too', async () => {
    const started = Date.now();
    const head = await firstOf(`data: {"choices":[{"delta":{"content":"${'x'.repeat(70_000)}"}}]}\n\n`, 1);
    expect(head.error).toBeUndefined();
    expect(head.bytes.byteLength).toBe(64 * 1024 + 1);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('EventFramer', () => {
  /**
   * Where the last event of `text` ends, read the plain way: line endings one at a time (CRLF
   * one of them), an event ending at the second in a row; the stream starts at a line's start.
   */
  const lastBoundary = (text: string): number => {
    let endings = 1;
    let boundary = 0;
    for (let i = 0; i < text.length; i++) {
      const char = text[i];
      if (char !== '\n' && char !== '\r') {
        endings = 0;
        continue;
      }
      if (char === '\r' && text[i + 1] === '\n') i++;
      if (++endings >= 2) boundary = i + 1;
    }
    return boundary;
  };

  it('hands on exactly the events that have ended, however random streams of any line endings are cut', () => {
    let state = 0x2545f491;
    const random = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    for (let round = 0; round < 400; round++) {
      const seed = state;
      const parts: string[] = [];
      for (let n = Math.floor(random() * 8); n >= 0; n--) parts.push(pick(['data: {"a":1}', 'data: x', ': ping', 'event: m', 'id: 7', '', 'é✓']), pick(['\n', '\r', '\r\n', '\n\n', '\r\n\r\n', '\r\r', '\n\r\n']));
      const text = parts.join('');
      const cuts = Array.from({ length: Math.floor(random() * 6) }, () => Math.floor(random() * (text.length + 1))).sort((a, b) => a - b);
      const framer = new EventFramer();
      let out = '';
      let from = 0;
      for (const cut of [...cuts, text.length]) {
        out += [...framer.push(encoder.encode(text.slice(from, cut)))].map((b) => String.fromCharCode(b)).join('');
        from = cut;
        // Bytes as latin1 characters: the boundary of the text so far, in bytes.
        const sofar = [...encoder.encode(text.slice(0, cut))].map((b) => String.fromCharCode(b)).join('');
        expect(out.length, `seed ${seed}, cuts ${cuts.join(',')}: ${JSON.stringify(text)}`).toBe(lastBoundary(sofar));
      }
      const rest = [...framer.flush()].map((b) => String.fromCharCode(b)).join('');
      expect(new TextDecoder().decode(Uint8Array.from([...out + rest].map((c) => c.charCodeAt(0)))), `seed ${seed}`).toBe(text);
    }
  });
});

function concat(parts: Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, part) => n + part.byteLength, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.byteLength;
  }
  return all;
}
