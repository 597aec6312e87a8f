import { z } from 'zod';
import type { A2AVersion } from '../worker/a2a/rpc-error';
import { paramsProblem, type MethodSchemas } from '../worker/lib/json-rpc-params';
import { hasControl } from '../worker/schemas/credential';
import { MAX_A2A_ID_CHARS, MAX_TASK_ID_CHARS } from './a2a-limits';

/**
 * Bounds of a push notification config as a client sends it: made with
 * CreateTaskPushNotificationConfig (`tasks/pushNotificationConfig/set` in v0.3) or given with a
 * message (`configuration.taskPushNotificationConfig`, v0.3 `configuration.pushNotificationConfig`).
 * A config is stored in the agent's SQLite and its token and credentials go out as headers of
 * every delivery, so each field is bounded as the REST API bounds its kind (URLs as a
 * webhook's, secrets as an upstream's key), not only by the 1 MiB body. The raw params are
 * checked, before the SDK reads them: its v0.3 layer keeps only the first of a config's
 * `schemes` (and logs them all).
 */

/** A delivery URL: as long as a webhook's or an upstream's. */
export const MAX_PUSH_URL_CHARS = 2048;
/** The `X-A2A-Notification-Token` value: as long as an upstream's API key. */
export const MAX_PUSH_TOKEN_CHARS = 1024;
/** An `Authorization` scheme (`Bearer`, `Basic`, …). */
export const MAX_PUSH_SCHEME_CHARS = 64;
/** v0.3 names a list of schemes; only the first is used. */
export const MAX_PUSH_SCHEMES = 8;
/** The `Authorization` credentials: room for a signed token (a JWT of a few KB). */
export const MAX_PUSH_CREDENTIALS_CHARS = 4096;

const text = (max: number) => z.string().max(max, `is longer than ${max} characters`).nullish();

/**
 * What goes out as a header of every delivery (the token, the scheme and credentials of
 * `Authorization`): no control character, as an upstream's API key. A line break or NUL made
 * the delivery's fetch throw before sending, so a config answered as saved never delivered
 * anything (retried on the schedule, then given up); the other controls servers refuse.
 */
const headerText = (max: number) =>
  z.string().max(max, `is longer than ${max} characters`).refine((value) => !hasControl(value), 'has a control character (a line break, a tab, NUL…), which no HTTP header carries');

const Scheme = headerText(MAX_PUSH_SCHEME_CHARS);
const Credentials = headerText(MAX_PUSH_CREDENTIALS_CHARS).nullish();

/** The fields both versions share: the config's id, URL and token. */
const ConfigFields = {
  id: text(MAX_A2A_ID_CHARS),
  url: text(MAX_PUSH_URL_CHARS),
  token: headerText(MAX_PUSH_TOKEN_CHARS).nullish(),
};

/** A v1.0 TaskPushNotificationConfig (proto JSON: snake_case names are read too). */
const ConfigV1 = z.looseObject({
  ...ConfigFields,
  taskId: text(MAX_TASK_ID_CHARS),
  task_id: text(MAX_TASK_ID_CHARS),
  tenant: text(MAX_A2A_ID_CHARS),
  authentication: z.looseObject({ scheme: Scheme.nullish(), credentials: Credentials }).nullish(),
});

/** A v0.3 PushNotificationConfig. */
const ConfigV03 = z.looseObject({
  ...ConfigFields,
  authentication: z.looseObject({
    schemes: z.array(Scheme).max(MAX_PUSH_SCHEMES, `names more than ${MAX_PUSH_SCHEMES} schemes`).nullish(),
    credentials: Credentials,
  }).nullish(),
});

const SendV1 = z.looseObject({ configuration: z.looseObject({ taskPushNotificationConfig: ConfigV1.nullish(), task_push_notification_config: ConfigV1.nullish() }).nullish() });
const SendV03 = z.looseObject({ configuration: z.looseObject({ pushNotificationConfig: ConfigV03.nullish() }).nullish() });

/** The params of each method that stores a config, by version and method name. */
const PARAMS: MethodSchemas<A2AVersion> = {
  '1.0': { SendMessage: SendV1, SendStreamingMessage: SendV1, CreateTaskPushNotificationConfig: ConfigV1 },
  '0.3': {
    'message/send': SendV03,
    'message/stream': SendV03,
    'tasks/pushNotificationConfig/set': z.looseObject({ taskId: text(MAX_TASK_ID_CHARS), pushNotificationConfig: ConfigV03.nullish() }),
  },
};

/**
 * Why the push notification config in a request's params is refused, naming the field as the
 * client sent it (`configuration.taskPushNotificationConfig.url: is longer than …`), or null.
 */
export function pushConfigProblem(version: A2AVersion, method: unknown, params: unknown): string | null {
  return paramsProblem(PARAMS, version, method, params, 'params: not a valid push notification config');
}
