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
