import { LegacyJsonRpcTransportHandler } from '@a2a-js/sdk/compat/v0_3/server';
import { JsonRpcTransportHandler } from '@a2a-js/sdk/server';

/** The A2A protocol versions this gateway serves (the `A2A-Version` header; v0.3 by default). */
export type A2AVersion = '1.0' | '0.3';

/**
 * An error as the JSON-RPC `error` member of the version's wire: v1.0 carries ErrorInfo in
 * `data`, v0.3 has none. The edge (refusals before the agent is asked) and the agent's object
 * (the SDK's errors) answer through this one mapping.
 */
export function jsonRpcError(version: A2AVersion, error: unknown): { code: number; message: string; data?: unknown } {
  return version === '0.3' ? LegacyJsonRpcTransportHandler.mapToLegacyJSONRPCError(error) : JsonRpcTransportHandler.mapToJSONRPCError(error);
}
