/**
 * Calls `gone` once if the client of a request goes away (its signal aborts: workerd's
 * `enable_request_signal`) before the returned function is called. Until then the request's
 * context is held open with `waitUntil`: once its client has left, the runtime keeps a
 * request's context only for its `waitUntil` promises, and would not deliver the abort to a
 * handler that has none. A request whose client stays adds a listener and a promise, and
 * removes the listener; nothing is awaited on its way.
 *
 * @example const unlink = whenClientGone(c.req.raw.signal, freeSlot, waitUntil); try { await next(); } finally { unlink(); }
 */
export function whenClientGone(signal: AbortSignal, gone: () => Promise<unknown>, waitUntil: (p: Promise<unknown>) => void): () => void {
  if (signal.aborted) {
    waitUntil(gone());
    return () => {};
  }
  let settle: (value?: Promise<unknown>) => void = () => {};
  waitUntil(new Promise<unknown>((resolve) => (settle = resolve)));
  const onAbort = () => settle(gone());
  signal.addEventListener('abort', onAbort, { once: true });
  return () => {
    signal.removeEventListener('abort', onAbort);
    settle();
  };
}
