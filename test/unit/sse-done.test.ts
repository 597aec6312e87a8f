import { describe, expect, it } from 'vitest';
import { DoneLine } from '../../worker/openai/sse-done';

const seen = (...parts: string[]) => {
  const done = new DoneLine();
  for (const part of parts) done.push(part);
  return done.end();
};

describe('DoneLine', () => {
  it('sees a [DONE] line split anywhere across chunks', () => {
    const stream = 'data: {"choices":[]}\n\ndata: [DONE]\n\n';
    for (let at = 1; at < stream.length; at++) expect(seen(stream.slice(0, at), stream.slice(at))).toBe(true);
  });

  it('sees it with or without the space, at the very start, and after CR line ends', () => {
    expect(seen('data:[DONE]\n')).toBe(true);
    expect(seen('data: [DONE]')).toBe(true);
    expect(seen('data: {"a":1}\r\rdata: [DONE]\r\r')).toBe(true);
  });

  it('does not take the text inside an event, or another field, for it', () => {
    expect(seen('data: {"content":"the line data: [DONE] ends it"}\n\n')).toBe(false);
    expect(seen('data: {"content":"x"}\n\n', 'event: data: [DONE]\n')).toBe(false);
    expect(seen(`data: {"content":"${'x'.repeat(40)}`, 'data: [DONE]"}\n\n')).toBe(false);
  });
});

describe('DoneLine and error events', () => {
  const errored = (...parts: string[]) => {
    const done = new DoneLine();
    for (const part of parts) done.push(part);
    done.end();
    return done.errored;
  };

  it('sees an error event before [DONE], split anywhere, with spaces, an object or a message', () => {
    const stream = 'data: {"choices":[]}\n\ndata: { "error" : {"message":"x"}}\n\ndata: [DONE]\n\n';
    for (let at = 1; at < stream.length; at++) expect(errored(stream.slice(0, at), stream.slice(at)), `cut at ${at}`).toBe(true);
    expect(errored('data:{"error":"overloaded"}\r\n\r\ndata: [DONE]\r\n\r\n')).toBe(true);
  });

  it('sees an error member that is not the first of its JSON, split anywhere, whatever the spaces', () => {
    const stream = 'data: {"choices":[]}\n\ndata: {"id":"x", "object":"chat.completion.chunk",\t"error" :\n{"message":"x"}}\n\ndata: [DONE]\n\n'.replace(':\n{', ': {');
    for (let at = 1; at < stream.length; at++) expect(errored(stream.slice(0, at), stream.slice(at)), `cut at ${at}`).toBe(true);
    expect(errored(`data: {"id":"x","choices":[{"delta":{"content":"${'y'.repeat(5_000)}"}}],"error":"overloaded"}\n\ndata: [DONE]\n\n`)).toBe(true);
  });

  it('takes no error from an "error" that is not a member of the JSON itself, or is null', () => {
    expect(errored('data: {"choices":[{"delta":{"content":"error"},"finish_reason":"error"}]}\n\ndata: [DONE]\n\n')).toBe(false);
    expect(errored('data: {"choices":[{"delta":{"error":{"message":"nested"}}}]}\n\ndata: [DONE]\n\n')).toBe(false);
    expect(errored('data: {"id":"x","error":null}\n\ndata: [DONE]\n\n')).toBe(false);
  });

  it('takes no error from `"error": null`, text that names one, or anything after [DONE]', () => {
    expect(errored('data: {"error": null, "choices":[]}\n\ndata: [DONE]\n\n')).toBe(false);
    expect(errored('data: {"content":"data: {\\"error\\": {}}"}\n\ndata: [DONE]\n\n')).toBe(false);
    expect(errored('data: [DONE]\n', 'data: {"error":{}}\n\n')).toBe(false);
  });
});

describe("DoneLine and the caller's error events", () => {
  const judged = (...parts: string[]) => {
    const done = new DoneLine();
    for (const part of parts) done.push(part);
    done.end();
    return { errored: done.errored, callersError: done.callersError };
  };
  const event = (error: unknown, extra: Record<string, unknown> = {}) => `data: ${JSON.stringify({ ...extra, error })}\n\n`;
  const answer = 'data: {"choices":[{"delta":{"content":"partial"}}]}\n\n';

  it("takes an error event later in the stream whose code or status is a 4xx (not 408 or 429), or whose type is invalid_request_error, for the caller's, however it is cut", () => {
    for (const error of [
      { message: 'prompt is too long', code: 400 },
      { message: 'no such model', code: '404' },
      { message: 'bad', status: 422 },
      { message: 'context_length_exceeded', type: 'invalid_request_error', code: 'context_length_exceeded' },
    ]) {
      for (const stream of [`${answer}${event(error)}data: [DONE]\n\n`, `${answer}${event(error, { id: 'x' })}data: [DONE]\n\n`]) {
        for (let at = 1; at < stream.length; at += 7) expect(judged(stream.slice(0, at), stream.slice(at)), `${stream} cut at ${at}`).toEqual({ errored: false, callersError: true });
      }
    }
  });

  it("takes a 5xx, 408, 429 or no status at all for the target's, and the target's after the caller's too", () => {
    for (const error of ['overloaded', { message: 'x' }, { message: 'x', code: 500 }, { message: 'x', code: 'internal_error', type: 'server_error' }, { message: 'x', code: 429 }, { message: 'x', code: '408', type: 'invalid_request_error' }]) {
      expect(judged(`${answer}${event(error)}data: [DONE]\n\n`).errored, JSON.stringify(error)).toBe(true);
    }
    expect(judged(`${answer}${event({ message: 'x', code: 400 })}${event({ message: 'y', code: 503 })}data: [DONE]\n\n`)).toEqual({ errored: true, callersError: true });
    // A line too long to parse, its error first: its status unknown, the target's.
    expect(judged(`data: {"error":{"code":400,"message":"${'x'.repeat(70_000)}"}}\n\ndata: [DONE]\n\n`)).toEqual({ errored: true, callersError: false });
  });
});
