// A live event stream, read with fetch and a ReadableStream SSE parser: EventSource cannot
// send an Authorization header.
import { authorization, retryAfterSeconds } from './api.js';
import { state } from './state.js';

/** One SSE frame ("event:", "data:", "id:", "retry:" lines) into its fields. */
export function parseFrame(frame) {
  const event = { type: 'message', data: [], id: null, retry: null };
  for (const line of frame.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event.type = value;
    else if (field === 'data') event.data.push(value);
    else if (field === 'id') event.id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) event.retry = Number(value);
  }
  return event;
}

/** Wakes a waiting reconnect at once (the browser came back online). */
let wakeStream = () => undefined;
/** Drops the current stream connection (the browser went offline, or the stream went quiet). */
let dropStream = () => undefined;
window.addEventListener('offline', () => dropStream());
window.addEventListener('online', () => wakeStream());

/** The server sends a heartbeat every 15 s: a stream silent for longer is dead. */
const SILENT_STREAM_MS = 40_000;
/** The longest a 429's or 503's Retry-After holds the stream back, so a page left open resumes. */
const MAX_PAUSE_S = 60;

/** Resolves after `ms`, or at once when `signal` aborts or (if `wakeable`) the browser is back online. */
function wait(ms, signal, wakeable) {
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); signal.removeEventListener('abort', done); wakeStream = () => undefined; resolve(); };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
    if (wakeable) wakeStream = done;
  });
}

/** What the stream's state says while it is down: `pause` as onDown has it. */
export function downText(offline, pause) {
  if (!pause) return offline ? 'offline, reconnecting…' : 'reconnecting…';
  const why = pause.status !== 429 ? 'unavailable' : pause.code === 'too_many_streams' ? 'too many streams open on this agent' : 'rate limited';
  return `${why} (${pause.status}): paused ${pause.seconds} s, then reconnecting…`;
}

/**
 * Follows the stream at `path` until `signal` aborts, resuming with Last-Event-ID after a drop
 * so no event is missed. A 401 or 404 ends it (the key was refused; the stream's owner is gone).
 * A 429 or 503 with Retry-After holds the next attempt back that long (at most MAX_PAUSE_S).
 * handlers: onLive(fromNow) on each connection (fromNow: there was no id to resume from, so the
 * stream starts from now and nothing before it is replayed), onEvent(type, data), onDown(offline, pause)
 * (pause: { status, seconds, code } while a Retry-After holds it back, code the error's, else null),
 * onUnauthorized(reason, key), onGone().
 */
export async function follow(path, signal, handlers) {
  let lastEventId = null;
  let retryMs = 2000;
  let failures = 0;
  while (!signal.aborted) {
    const connection = new AbortController();
    const abortConnection = () => connection.abort();
    signal.addEventListener('abort', abortConnection);
    dropStream = abortConnection;
    let watchdog;
    const quiet = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(abortConnection, SILENT_STREAM_MS);
    };
    let pause = null;
    try {
      const key = state.apiKey;
      const headers = { authorization: authorization(key), accept: 'text/event-stream' };
      if (lastEventId !== null) headers['last-event-id'] = lastEventId;
      quiet();
      const res = await fetch(path, { headers, signal: connection.signal, cache: 'no-store' });
      if (res.status === 401) return handlers.onUnauthorized((await res.json().catch(() => null))?.error?.message, key);
      if (res.status === 404) return handlers.onGone();
      // Coming back sooner than asked is refused again, and spends limits the key's traffic needs.
      const seconds = res.status === 429 || res.status === 503 ? retryAfterSeconds(res.headers.get('retry-after')) : null;
      if (seconds !== null) {
        // The code tells the agent's cap on streams (too_many_streams) from the key's own limits.
        const code = (await res.json().catch(() => null))?.error?.code;
        pause = { status: res.status, seconds: Math.min(seconds, MAX_PAUSE_S), ...(typeof code === 'string' && { code }) };
      }
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      handlers.onLive(lastEventId === null);
      failures = 0;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        quiet();
        buffer = (buffer + value).replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = parseFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (frame.retry !== null) retryMs = frame.retry;
          if (frame.id !== null) lastEventId = frame.id;
          if (frame.data.length === 0) continue;
          let data = null;
          try { data = JSON.parse(frame.data.join('\n')); } catch { /* not JSON: ignore */ }
          handlers.onEvent(frame.type, data);
        }
      }
    } catch {
      /* dropped: reconnect below */
    } finally {
      clearTimeout(watchdog);
      signal.removeEventListener('abort', abortConnection);
      connection.abort();
    }
    if (signal.aborted) return;
    failures += 1;
    handlers.onDown(!navigator.onLine, pause);
    const backoff = Math.min(retryMs * 2 ** Math.min(failures - 1, 3), 15_000);
    // Coming back online ends a wait for the network, never one the gateway asked for.
    await wait(Math.max(backoff, (pause?.seconds ?? 0) * 1000), signal, pause === null);
  }
}
