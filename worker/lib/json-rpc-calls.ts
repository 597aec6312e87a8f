/** What a predicate over one JSON-RPC call sees: its method, params and id, as sent. */
export type CallTest = (method: unknown, params: unknown, id: unknown) => boolean;

/** How many calls of a JSON-RPC body (one message or a batch) `test` holds for. */
export function countCalls(body: unknown, test: CallTest): number {
  const calls: unknown[] = Array.isArray(body) ? body : [body];
  return calls.filter((call) => {
    if (typeof call !== 'object' || call === null) return false;
    const { method, params, id } = call as { method?: unknown; params?: unknown; id?: unknown };
    return test(method, params, id);
  }).length;
}
