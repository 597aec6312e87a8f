import { env, SELF } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { api, BASE, newTenant } from './support/api';

/** One chat.completion.chunk event, its `data:` field spelt with or without the optional space. */
const chunk = (content: string, finish: string | null = null, space = ' ') =>
  `data:${space}${JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

/**
 * A target whose event stream is exactly `body`: the mock's `body` and `contentType` faults in
 * the base URL's query (its path form splits faults at commas, which JSON is full of), which the
 * gateway keeps after the `/chat/completions` it appends.
 */
const sseTarget = (id: string, body: string) => ({
  id,
  kind: 'openai-chat',
  baseUrl: `${env.MOCK_UPSTREAM_URL}/v1?target=${id}&contentType=${encodeURIComponent('text/event-stream')}&body=${encodeURIComponent(body)}`,
  model: 'm',
});

async function streamThrough(body: string): Promise<string> {
  const { key } = await newTenant();
  const put = await api('/v1/pools/sse', { method: 'PUT', key, body: { targets: [sseTarget(`sse${Date.now()}`, body)] } });
  expect(put.status).toBe(201);
  const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'sse', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  expect(res.status).toBe(200);
  return res.text();
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
});
