import { z } from 'zod';
import { TaskState } from '@a2a-js/sdk';
import type { A2AVersion } from '../worker/a2a/rpc-error';
import { paramsProblem, type MethodSchemas } from '../worker/lib/json-rpc-params';
import { MAX_MODE_LENGTH, MAX_OUTPUT_MODES } from './a2a-output-modes';

/**
 * The shape of a request's params, checked on the raw JSON before the SDK reads them.
 *
 * Messages: the SDK's v1.0 decoder coerces whatever it is given: a part that is `null` threw
 * inside it (a -32603), a part with no content or a message with no parts became a task,
 * `raw` that is not base64 was silently cut to the bytes it could decode, a part naming both
 * `text` and `data` lost one, and a role such as `"user"` was stored as `UNRECOGNIZED`. Every
 * message is a durable execution here, so what cannot be stored as sent is refused with
 * -32602, naming the field. The v0.3 layer checks most of this itself; the gaps it leaves (no
 * parts, `text` that is not a string, `bytes` that are not base64) are closed the same way.
 *
 * Ids in v0.3: the compatibility layer hands ids and lists to the SDK as they came, and the
 * SDK fails on a task id that is not a string (`taskId.trim is not a function`) or a list that
 * is not one, with -32603. (The v1.0 decoder makes strings of them: an unknown task.)
 *
 * Values are not walked: a data part holds any JSON, and its depth and size are bounded
 * later with the execution's input (a2a-limits.ts).
 */

/** Standard or URL-safe base64, padded or not, as proto JSON accepts for `bytes`. */
const BASE64 = /^(?:[A-Za-z0-9+/]*|[A-Za-z0-9_-]*)={0,2}$/;
const isBase64 = (value: string): boolean => BASE64.test(value) && value.replace(/=+$/, '').length % 4 !== 1;

const base64 = z.string().refine(isBase64, 'is not base64');
const text = z.string();
const texts = z.array(z.string());
const object = z.record(z.string(), z.unknown());

/**
 * How many messages of a task's history to show: the spec's non-negative integer. The SDK took
 * -1 or 1.5 as given (a negative length showed the whole history), and proto JSON's decoder
 * made a number of a string.
 */
const NOT_A_LENGTH = 'is not a non-negative integer';
const historyLength = z.number({ error: NOT_A_LENGTH }).int(NOT_A_LENGTH).min(0, NOT_A_LENGTH);

/** Present: set to anything but null (proto JSON reads null as unset). */
const given = (part: Record<string, unknown>, field: string): boolean => part[field] !== undefined && part[field] !== null;

/** The content fields of a v1.0 Part, a oneof: exactly one is set. */
const V1_CONTENT = ['text', 'raw', 'url', 'data'] as const;

/** A v1.0 part in proto JSON: a message's, and an artifact's an upstream names (a2a-outcome.ts). */
export const PartV1 = z
  .looseObject({
    text: text.nullish(),
    raw: base64.nullish(),
    url: text.nullish(),
    mediaType: text.nullish(),
    media_type: text.nullish(),
    filename: text.nullish(),
    metadata: object.nullish(),
  })
  .superRefine((part, ctx) => {
    const set = V1_CONTENT.filter((field) => given(part, field));
    if (set.length !== 1) {
      ctx.addIssue({ code: 'custom', message: set.length === 0 ? `has no content: set one of ${V1_CONTENT.join(', ')}` : `sets ${set.join(' and ')}: a part holds one of ${V1_CONTENT.join(', ')}` });
    }
  });

/** Roles as proto JSON spells them (the enum's name or number); ROLE_UNSPECIFIED is no role. */
const ROLES_V1 = ['ROLE_USER', 'ROLE_AGENT', 1, 2] as const;

const MessageV1 = z.looseObject({
  messageId: text.nullish(),
  message_id: text.nullish(),
  contextId: text.nullish(),
  context_id: text.nullish(),
  taskId: text.nullish(),
  task_id: text.nullish(),
  role: z.unknown().refine((role) => (ROLES_V1 as readonly unknown[]).includes(role), 'is not ROLE_USER or ROLE_AGENT'),
  parts: z.array(PartV1).min(1, 'is empty: a message has at least one part'),
  metadata: object.nullish(),
  extensions: texts.nullish(),
  referenceTaskIds: texts.nullish(),
  reference_task_ids: texts.nullish(),
});

/** Media types: bounded, since they are kept in the turn's execution input. */
const outputModes = z.array(z.string().max(MAX_MODE_LENGTH, `is longer than ${MAX_MODE_LENGTH} characters`)).max(MAX_OUTPUT_MODES, `has more than ${MAX_OUTPUT_MODES} media types`);

const ConfigurationV1 = z.looseObject({
  acceptedOutputModes: outputModes.nullish(),
  accepted_output_modes: outputModes.nullish(),
  historyLength: historyLength.nullish(),
  history_length: historyLength.nullish(),
  returnImmediately: z.boolean().nullish(),
  return_immediately: z.boolean().nullish(),
}).nullish();

const SendV1 = z.looseObject({ message: MessageV1, configuration: ConfigurationV1, metadata: object.nullish() });

const FileV03 = z.looseObject({ bytes: base64.nullish(), uri: text.nullish(), name: text.nullish(), mimeType: text.nullish() });

/** v0.3 parts by kind; the layer itself refuses an unknown kind and a part with no content. */
const PartV03 = object.superRefine((part, ctx) => {
  if (part.kind === 'text' && typeof part.text !== 'string') ctx.addIssue({ code: 'custom', path: ['text'], message: 'is not a string' });
  if (part.kind === 'file') {
    const file = FileV03.safeParse(part.file ?? {});
    for (const issue of file.success ? [] : file.error.issues) ctx.addIssue({ code: 'custom', path: ['file', ...issue.path.map(String)], message: issue.message });
  }
});

