/**
 * Calls `gone` once if the client of a request goes away (its signal aborts: workerd's
 * `enable_request_signal`) before the returned function is called. A listener added and
 * removed: nothing is awaited on the way of a request whose client stays.
 *
 * @example const unlink = whenClientGone(c.req.raw.signal, freeSlot); try { await next(); } finally { unlink(); }
 */
export function whenClientGone(signal: AbortSignal, gone: () => void): () => void {
  if (signal.aborted) {
    gone();
    return () => {};
  }
  signal.addEventListener('abort', gone, { once: true });
  return () => signal.removeEventListener('abort', gone);
}
