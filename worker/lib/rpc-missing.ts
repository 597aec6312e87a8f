/**
 * Whether an RPC call failed because the object's release has no such method: during a gradual
 * deployment an object may run the release before the one calling it (docs/ARCHITECTURE.md,
 * "object RPC is an interface between releases"). Its caller treats that as the feature's
 * absence and answers as that release did, never as the request's failure. `method`: only
 * when that is the method missing (a fallback may call another, which may be missing too).
 */
export function rpcMethodMissing(error: unknown, method?: string): boolean {
  const message = String(error);
  return message.includes('does not implement the method') && (method === undefined || message.includes(`"${method}"`));
}
