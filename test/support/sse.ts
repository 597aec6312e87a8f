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

/** One server-sent event of an agent's stream: lifecycle events carry an `id` (their seq), notices (`gap`, `reset`, `unauthorized`) none. */
export interface Frame {
  id?: number;
  event: string;
  data: any;
}

/** Moves the complete events at the head of `text` into `frames` (comments skipped); returns what is left, an incomplete event. */
export function takeFrames(text: string, frames: Frame[]): string {
  let end: number;
  while ((end = text.indexOf('\n\n')) >= 0) {
    const block = text.slice(0, end);
    text = text.slice(end + 2);
    const fields = Object.fromEntries(block.split('\n').filter((l) => !l.startsWith(':') && l.includes(': ')).map((l) => [l.slice(0, l.indexOf(': ')), l.slice(l.indexOf(': ') + 2)]));
    if (fields.event) frames.push({ ...(fields.id !== undefined && { id: Number(fields.id) }), event: fields.event, data: JSON.parse(fields.data ?? 'null') });
  }
  return text;
}

/**
 * An agent's event stream (`res`), read frame by frame: `until` reads until `enough` holds or
 * the stream ends, giving up after `timeoutMs` (the caller's expectations then fail).
 */
export function frameReader(res: Response) {
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const frames: Frame[] = [];
  let text = '';
  let ended = false;
  const until = async (enough: (frames: Frame[]) => boolean, timeoutMs = 5_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!ended && !enough(frames)) {
      const next = await Promise.race([reader.read(), new Promise<null>((resolve) => setTimeout(() => resolve(null), Math.max(0, deadline - Date.now())))]);
      if (next === null) break;
      if (next.done) {
        ended = true;
        break;
      }
      text = takeFrames(text + decoder.decode(next.value, { stream: true }), frames);
    }
    return { frames, ended };
  };
  return { until, cancel: () => reader.cancel().catch(() => undefined) };
}

/** An agent's event WebSocket (`GET /v1/agents/:id/events/ws`), accepted: its messages as they come, and how it closed. */
export async function openSocket(key: string, id: string, lastEventId?: number): Promise<{ socket: WebSocket; messages: any[]; closed: Promise<{ code: number; reason: string }> }> {
  const res = await SELF.fetch(`${BASE}/v1/agents/${id}/events/ws${lastEventId !== undefined ? `?lastEventId=${lastEventId}` : ''}`, {
    headers: { authorization: `Bearer ${key}`, upgrade: 'websocket' },
  });
  expect(res.status).toBe(101);
  const socket = res.webSocket as WebSocket;
  const messages: any[] = [];
  socket.addEventListener('message', (m) => messages.push(JSON.parse(m.data as string)));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.addEventListener('close', (e) => resolve({ code: e.code, reason: e.reason })));
  socket.accept();
  return { socket, messages, closed };
}
