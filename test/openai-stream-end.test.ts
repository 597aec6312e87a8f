import { env, SELF } from 'cloudflare:test';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { withoutCredential } from '../worker/lib/masked-credential';
import { CredentialMasker } from '../worker/openai/sse-credential';
import { api, BASE, chatTarget, newTenant } from './support/api';

/** One chat.completion.chunk event, its `data:` field spelt with or without the optional space. */
const chunk = (content: string, finish: string | null = null, space = ' ') =>
  `data:${space}${JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

/**
 * A target whose event stream is exactly `body`: the mock's `body` and `contentType` faults in
 * the base URL's query (its path form splits faults at commas, which JSON is full of), which the
 * gateway keeps after the `/chat/completions` it appends.
 */
const sseTarget = (id: string, body: string, faults = '') => ({
  id,
  kind: 'openai-chat',
  baseUrl: `${env.MOCK_UPSTREAM_URL}/v1?target=${id}&contentType=${encodeURIComponent('text/event-stream')}&body=${encodeURIComponent(body)}${faults}`,
  model: 'm',
});

/** A stream of a pool of `target` (put with `pool`'s other members), as the client reads it. */
async function streamOf(target: Record<string, unknown>, pool: Record<string, unknown> = {}, key?: string): Promise<string> {
  key ??= (await newTenant()).key;
  const put = await api('/v1/pools/sse', { method: 'PUT', key, body: { targets: [target], ...pool } });
  expect([200, 201]).toContain(put.status);
  const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sse', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  expect(res.status).toBe(200);
  return res.text();
}

const streamThrough = (body: string): Promise<string> => streamOf(sseTarget(`sse${Date.now()}`, body));

/** How long `run` took, in ms, and what it gave. */
async function timed<T>(run: () => Promise<T>): Promise<[T, number]> {
  const started = Date.now();
  const value = await run();
  return [value, Date.now() - started];
}

describe('the end of a relayed stream', () => {
  it('is not taken from answer text that reads "data: [DONE]": a stream cut after it still ends with an error event', async () => {
    const text = await streamThrough(chunk('A stream ends with the line data: [DONE] and then') + chunk(' the connection closes'));
    expect(text).toContain('the connection closes');
    expect(text).toContain('"code":"stream_interrupted"');
  });

  it('is a [DONE] line written without the optional space after "data:", with no error event after it', async () => {
    const text = await streamThrough(`${chunk('hello', 'stop', '')}data:[DONE]\n\n`);
    expect(text).toContain('data:[DONE]');
    expect(text).not.toContain('"error"');
  });

  it('is a [DONE] line ended by CRLF, or by the end of the stream', async () => {
    expect(await streamThrough(`${chunk('a', 'stop')}data: [DONE]\r\n\r\n`)).not.toContain('"error"');
    expect(await streamThrough(`${chunk('b', 'stop')}data: [DONE]`)).not.toContain('"error"');
  });

  it('is the [DONE] event, though the target holds its connection open after it: no wait for the idle timeout, no error event, no failure counted', async () => {
    const { key } = await newTenant();
    const idle = { timeouts: { idleMs: 5_000, totalMs: 20_000 } };
    // In 5-byte pieces, so [DONE] and the blank line after it arrive in chunks of their own.
    const target = chatTarget(`hold${Date.now()}`, 'holdOpen=1,pieceBytes=5');
    for (let i = 0; i < 5; i++) {
      const [text, ms] = await timed(() => streamOf(target, idle, key));
      expect(text, `stream ${i}`).toMatch(/data: \[DONE\]\n\n$/);
      expect(text, `stream ${i}`).not.toContain('"error"');
      expect(ms, `stream ${i}`).toBeLessThan(4_000);
    }
    // Five failures in a row would have opened its circuit.
    const pool = await api('/v1/pools/sse', { key });
    expect(pool.body.targets[0].health).toMatchObject({ circuit: 'closed', inflight: 0 });

    // The whole stream in its first chunk, the connection held open: the same.
    const [whole, wholeMs] = await timed(() => streamOf(sseTarget(`whole${Date.now()}`, `${chunk('all at once', 'stop')}data: [DONE]\n\n`, '&holdOpen=1'), idle, key));
    expect(whole).toMatch(/all at once.*data: \[DONE\]\n\n$/s);
    expect(whole).not.toContain('"error"');
    expect(wholeMs).toBeLessThan(4_000);
  });

  it("is an error event the client can read when the target's stream breaks off inside an event: the half event is not relayed", async () => {
    const half = chunk(' world').slice(0, 60);
    for (const body of [chunk('hello') + half, chunk('hello') + half.slice(0, half.indexOf('{')) + '{"id":"x",\n']) {
      const text = await streamThrough(body);
      const frames = text.split('\n\n').filter(Boolean);
      // Every event parses on its own: the gateway's error was glued to the half event, one unreadable line.
      for (const frame of frames) expect(() => JSON.parse(frame.replace(/^data: /, '')), frame).not.toThrow();
      expect(text.startsWith(chunk('hello')), text).toBe(true);
      expect(JSON.parse(frames.at(-1)!.slice('data: '.length)).error.code).toBe('stream_interrupted');
    }
    // The official client's stream helper sees the gateway's error (it used to throw a SyntaxError).
    const { key } = await newTenant();
    await api('/v1/pools/half', { method: 'PUT', key, body: { targets: [sseTarget(`half${Date.now()}`, chunk('hello') + half)] } });
    const client = new OpenAI({ apiKey: key, baseURL: `${BASE}/v1`, fetch: (input: any, init?: any) => SELF.fetch(input, init), maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'half', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    let said = '';
    const error = await (async () => {
      for await (const part of stream) said += part.choices[0]?.delta.content ?? '';
    })().catch((thrown: unknown) => thrown);
    expect(said).toBe('hello');
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(String((error as Error).message)).toMatch(/ended the stream before it was complete/);
  });

  it("is a failure of its target when the stream carried an error event, though [DONE] came after it: five such streams open the target's circuit", async () => {
    const { key } = await newTenant();
    const error = `data: ${JSON.stringify({ error: { message: 'the model crashed', type: 'server_error', code: 'internal_error' } })}\n\n`;
    const target = sseTarget(`err${Date.now()}`, `${chunk('partial answer')}${error}data: [DONE]\n\n`);
    for (let i = 0; i < 5; i++) {
      const text = await streamOf(target, {}, key);
      // Relayed as it came: the client sees the target's error, and no error event of the gateway's after [DONE].
      expect(text, `stream ${i}`).toContain('the model crashed');
      expect(text, `stream ${i}`).toMatch(/data: \[DONE\]\n\n$/);
    }
    const pool = await api('/v1/pools/sse', { key });
    expect(pool.body.targets[0].health.circuit).toBe('open');
  });

  it('is a [DONE] line whose event never ends, the connection held open: ended at the idle timeout as finished, without an error event', async () => {
    const text = await streamOf(sseTarget(`line${Date.now()}`, `${chunk('whole answer', 'stop')}data: [DONE]\n`, '&holdOpen=1'), { timeouts: { idleMs: 300 } });
    expect(text).toMatch(/whole answer.*data: \[DONE\]\n\n$/s);
    expect(text).not.toContain('"error"');
  });
});

/** An error event as vLLM or LiteLLM send one, `extra` members before its `error`. */
const errorEvent = (message: string, extra: Record<string, unknown> = {}, code: unknown = null) =>
  `data: ${JSON.stringify({ ...extra, error: { message, type: 'server_error', code } })}\n\n`;

/** A chat of pool `name` (put first), streamed: the response, its body read. */
async function chatStream(key: string, name: string, pool: Record<string, unknown>): Promise<{ res: Response; text: string }> {
  const put = await api(`/v1/pools/${name}`, { method: 'PUT', key, body: pool });
  expect([200, 201]).toContain(put.status);
  const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: name, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  return { res, text: await res.text() };
}

describe("a target's error event", () => {
  it('as the first event of its stream (nothing relayed yet) fails over to the next target, as a 5xx before the first byte does, the headers counting both attempts', async () => {
    const { key } = await newTenant();
    const id = `first${Date.now()}`;
    const failing = { ...sseTarget(`${id}a`, `${errorEvent('the engine is overloaded')}data: [DONE]\n\n`), priority: 0 };
    const standby = { ...chatTarget(`${id}b`), priority: 1 };
    const { res, text } = await chatStream(key, 'firsterr', { targets: [failing, standby] });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-attempts')).toBe('2');
    expect(res.headers.get('x-gateway-upstream')).toBe(`firsterr/${id}b`);
    expect(text).toContain('"id":"chatcmpl-stream-');
    expect(text).not.toContain('overloaded');
    expect(text).toMatch(/data: \[DONE\]\n\n$/);
    // Split across chunks, and not the first member of its JSON: the same.
    const split = { ...sseTarget(`${id}c`, `${errorEvent('the engine is overloaded', { id: 'x', object: 'chat.completion.chunk' })}data: [DONE]\n\n`, '&pieceBytes=7'), priority: 0 };
    const again = await chatStream(key, 'firsterr2', { targets: [split, standby] });
    expect(again.res.headers.get('x-gateway-attempts')).toBe('2');
    expect(again.text).not.toContain('overloaded');
  });

  it('is judged once its data line has ended: a target that holds back the blank line after it is failed over at once, not at the first-byte timeout', async () => {
    const { key } = await newTenant();
    const id = `held${Date.now()}`;
    const failing = { ...sseTarget(`${id}a`, `data: {"error":{"message":"the engine is overloaded"}}\n`, '&holdOpen=1'), priority: 0 };
    const started = Date.now();
    const { res, text } = await chatStream(key, 'heldfirst', { targets: [failing, { ...chatTarget(`${id}b`), priority: 1 }], timeouts: { firstByteMs: 5_000, totalMs: 20_000 } });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(res.headers.get('x-gateway-attempts')).toBe('2');
    expect(text).not.toContain('overloaded');
    // A first event whose blank line is held back but is no error is relayed as before, at once.
    const quiet = Date.now();
    const held = await streamOf(sseTarget(`${id}c`, `${chunk('hello')}data: [DONE]\n`, '&holdOpen=1'), { timeouts: { idleMs: 300, firstByteMs: 5_000, totalMs: 20_000 } }, key);
    expect(held).toMatch(/hello.*data: \[DONE\]\n\n$/s);
    expect(Date.now() - quiet).toBeLessThan(3_000);
  });

  it('after comment-only events (": ping", as keep-alives) is still the first event: failed over, the comments read ahead within the same 64 KiB', async () => {
    const { key } = await newTenant();
    const id = `ping${Date.now()}`;
    const standby = { ...chatTarget(`${id}b`), priority: 1 };
    for (const [n, lead] of [[1, ': ping\n\n'], [2, ':\r\n\r\n: keep-alive\n: again\n\n'], [3, ': ping\r\r']] as const) {
      const failing = { ...sseTarget(`${id}a${n}`, `${lead}${errorEvent('the engine is overloaded')}data: [DONE]\n\n`, '&pieceBytes=5'), priority: 0 };
      const { res, text } = await chatStream(key, `pingerr${n}`, { targets: [failing, standby] });
      expect(res.status, JSON.stringify(lead)).toBe(200);
      expect(res.headers.get('x-gateway-attempts'), JSON.stringify(lead)).toBe('2');
      expect(text).not.toContain('overloaded');
      expect(text).toMatch(/data: \[DONE\]\n\n$/);
    }
    // Comments then a chunk: relayed as they came, the comment included.
    const fine = await chatStream(key, 'pingok', { targets: [sseTarget(`${id}c`, `: ping\n\n${chunk('hello')}data: [DONE]\n\n`)] });
    expect(fine.res.headers.get('x-gateway-attempts')).toBe('1');
    expect(fine.text).toMatch(/^: ping\n\n.*hello.*data: \[DONE\]\n\n$/s);
  });

  it('never comes when a target sends more than 64 KiB of keep-alive comments first: failed over before anything was sent, and a failure of that target', async () => {
    const { key } = await newTenant();
    const id = `pings${Date.now()}`;
    const standby = { ...chatTarget(`${id}b`), priority: 1 };
    for (const [n, faults] of [[1, 'pingBytes=70000'], [2, 'pingBytes=70000,pieceBytes=3000']] as const) {
      const { res, text } = await chatStream(key, `pings${n}`, { targets: [{ ...chatTarget(`${id}a${n}`, faults), priority: 0 }, standby] });
      expect(res.status, faults).toBe(200);
      expect(res.headers.get('x-gateway-attempts'), faults).toBe('2');
      expect(res.headers.get('x-gateway-upstream'), faults).toBe(`pings${n}/${id}b`);
      // Not one keep-alive of the first target reached the client.
      expect(text.startsWith('data: '), faults).toBe(true);
      expect(text, faults).not.toContain(': ping');
      expect(text, faults).toMatch(/data: \[DONE\]\n\n$/);
    }
    // Within the bound, its keep-alives and its answer are relayed as they came.
    const fine = await chatStream(key, 'pingsok', { targets: [{ ...chatTarget(`${id}c`, 'pingBytes=60000'), priority: 0 }, standby] });
    expect(fine.res.headers.get('x-gateway-attempts')).toBe('1');
    expect(fine.text).toMatch(/^: ping\n\n.*"content":"mock".*data: \[DONE\]\n\n$/s);
    // The only target: the answer is 502 saying why, and five such chats open its circuit.
    for (let i = 0; i < 5; i++) {
      const alone = await chatStream(key, 'pingsall', { targets: [chatTarget(`${id}d`, 'pingBytes=70000')], retry: { attempts: 1 } });
      expect(alone.res.status, `chat ${i}`).toBe(502);
      expect(JSON.parse(alone.text).error.message, `chat ${i}`).toContain('without an event');
    }
    const pool = await api('/v1/pools/pingsall', { key });
    expect(pool.body.targets[0].health.circuit).toBe('open');
  });

  it('as the first event of every target: 502 upstream_failed naming the error, every attempt counted', async () => {
    const { key } = await newTenant();
    const id = `all${Date.now()}`;
    const body = `${errorEvent('the engine is overloaded')}data: [DONE]\n\n`;
    const { res, text } = await chatStream(key, 'allerr', { targets: [sseTarget(`${id}a`, body), sseTarget(`${id}b`, body)] });
    expect(res.status).toBe(502);
    // Each attempt a call to a target: the third goes back to one of the two.
    const counts = (await (await fetch(`${env.MOCK_UPSTREAM_URL}/counts`)).json()) as Record<string, number>;
    expect(res.headers.get('x-gateway-attempts')).toBe('3');
    expect((counts[`${id}a`] ?? 0) + (counts[`${id}b`] ?? 0)).toBe(3);
    const error = JSON.parse(text).error;
    expect(error.code).toBe('upstream_failed');
    expect(error.message).toContain('the engine is overloaded');

    // The target's credential, named in its error, is masked in the gateway's.
    const secret = 'sk-first-event-secret-9f3e';
    const named = { ...sseTarget(`${id}k`, `${errorEvent(`Incorrect API key provided: ${secret}`)}data: [DONE]\n\n`), apiKey: secret };
    const masked = await chatStream(key, 'keyerr', { targets: [named], retry: { attempts: 1 } });
    expect(masked.res.status).toBe(502);
    expect(masked.res.headers.get('x-gateway-attempts')).toBe('1');
    expect(masked.text).toContain('Incorrect API key provided: …9f3e');
    expect(masked.text).not.toContain(secret);
  });

  it("with a 4xx code as the first event is the caller's: relayed as it came, not failed over", async () => {
    const { key } = await newTenant();
    const id = `bad${Date.now()}`;
    const caller = { ...sseTarget(`${id}a`, `${errorEvent('prompt is too long', {}, 400)}data: [DONE]\n\n`), priority: 0 };
    const { res, text } = await chatStream(key, 'callererr', { targets: [caller, { ...chatTarget(`${id}b`), priority: 1 }] });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-gateway-attempts')).toBe('1');
    expect(text).toContain('prompt is too long');
    // Nor a failure of the target, as a 4xx status is none: five such streams leave its circuit closed.
    for (let i = 0; i < 5; i++) expect(await streamOf(caller, {}, key), `stream ${i}`).toContain('prompt is too long');
    const pool = await api('/v1/pools/sse', { key });
    expect(pool.body.targets[0].health.circuit).toBe('closed');
  });

  it("later in the stream, after content, with a 4xx code or an invalid_request_error type is the caller's: relayed as it came, five such streams leave its circuit closed", async () => {
    const callers = `data: ${JSON.stringify({ error: { message: 'maximum context length exceeded', type: 'invalid_request_error', code: 'context_length_exceeded' } })}\n\n`;
    for (const [name, body] of [
      ['code 400, then [DONE]', `${chunk('partial answer')}${errorEvent('prompt is too long', {}, 400)}data: [DONE]\n\n`],
      ['not the first member, in pieces', `${chunk('partial answer')}${errorEvent('prompt is too long', { id: 'x' }, '422')}data: [DONE]\n\n`],
      ['invalid_request_error, then [DONE]', `${chunk('partial answer')}${callers}data: [DONE]\n\n`],
      // As OpenAI ends a stream on an error: closed after it, no [DONE]. The client still learns it was cut.
      ['invalid_request_error, then closed', `${chunk('partial answer')}${callers}`],
    ] as const) {
      const { key } = await newTenant();
      const target = sseTarget(`later${Date.now()}`, body, name.includes('pieces') ? '&pieceBytes=9' : '');
      for (let i = 0; i < 5; i++) {
        const text = await streamOf(target, {}, key);
        expect(text, `${name}: stream ${i}`).toContain('partial answer');
        expect(text, `${name}: stream ${i}`).toMatch(/prompt is too long|maximum context length/);
        if (name.endsWith('closed')) expect(text, name).toContain('stream_interrupted');
      }
      const pool = await api('/v1/pools/sse', { key });
      expect(pool.body.targets[0].health.circuit, name).toBe('closed');
    }
    // A 5xx code, a 429 or none at all, later in the stream, still counts against the target.
    for (const code of [500, 429, null]) {
      const { key } = await newTenant();
      const target = sseTarget(`later5${Date.now()}`, `${chunk('partial answer')}${errorEvent('the model crashed', {}, code)}data: [DONE]\n\n`);
      for (let i = 0; i < 5; i++) expect(await streamOf(target, {}, key)).toContain('the model crashed');
      const pool = await api('/v1/pools/sse', { key });
      expect(pool.body.targets[0].health.circuit, String(code)).toBe('open');
    }
  });

  it("as the first event, with an invalid_request_error type and no status, is the caller's too: relayed, not failed over", async () => {
    const { key } = await newTenant();
    const id = `badtype${Date.now()}`;
    const body = `data: ${JSON.stringify({ error: { message: 'maximum context length exceeded', type: 'invalid_request_error', code: 'context_length_exceeded' } })}\n\ndata: [DONE]\n\n`;
    const { res, text } = await chatStream(key, 'callertype', { targets: [{ ...sseTarget(`${id}a`, body), priority: 0 }, { ...chatTarget(`${id}b`), priority: 1 }] });
    expect(res.headers.get('x-gateway-attempts')).toBe('1');
    expect(text).toContain('maximum context length exceeded');
  });

  it("whose error member is not the JSON's first is a failure of its target too: five such streams open its circuit", async () => {
    const { key } = await newTenant();
    const target = sseTarget(`late${Date.now()}`, `${chunk('partial answer')}data: {"id":"x", "object":"chat.completion.chunk",  "error" : {"message":"the model crashed"}}\n\ndata: [DONE]\n\n`);
    for (let i = 0; i < 5; i++) expect(await streamOf(target, {}, key), `stream ${i}`).toContain('the model crashed');
    const pool = await api('/v1/pools/sse', { key });
    expect(pool.body.targets[0].health.circuit).toBe('open');
  });
});

describe('an event longer than 8 KiB', () => {
  /** A target sending `body`, each `@PAD@` in it `pad` x's (the mock's `pad`: a URL cannot hold the event). */
  const padded = (body: string, pad: number) => sseTarget(`pad${Date.now()}`, body, `&pad=${pad}`);

  it('that the target breaks off is not relayed in part: every event the client reads parses, the last the error', async () => {
    const long = chunk('@PAD@');
    const text = await streamOf(padded(chunk('hello') + long.slice(0, -10), 20_000));
    const frames = text.split('\n\n').filter(Boolean);
    for (const frame of frames) expect(() => JSON.parse(frame.replace(/^data: /, '')), frame.slice(0, 80)).not.toThrow();
    expect(frames).toHaveLength(2);
    expect(JSON.parse(frames[1]!.slice('data: '.length)).error.code).toBe('stream_interrupted');
  });

  it('that ends is relayed whole, in order', async () => {
    const text = await streamOf(padded(`${chunk('hello')}${chunk('@PAD@')}data: [DONE]\n\n`, 20_000));
    expect(text).toBe(`${chunk('hello')}${chunk('x'.repeat(20_000))}data: [DONE]\n\n`);
  });
});

/** `text` through a stream's masker for `credential`, cut into chunks at `cuts` (ascending byte offsets), joined again as the client reads it. */
function maskedInChunks(credential: string, text: string, cuts: number[]): string {
  const masker = CredentialMasker.for(credential);
  if (!masker) throw new Error('no masker');
  const bytes = new TextEncoder().encode(text);
  const decoder = new TextDecoder();
  let out = '';
  let from = 0;
  for (const cut of [...cuts, bytes.byteLength]) {
    out += decoder.decode(masker.push(bytes.subarray(from, cut)), { stream: true });
    from = cut;
  }
  return out + decoder.decode(masker.flush());
}

/** The cuts of `text` into chunks of `step` bytes. */
const everyStep = (text: string, step: number): number[] => Array.from({ length: Math.ceil(new TextEncoder().encode(text).byteLength / step) }, (_, i) => i * step);

describe("a target's credential in its event stream", () => {
  const secret = 'sk-sk-secret-9f3e';
  const through = (text: string, cuts: number[]): string => maskedInChunks(secret, text, cuts);

  it('is masked as withoutCredential masks it, wherever the chunks are cut; starts of it that never finish pass as sent', () => {
    // Overlapping starts (`sk-sk-sk-secret`), a start left unfinished at the end, and text that is not ASCII.
    const text = `data: {"error":"key sk-sk-sk-secret-9f3e é sk-sk-secret-9f3esk-sk-secret-9f3e"}\n\ndata: sk-sk-secret-9f3 ✓ sk-sk-secre`;
    const expected = withoutCredential(text, secret);
    expect(expected).not.toContain(secret);
    const length = new TextEncoder().encode(text).byteLength;
    for (let cut = 0; cut <= length; cut++) expect(through(text, [cut]), `cut at ${cut}`).toBe(expected);
    for (let step = 1; step <= 4; step++) expect(through(text, Array.from({ length: Math.floor(length / step) }, (_, i) => (i + 1) * step)), `every ${step}`).toBe(expected);
  });

  it('is not looked for when the credential is too short to be looked for in text', () => {
    expect(CredentialMasker.for('short')).toBeNull();
    expect(CredentialMasker.for(undefined)).toBeNull();
  });
});

describe("a target's credential spelt with JSON escapes", () => {
  // A JSON body that escapes the credential parses back into it: every spelling is masked.
  const secret = 'sk-ab/cd-secret-9f3e';
  const mask = `…${secret.slice(-4)}`;
  /** `text` with the characters at `escaped` spelt as `\uXXXX` (hex in `hexCase`), '/' as `\/` where `slashes`. */
  const spelt = (text: string, escaped: (i: number) => boolean, hexCase: 'lower' | 'upper' | 'mixed' = 'lower', slashes = false): string =>
    [...text].map((char, i) => {
      if (slashes && char === '/') return '\\/';
      if (!escaped(i)) return char;
      const hex = char.charCodeAt(0).toString(16).padStart(4, '0');
      return `\\u${hexCase === 'upper' ? hex.toUpperCase() : hexCase === 'mixed' ? [...hex].map((d, j) => (j % 2 ? d.toUpperCase() : d)).join('') : hex}`;
    }).join('');
  const errorBody = (key: string) => `{"error":{"message":"Incorrect API key provided: ${key}","type":"invalid_request_error"}}`;
  const spellings = [
    spelt(secret, () => false, 'lower', true),
    spelt(secret, (i) => i === 0),
    spelt(secret, () => true),
    spelt(secret, () => true, 'upper'),
    spelt(secret, (i) => i % 3 === 1, 'mixed', true),
    `${secret.slice(0, 8)}\\u002D${secret.slice(9)}`.replace('/', '\\/'),
  ];

  it('is masked in an error body, in every spelling, and the body still parses', () => {
    for (const spelling of spellings) {
      const body = errorBody(spelling);
      expect(JSON.parse(body).error.message, spelling).toContain(secret);
      const masked = withoutCredential(body, secret);
      expect(JSON.parse(masked).error.message, spelling).toBe(`Incorrect API key provided: ${mask}`);
    }
    // Next to its literal spelling, and twice over.
    const both = withoutCredential(`${secret} ${spellings[2]}${spellings[4]}`, secret);
    expect(both).toBe(`${mask} ${mask}${mask}`);
    // Escapes that spell something else pass as sent, and so do a backslash and a cut escape at the end.
    for (const other of [spelt(`${secret.slice(0, -1)}X`, () => true), `${spelt(secret.slice(0, -1), () => true)}\\u00`, `\\q${secret.slice(0, -1)}\\`]) expect(withoutCredential(other, secret)).toBe(other);
  });

  it('is masked when a character beyond the BMP is escaped as a surrogate pair, and a mask holding " or \\ keeps the JSON whole', () => {
    const emoji = 'sk-\u{1F600}-secret-9f3e';
    expect(withoutCredential(errorBody('sk-\\ud83d\\uDE00-secret-9f3e'), emoji)).toBe(errorBody(`…${emoji.slice(-4)}`));
    const quoted = 'sk-quoted-key"\\x\\';
    const body = JSON.stringify({ error: { message: `bad key ${quoted}` } });
    const masked = withoutCredential(body, quoted);
    expect(JSON.parse(masked).error.message).toBe(`bad key …${quoted.slice(-4)}`);
  });

  it('is masked in an event stream wherever the chunks are cut, as withoutCredential masks it', () => {
    const text = `data: ${errorBody(`${spellings[2]} and ${spellings[4]}`)}\n\ndata: {"content":"line\\nnext \\u0073k-ab"}\n\ndata: ${spelt(secret.slice(0, 12), () => true)}`;
    const expected = withoutCredential(text, secret);
    expect(JSON.parse(expected.slice(6, expected.indexOf('\n'))).error.message).toBe(`Incorrect API key provided: ${mask} and ${mask}`);
    const bytes = new TextEncoder().encode(text);
    for (let cut = 0; cut <= bytes.byteLength; cut++) expect(maskedInChunks(secret, text, [cut]), `cut at ${cut}`).toBe(expected);
    for (const step of [1, 2, 5, 7]) expect(maskedInChunks(secret, text, everyStep(text, step)), `every ${step}`).toBe(expected);
  });

  it('is found in time linear in the body, however the credential repeats itself', () => {
    // A 1,024-character key of one repeated letter and a body of ~4 MiB of that letter escaped:
    // a matcher that starts over at each character would compare about a billion characters.
    const key = `${'a'.repeat(1023)}b`;
    const body = `${'\\u0061'.repeat(700_000)}${'\\u0062'}`;
    const started = Date.now();
    const masked = withoutCredential(body, key);
    const streamed = (() => {
      const masker = CredentialMasker.for(key);
      if (!masker) throw new Error('no masker');
      const bytes = new TextEncoder().encode(body);
      let size = 0;
      for (let at = 0; at < bytes.byteLength; at += 65_536) size += masker.push(bytes.subarray(at, at + 65_536)).byteLength;
      return size + masker.flush().byteLength;
    })();
    const ms = Date.now() - started;
    const expected = `${'\\u0061'.repeat(700_000 - 1023)}…aaab`;
    expect(masked).toBe(expected);
    expect(streamed).toBe(new TextEncoder().encode(expected).byteLength);
    expect(ms).toBeLessThan(5_000);
  });
});

describe("a target's credential spelt another way: escaped twice, percent-encoded, base64", () => {
  const secret = 'sk-ab/cd+secret-9f3e';
  const mask = `…${secret.slice(-4)}`;
  const bytesOf = (text: string) => new TextEncoder().encode(text);
  const percent = (text: string, upper: boolean) => [...bytesOf(text)].map((b) => `%${b.toString(16).padStart(2, '0')[upper ? 'toUpperCase' : 'toLowerCase']()}`).join('');
  const base64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));
  /** The credential inside base64 text, `before` bytes of other text ahead of it: the three alignments. */
  const inBase64 = (before: number, urlSafe: boolean) => {
    const text = base64(bytesOf(`${'x'.repeat(before)}Bearer ${secret} end`));
    return urlSafe ? text.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') : text;
  };
  /** The token's bytes as text, what is left of it decoded (a mask's characters are no base64). */
  const decoded = (body: string, urlSafe: boolean) => {
    const token = String(JSON.parse(body).token);
    const text = (urlSafe ? token.replace(/-/g, '+').replace(/_/g, '/') : token).replace(/[^A-Za-z0-9+/]/g, '');
    return atob(text.slice(0, text.length - (text.length % 4)));
  };
  /** Each spelling, and what reads it back (a client parsing the JSON twice, decoding the URL). */
  const spellings: [string, string, (text: string) => string][] = [
    ['escaped twice', JSON.stringify(JSON.stringify({ key: secret }).replace('sk', '\\u0073k').replace('/', '\\/')), (t) => JSON.parse(JSON.parse(t)).key],
    ['escaped twice, every character', JSON.stringify(`{"key":"${[...secret].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}"}`), (t) => JSON.parse(JSON.parse(t)).key],
    ['percent-encoded, lower case', `https://x.example/cb?key=${percent(secret, false)}`, (t) => decodeURIComponent(t)],
    ['percent-encoded, upper case', `https://x.example/cb?key=${percent(secret, true)}`, (t) => decodeURIComponent(t)],
    ['percent-encoded in part', `https://x.example/cb?key=sk%2Dab%2fcd%2Bsecret-9f3e`, (t) => decodeURIComponent(t)],
  ];
  for (const urlSafe of [false, true]) for (const before of [0, 1, 2]) spellings.push([`base64${urlSafe ? ' url-safe' : ''}, ${before} bytes before`, `{"token":"${inBase64(before, urlSafe)}"}`, (t) => decoded(t, urlSafe)]);

  it('is masked in an error body in each spelling: what reads the body back no longer finds it', () => {
    for (const [name, body, read] of spellings) {
      expect(read(body), name).toContain(secret);
      const masked = withoutCredential(body, secret);
      expect(masked, name).toContain(mask);
      expect(read(masked), name).not.toContain(secret);
    }
  });

  it('is masked by the stream masker the same way, wherever the chunks are cut (base64 is masked in whole events: see the relay)', () => {
    const text = spellings.filter(([name]) => !name.startsWith('base64')).map(([, body]) => `data: ${body}\n\n`).join('');
    const expected = withoutCredential(text, secret);
    for (const step of [1, 2, 3, 5, 7, 64]) expect(maskedInChunks(secret, text, everyStep(text, step)), `every ${step}`).toBe(expected);
  });

  it('is masked when a character beyond the BMP is escaped twice as a surrogate pair, or percent-encoded', () => {
    const emoji = 'sk-\u{1F600}-secret-9f3e';
    const masked = `…${emoji.slice(-4)}`;
    expect(withoutCredential('key sk-\\\\ud83d\\\\uDE00-secret-9f3e!', emoji)).toBe(`key ${masked}!`);
    expect(withoutCredential('key sk-%F0%9F%98%80-secret-9f3e!', emoji)).toBe(`key ${masked}!`);
    // A lone high surrogate escaped twice spells no character of it.
    expect(withoutCredential('key sk-\\\\ud83d-secret-9f3e!', emoji)).toBe('key sk-\\\\ud83d-secret-9f3e!');
  });

  it('leaves text that only looks like a spelling as sent: a % or an escape that spells something else, a cut one at the end', () => {
    for (const other of ['100% sure, %zz and %4', `${percent(secret.slice(0, -1), false)}%2`, `${percent(secret.slice(0, -1), false)}X`, '\\\\u00', '\\\\q\\\\']) expect(withoutCredential(other, secret)).toBe(other);
  });

  it('is masked wherever each character is spelt its own way, against random bodies cut at random', () => {
    // A seeded generator: a failure names its seed, and reruns the same.
    let state = 0x9e3779b9;
    const random = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32);
    const pick = <T,>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const hex = (code: number) => code.toString(16).padStart(4, '0')[random() < 0.5 ? 'toUpperCase' : 'toLowerCase']();
    const spellChar = (char: string): string => {
      const code = char.charCodeAt(0);
      const ways = [char, `\\u${hex(code)}`, `\\\\u${hex(code)}`, `%${code.toString(16).padStart(2, '0')}`, `%${code.toString(16).padStart(2, '0').toUpperCase()}`];
      if (char === '/') ways.push('\\/', '\\\\/');
      return pick(ways);
    };
    // Noise that shares no character with the credential, and so can never complete it.
    const noise = () => Array.from({ length: Math.floor(random() * 12) }, () => pick(['W', 'X', 'Y', 'Z', ' ', '{', '}', ':', '%', '\\\\', '%2', '\\u00'])).join('');
    for (let round = 0; round < 150; round++) {
      const seed = state;
      const count = 1 + Math.floor(random() * 3);
      let body = noise();
      for (let i = 0; i < count; i++) body += [...secret].map(spellChar).join('') + noise();
      const masked = withoutCredential(body, secret);
      expect(masked.split(mask).length - 1, `seed ${seed}: ${body}`).toBe(count);
      const bytes = bytesOf(body);
      const cuts = Array.from({ length: 1 + Math.floor(random() * 6) }, () => Math.floor(random() * bytes.byteLength)).sort((a, b) => a - b);
      expect(maskedInChunks(secret, body, cuts), `seed ${seed}, cut at ${cuts.join(',')}: ${body}`).toBe(masked);
    }
  });

  it('is found in time linear in the body, percent-encoded too', () => {
    const key = `${'a'.repeat(1023)}b`;
    const body = `${'%61'.repeat(1_200_000)}%62`;
    const started = Date.now();
    expect(withoutCredential(body, key)).toBe(`${'%61'.repeat(1_200_000 - 1023)}…aaab`);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
