import type { ServerCallContext } from '@a2a-js/sdk/server';

/**
 * A push config a request saved or deleted. Push configs are outgoing delivery targets, as
 * webhooks are, so the edge writes them to the audit log (`push.put`, `push.delete`); the
 * agent reports them because only its store knows whether a delete removed anything (the spec
 * makes deleting an unknown config succeed) and that a send saved the config it carried.
 */
export interface PushChange {
  change: 'put' | 'delete';
  taskId: string;
  configId: string;
  /** The URL's host (a put's): the URL itself may carry a secret in its query. */
  host?: string;
}

/** Where the SDK's call context carries the request's list of changes (the state bag, as a2a-internal.ts). */
export const PUSH_CHANGES = 'gateway.pushChanges';

export function notePushChange(context: ServerCallContext | undefined, change: PushChange): void {
  const changes = context?.state.get(PUSH_CHANGES) as PushChange[] | undefined;
  changes?.push(change);
}

/** The host of a saved config's URL (checked by the outbound guard, so it parses; '' if not). */
export function pushHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '';
  }
}
