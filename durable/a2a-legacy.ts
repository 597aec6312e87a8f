/**
 * The v0.3 wire's `final` flag. v0.3 marks the last status update of a stream `final: true`;
 * the SDK's translation sets it for terminal states only, but this server's streams also end
 * on an interrupted task (input- or auth-required: the turn's execution has finished) and on
 * a task queued on a paused agent (the executor's announcement, then the end). v1.0 has no
 * such flag: its stream simply ends.
 */

/** The message id of the executor's announcement that a turn waits on a paused agent. */
export const pausedNoteId = (executionId: string): string => `${executionId}${PAUSED_SUFFIX}`;
const PAUSED_SUFFIX = '-paused';

/** v0.3 states (the SDK's translation) after which this server's streams end, besides the terminal ones. */
const INTERRUPTED_V03 = new Set(['input-required', 'auth-required']);

interface LegacyStatusUpdate {
  kind: 'status-update';
  final: boolean;
  status?: { state?: string; message?: { messageId?: string } };
}

const isStatusUpdate = (result: unknown): result is LegacyStatusUpdate =>
  typeof result === 'object' && result !== null && (result as { kind?: unknown }).kind === 'status-update';

/** The v0.3 SSE event, its status update marked final when the stream ends with it. */
export function withLegacyFinal(event: unknown): unknown {
  const result = typeof event === 'object' && event !== null ? (event as { result?: unknown }).result : undefined;
  if (!isStatusUpdate(result) || result.final) return event;
  const state = result.status?.state ?? '';
  const paused = result.status?.message?.messageId?.endsWith(PAUSED_SUFFIX) === true;
  if (INTERRUPTED_V03.has(state) || (state === 'submitted' && paused)) result.final = true;
  return event;
}

/**
 * v0.3's `tasks/pushNotificationConfig/get` may name the task alone (`{id}`, its TaskIdParams
 * form, from when a task had one config): v0.3 servers answer with the task's config. The
 * SDK's translation looks for a config with the id `""` instead, which never exists, so the
 * params name the task's first config (the oldest) when they name none.
 */
export function withLegacyConfigId(body: Record<string, unknown>, configIdsOf: (taskId: string) => string[]): Record<string, unknown> {
  const params = body.params as Record<string, unknown> | undefined;
  if (body.method !== 'tasks/pushNotificationConfig/get' || typeof params?.id !== 'string' || params.pushNotificationConfigId) return body;
  const first = configIdsOf(params.id)[0];
  return first === undefined ? body : { ...body, params: { ...params, pushNotificationConfigId: first } };
}

/**
 * v0.3's `message/send` blocks unless `configuration.blocking` is false (the v0.3 servers, the
 * SDK's own among them, defaulted to blocking). The SDK's translation reads an unset `blocking`
 * as false when a configuration is given, so a client naming only `acceptedOutputModes` or
 * `historyLength` was answered at once: the unset value is made explicit before it translates.
 */
export function withLegacyBlocking(body: Record<string, unknown>): Record<string, unknown> {
  const params = body.params as Record<string, unknown> | undefined;
  const configuration = params?.configuration as Record<string, unknown> | null | undefined;
  if (body.method !== 'message/send' || typeof configuration !== 'object' || configuration === null) return body;
  if (configuration.blocking !== undefined && configuration.blocking !== null) return body;
  return { ...body, params: { ...params, configuration: { ...configuration, blocking: true } } };
}
