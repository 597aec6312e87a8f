import type { A2AVersion } from './rpc-error';

/**
 * The methods each version's SDK handler serves (its JSON-RPC transport's switch), so the
 * edge can tell an unknown method from a known one before it looks at the params: JSON-RPC
 * answers an unknown method -32601 whatever its params, and the SDK checks params first.
 */
const METHODS: Record<A2AVersion, ReadonlySet<string>> = {
  '1.0': new Set([
    'SendMessage', 'SendStreamingMessage', 'GetTask', 'ListTasks', 'CancelTask', 'SubscribeToTask',
    'CreateTaskPushNotificationConfig', 'GetTaskPushNotificationConfig', 'DeleteTaskPushNotificationConfig',
    'ListTaskPushNotificationConfigs', 'GetExtendedAgentCard',
  ]),
  '0.3': new Set([
    'message/send', 'message/stream', 'tasks/get', 'tasks/cancel', 'tasks/resubscribe',
    'tasks/pushNotificationConfig/set', 'tasks/pushNotificationConfig/get', 'tasks/pushNotificationConfig/list',
    'tasks/pushNotificationConfig/delete', 'agent/getAuthenticatedExtendedCard',
  ]),
};

export const isA2AMethod = (version: A2AVersion, method: string): boolean => METHODS[version].has(method);

/** -32601 as the version's SDK words it (v1.0: no ErrorInfo, as for every JSON-RPC protocol error). */
export const methodNotFound = (version: A2AVersion, method: string): { code: number; message: string } =>
  ({ code: -32601, message: version === '0.3' ? `Method not found: ${method}` : 'Invalid method.' });