const SendV03 = z.looseObject({
  message: z.looseObject({
    messageId: text.nullish(),
    contextId: text.nullish(),
    taskId: text.nullish(),
    referenceTaskIds: texts.nullish(),
    extensions: texts.nullish(),
    metadata: object.nullish(),
    parts: z.array(PartV03).min(1, 'is empty: a message has at least one part'),
  }),
  configuration: z.looseObject({
    acceptedOutputModes: outputModes.nullish(),
    historyLength: historyLength.nullish(),
    blocking: z.boolean().nullish(),
  }).nullish(),
  metadata: object.nullish(),
});

/** v0.3 params naming a task (TaskQueryParams, TaskIdParams, the push config ones). */
const TaskIdV03 = z.looseObject({ id: text.nullish(), historyLength: historyLength.nullish(), metadata: object.nullish() });
const ConfigIdV03 = TaskIdV03.extend({ pushNotificationConfigId: text.nullish() });
/** A delete names its config: without one the SDK deleted the config with the empty id (none) and answered success. */
const DeleteConfigV03 = TaskIdV03.extend({ pushNotificationConfigId: text });
const SetConfigV03 = z.looseObject({ taskId: text.nullish(), pushNotificationConfig: object });

/**
 * v1.0 params naming a task (`id`) or a task's push config (`taskId`, `id`). The SDK's decoder
 * made strings of other values: `5` was an unknown task, and `["ex_…"]` the task it held, so
 * an array id read, cancelled or deleted a task's config as if the id had been sent.
 */
const TaskIdV1 = z.looseObject({ id: text.nullish() });
const ConfigTaskV1 = z.looseObject({ taskId: text.nullish(), task_id: text.nullish() });

/** v1.0 GetTask. */
const GetTaskV1 = TaskIdV1.extend({ historyLength: historyLength.nullish(), history_length: historyLength.nullish() });

/**
 * v1.0 Get- and DeleteTaskPushNotificationConfig name their config (`id` is required in 1.0;
 * v0.3's get alone may name the task, its older form). A get without one answered -32001 for
 * the config with the empty id, as if the client had named one.
 */
const NamedConfigV1 = ConfigTaskV1.extend({ id: text });

/**
 * Task states as proto JSON spells them (the enum's name or number); TASK_STATE_UNSPECIFIED is
 * no filter. The SDK's decoder turned every other value into UNRECOGNIZED, so a bad filter was
 * refused as "Invalid status filter: -1" whatever the client sent.
 */
const STATES = Object.entries(TaskState).filter(([, n]) => typeof n === 'number' && n >= 0) as [string, number][];
const STATE_NAMES = STATES.map(([name]) => name).filter((name) => name !== 'TASK_STATE_UNSPECIFIED');
const isState = (value: unknown): boolean => STATES.some(([name, n]) => value === name || value === n);
const shown = (value: unknown): string => {
  const json = JSON.stringify(value) ?? String(value);
  return json.length > 64 ? `${json.slice(0, 64)}…` : json;
};
const taskState = z.unknown().superRefine((value, ctx) => {
  if (!isState(value)) ctx.addIssue({ code: 'custom', message: `${shown(value)} is not a task state (${STATE_NAMES.join(', ')}, or the enum's number)` });
});

/**
 * v1.0 ListTasks: `includeArtifacts` that is not a boolean (`"yes"`, even `"false"`) counted as
 * true; a filter of another type than a string was dropped (`statusTimestampAfter: 5` listed
 * every task) or made a string of (`contextId: 5` filtered on "5").
 */
const ListTasksV1 = z.looseObject({
  historyLength: historyLength.nullish(),
  history_length: historyLength.nullish(),
  status: taskState.nullish(),
  contextId: text.nullish(),
  context_id: text.nullish(),
  statusTimestampAfter: text.nullish(),
  status_timestamp_after: text.nullish(),
  pageToken: text.nullish(),
  page_token: text.nullish(),
  includeArtifacts: z.boolean({ error: 'is not a boolean' }).nullish(),
  include_artifacts: z.boolean({ error: 'is not a boolean' }).nullish(),
});

const METHODS: MethodSchemas<A2AVersion> = {
  '1.0': {
    SendMessage: SendV1,
    SendStreamingMessage: SendV1,
    GetTask: GetTaskV1,
    CancelTask: TaskIdV1,
    SubscribeToTask: TaskIdV1,
    ListTasks: ListTasksV1,
    ListTaskPushNotificationConfigs: ConfigTaskV1,
    GetTaskPushNotificationConfig: NamedConfigV1,
    DeleteTaskPushNotificationConfig: NamedConfigV1,
  },
  '0.3': {
    'message/send': SendV03,
    'message/stream': SendV03,
    'tasks/get': TaskIdV03,
    'tasks/cancel': TaskIdV03,
    'tasks/resubscribe': TaskIdV03,
    'tasks/pushNotificationConfig/list': TaskIdV03,
    'tasks/pushNotificationConfig/get': ConfigIdV03,
    'tasks/pushNotificationConfig/delete': DeleteConfigV03,
    'tasks/pushNotificationConfig/set': SetConfigV03,
  },
};

/**
 * Why a request's params cannot be taken as sent (`message.parts.0: has no content: …`,
 * `id: Invalid input: expected string, received number`), or null; null too for a method
 * without a check here.
 */
export function paramsShapeProblem(version: A2AVersion, method: unknown, params: unknown): string | null {
  return paramsProblem(METHODS, version, method, params, 'params: not a valid message');
}
