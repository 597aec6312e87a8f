import { StreamResponse, TaskPushNotificationConfig, type Task } from '@a2a-js/sdk';
import { V03PushNotificationSerializer } from '@a2a-js/sdk/compat/v0_3/server';
import type { A2AVersion } from '../worker/a2a/rpc-error';

/**
 * The protocol version a push config was made in, kept in its stored JSON beside the config
 * (the SDK's codec ignores the key when it reads the config back, so no client sees it). A
 * config stored before this key existed reads as 1.0, as every config was sent then.
 */
const WIRE_KEY = 'gatewayWireVersion';

/** The JSON a push config is stored as: the SDK's, marked when it was made with the v0.3 names. */
export function storedPushConfig(config: TaskPushNotificationConfig, wire: A2AVersion): Record<string, unknown> {
  return { ...(TaskPushNotificationConfig.toJSON(config) as Record<string, unknown>), ...(wire === '0.3' && { [WIRE_KEY]: wire }) };
}

/** A stored push config and the version its deliveries speak. */
export function readPushConfig(json: string): { config: TaskPushNotificationConfig; wire: A2AVersion } {
  const stored = JSON.parse(json) as Record<string, unknown>;
  return { config: TaskPushNotificationConfig.fromJSON(stored), wire: stored[WIRE_KEY] === '0.3' ? '0.3' : '1.0' };
}

/**
 * The body of a push notification of `task` per wire version, each built once: v1.0's
 * StreamResponse (`{"task": …}`, application/a2a+json), or for a config made with the v0.3
 * names the v0.3 Task (`{"kind": "task", …}`, application/json) that a v0.3 client's
 * receiver reads, as the SDK's legacy-aware push sender sends it.
 */
export function pushBodies(task: Task): (wire: A2AVersion) => string {
  const built = new Map<A2AVersion, string>();
  return (wire) => {
    let body = built.get(wire);
    if (body === undefined) {
      const event: StreamResponse = { payload: { $case: 'task', value: task } };
      body = wire === '0.3' ? new V03PushNotificationSerializer().serialize(event, task).body : JSON.stringify(StreamResponse.toJSON(event));
      built.set(wire, body);
    }
    return body;
  };
}

/** The Content-Type of a push notification body per wire version. */
export const pushContentType = (wire: A2AVersion): string => (wire === '0.3' ? 'application/json' : 'application/a2a+json');
