import { isJSONRPCRequest, type McpRequestContext, type McpServer } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { paramsProblem, type MethodSchemas } from '../lib/json-rpc-params';

/**
 * The params of the protocol methods this server serves, checked on the raw message before the
 * MCP SDK reads it.
 *
 * The SDK validates a request's params against the protocol's schemas inside its dispatch, and
 * for `initialize` and `tools/list` a mismatch is thrown as a plain error, which it answers
 * -32603 Internal error with a dump of zod's issues: a client's mistake reported as the
 * server's. (`tools/call` it answers -32602 itself, with the same dump, but only once the key's
 * limits have counted an `execute_intent` as started.) JSON-RPC and MCP say -32602 Invalid
 * params, so these are refused here with -32602 and the first field at fault, like the A2A
 * side's checks (durable/a2a-params-shape.ts).
 *
 * The schemas are the SDK's own (2.4.0) for these methods, per era, with unknown keys let
 * through as it lets them: nothing it served is refused. Params that are not an object, and a
 * `_meta` that does not fit, never get this far: the SDK answers them -32600 as a malformed
 * JSON-RPC message. `ping` and `server/discover` take nothing else, and other methods are
 * left to the SDK (-32601 for those not served).
 */

/** An object whose values are JSON (the SDK's JSONObject: a record, never an array). */
const object = z.record(z.string(), z.unknown());

const Icon = z.looseObject({ src: z.string(), mimeType: z.string().optional(), sizes: z.array(z.string()).optional(), theme: z.enum(['light', 'dark']).optional() });

const Implementation = z.looseObject({
  name: z.string(),
  title: z.string().optional(),
  version: z.string(),
  icons: z.array(Icon).optional(),
  websiteUrl: z.string().optional(),
  description: z.string().optional(),
});

const ClientCapabilities = z.looseObject({
  experimental: z.record(z.string(), object).optional(),
  sampling: z.looseObject({ context: object.optional(), tools: object.optional() }).optional(),
  elicitation: z.looseObject({ form: z.looseObject({ applyDefaults: z.boolean().optional() }).optional(), url: object.optional() }).optional(),
  roots: z.looseObject({ listChanged: z.boolean().optional() }).optional(),
  tasks: z
    .looseObject({
      list: object.optional(),
      cancel: object.optional(),
      requests: z.looseObject({ sampling: z.looseObject({ createMessage: object.optional() }).optional(), elicitation: z.looseObject({ create: object.optional() }).optional() }).optional(),
    })
    .optional(),
  extensions: z.record(z.string(), object).optional(),
});

const Initialize = z.looseObject({ protocolVersion: z.string(), capabilities: ClientCapabilities, clientInfo: Implementation });

/**
 * Every tool is on the first page and no `nextCursor` is ever given, so every cursor is one this
 * server did not issue: the spec's pagination says an invalid cursor SHOULD be -32602. (The SDK
 * ignored it and listed every tool, which would loop a client paging on it.)
 */
const ToolsList = z.looseObject({
  cursor: z.string().optional().refine((cursor) => cursor === undefined, 'not a cursor this server gave: it lists every tool on one page, with no nextCursor'),
});

// requestState: the SDK refuses one that is not a string (-32602) only once the call is in its dispatch.
const CallTool = z.looseObject({ name: z.string(), arguments: object.optional(), requestState: z.string().optional() });

/** Era as `createMcpHandler` names it: `legacy` for the 2025 versions, `modern` for 2026-07-28. */
export type McpEra = McpRequestContext['era'];

const METHODS: MethodSchemas<McpEra> = {
  legacy: {
    initialize: Initialize,
    'tools/list': ToolsList,
    // The 2025-11-25 task augmentation; 2026-07-28 has none, and its SDK ignores the key.
    'tools/call': CallTool.extend({ task: z.looseObject({ ttl: z.number().optional() }).optional() }),
  },
  modern: { 'tools/list': ToolsList, 'tools/call': CallTool },
};

/** Why a request's params do not fit its method (`clientInfo.name: …`), or null. */
export function mcpParamsProblem(era: McpEra, method: unknown, params: unknown): string | null {
  return paramsProblem(METHODS, era, method, params, 'params: not valid for this method');
}

/**
 * The server, made to answer a request whose params do not fit its method with -32602 before
 * the SDK's protocol layer sees it. The check sits between the SDK's transport and its server:
 * the transport's own refusals (Accept, protocol version, batch rules) come first as before,
 * and it still shapes the answer (an SSE event or JSON; in a batch, beside the other calls'
 * answers). `refused` hears of each such request, for the key's limits.
 *
 * @example createMcpHandler(({ era }) => checkingParams(createGatewayMcpServer(caller), era, onRefused))
 */
export function checkingParams(server: McpServer, era: McpEra, refused: (method: string, params: unknown, id: string | number) => void): McpServer {
  const connect = server.connect.bind(server);
  server.connect = async (transport) => {
    await connect(transport);
    const deliver = transport.onmessage;
    transport.onmessage = (message, extra) => {
      // Notifications and responses have no answer to carry a refusal; the SDK sees them as before.
      if (!isJSONRPCRequest(message)) return deliver?.(message, extra);
      const problem = mcpParamsProblem(era, message.method, message.params);
      if (problem === null) return deliver?.(message, extra);
      refused(message.method, message.params, message.id);
      transport.send({ jsonrpc: '2.0', id: message.id, error: { code: -32602, message: `Invalid params: ${problem}` } }).catch((error: unknown) => {
        transport.onerror?.(error instanceof Error ? error : new Error(String(error)));
      });
    };
  };
  return server;
}
