import { SELF } from 'cloudflare:test';
import { expect } from 'vitest';
import { BASE } from './api';

/** An open SSE answer, read event by event (each `data:` line parsed, with the `event:` name it came under). */
export async function openStream(key: string, agentId: string, params: unknown, method = 'SendStreamingMessage') {
  const res = await SELF.fetch(`${BASE}/a2a/${agentId}/`, {
    method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 'st', method, params }),
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'a2a-version': '1.0' },
  });
  expect(res.headers.get('content-type')).toBe('text/event-stream');
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  return {
    /** The next event, or null once the stream has ended. */
    async next(): Promise<{ event: string; data: Record<string, any> } | null> {
      for (;;) {
        const end = buffered.indexOf('\n\n');
        if (end >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const lines = block.split('\n');
          const data = lines.find((l) => l.startsWith('data:'));
          if (!data) continue;
          return { event: lines.find((l) => l.startsWith('event:'))?.slice(6).trim() ?? 'message', data: JSON.parse(data.slice(5)) };
        }
        const chunk = await reader.read();
        if (chunk.done) return null;
        buffered += decoder.decode(chunk.value, { stream: true });
      }
    },
  };
}
