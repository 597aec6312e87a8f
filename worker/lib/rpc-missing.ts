/**
 * Whether an RPC call failed because the object's release has no such method: during a gradual
 * deployment an object may run the release before the one calling it (docs/ARCHITECTURE.md,
 * "object RPC is an interface between releases"). Its caller treats that as the feature's
 * absence and answers as that release did, never as the request's failure.
 */
export function rpcMethodMissing(error: unknown): boolean {
  return /does not implement the method/.test(String(error));
}
