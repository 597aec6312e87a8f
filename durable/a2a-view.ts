import { Artifact, Message, Part, Role, Task, TaskState, type TaskStatus } from '@a2a-js/sdk';
import { messageOf } from '../worker/upstream/builtin';
import type { A2AOutcome, A2AOutcomeState } from '../worker/upstream/conformance';
import type { ExecutionError } from '../worker/schemas/execution';
import type { ExecutionRow } from './agent-rows';
import { referenceArtifact, referenceMessage, tooLargeToKeep } from './a2a-large';
import { agentMessage, dataPart, textPart } from './a2a-parts';
import { modesOfRow, shapedArtifacts } from './a2a-output-modes';
import { checkedOutcome } from './a2a-outcome';

/**
 * How an execution looks as an A2A task. The execution row is the truth for the state; the
 * A2A rows add history, context id and artifacts. Pure functions: no storage here.
 */

export const TERMINAL_TASK_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_REJECTED,
]);
/** States where the task waits for the client: not terminal, but its execution has finished. */
export const INTERRUPTED_TASK_STATES: ReadonlySet<TaskState> = new Set([TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED]);

const OUTCOME_STATES: Record<A2AOutcomeState, TaskState> = {
  'input-required': TaskState.TASK_STATE_INPUT_REQUIRED,
  'auth-required': TaskState.TASK_STATE_AUTH_REQUIRED,
  rejected: TaskState.TASK_STATE_REJECTED,
};

const parse = (text: string | null): unknown => (text === null ? undefined : (JSON.parse(text) as unknown));

/** What an upstream asked of A2A in its output (`output.a2a`), if anything it asked fits. */
export const outcomeOf = (output: unknown): A2AOutcome => checkedOutcome(output);

/**
 * What a finished execution keeps as its `a2a_state`: the state its output asks, '' when it
 * asks none; null unless it succeeded (only a succeeded execution's output decides its state).
 */
export function askedState(status: ExecutionRow['status'], output: unknown): string | null {
  if (status !== 'succeeded') return null;
  const asked = outcomeOf(output).state;
  return typeof asked === 'string' ? asked : '';
}

/** queued → SUBMITTED, running → WORKING, succeeded → COMPLETED (or what its output asks), failed → FAILED, cancelled → CANCELED. */
export function stateOf(row: Pick<ExecutionRow, 'status' | 'output'>): TaskState {
  switch (row.status) {
    case 'queued': return TaskState.TASK_STATE_SUBMITTED;
    case 'running': return TaskState.TASK_STATE_WORKING;
    case 'failed': return TaskState.TASK_STATE_FAILED;
    case 'cancelled': return TaskState.TASK_STATE_CANCELED;
    case 'succeeded': {
      const asked = outcomeOf(parse(row.output)).state;
      return asked ? OUTCOME_STATES[asked] : TaskState.TASK_STATE_COMPLETED;
    }
  }
}

/** The reply text of an output: `output.reply` when it is a string, else its JSON. */
export function replyOf(output: unknown): string {
  if (output && typeof output === 'object' && 'reply' in output && typeof output.reply === 'string') return output.reply;
  return JSON.stringify(output ?? null);
}

/** The user's turn of an execution created through the REST API (A2A turns keep their own message). */
export function inputMessage(row: ExecutionRow, contextId: string): Message {
  const input = parse(row.input) ?? null;
  const parts = [textPart(messageOf({ intent: row.intent, input }))];
  if (input !== null && typeof input === 'object') parts.push(dataPart(input));
  return { messageId: `${row.id}-input`, taskId: row.id, contextId, role: Role.ROLE_USER, parts, metadata: { intent: row.intent }, extensions: [], referenceTaskIds: [] };
}

/**
 * The artifacts of a succeeded execution: the ones its output names (`output.a2a.artifacts`),
 * or else one `output` artifact with the reply text and the output as data, each shaped by
 * the send's `acceptedOutputModes` (a2a-output-modes.ts); when those are too
 * large to keep in the task, one `output` artifact referring to the execution (a2a-large.ts).
 * Ids are derived from the execution, so the SDK's merge by artifact id never duplicates them.
 */
export function artifactsOf(row: ExecutionRow, agentId: string): Artifact[] {
  const artifacts = copiedArtifactsOf(row);
  if (artifacts.length === 0 || !tooLargeToKeep(row, 'output', () => artifacts.map((a) => Artifact.toJSON(a)), 1)) return artifacts;
  return [referenceArtifact(row, agentId)];
}

function copiedArtifactsOf(row: ExecutionRow): Artifact[] {
  if (row.status !== 'succeeded') return [];
  const output = parse(row.output);
  const outcome = outcomeOf(output);
  if (outcome.state) return [];
  // Ids keep the upstream's index, so an artifact left out by the modes changes no other id.
  if (outcome.artifacts?.length) {
    return shapedArtifacts(outcome.artifacts.map((a, i) => ({
      artifactId: `${row.id}-artifact-${i}`, name: a.name, description: '', parts: a.parts.map((p) => Part.fromJSON(p)), metadata: undefined, extensions: [],
    })), modesOfRow(row));
  }
  const parts = [textPart(replyOf(output))];
  if (output !== null && typeof output === 'object') parts.push(dataPart(output));
  return shapedArtifacts([{ artifactId: `${row.id}-output`, name: 'output', description: '', parts, metadata: undefined, extensions: [] }], modesOfRow(row));
}

/**
 * The status message of a finished execution: the reply, or the error; none while it runs.
 * The task keeps it twice (status and history): when that is too large, it refers to the execution.
 */
export function statusMessage(row: ExecutionRow, taskId: string, contextId: string, state: TaskState, agentId: string): Message | undefined {
  if (row.status === 'queued' || row.status === 'running') return undefined;
  let text: string;
  if (row.status === 'succeeded') {
    if (state === TaskState.TASK_STATE_COMPLETED) return undefined; // the artifact carries the answer
    text = replyOf(parse(row.output));
  } else {
    const error = parse(row.error) as ExecutionError | undefined;
    text = error ? `${error.code}: ${error.message}` : row.status;
  }
  const message = agentMessage(`${row.id}-status`, taskId, contextId, [textPart(text)]);
  const field = row.status === 'succeeded' ? 'output' : 'error';
  return tooLargeToKeep(row, field, () => Message.toJSON(message), 2) ? referenceMessage(row, taskId, contextId, agentId) : message;
}

const timestampOf = (row: ExecutionRow): string => new Date(row.finished_at ?? row.started_at ?? row.created_at).toISOString();

export interface TaskRecord {
  /** The agent's id, for the REST path of an answer kept by reference. */
  agentId: string;
  taskId: string;
  contextId: string;
  /** The task as the SDK last saved it; undefined for an execution made through the REST API. */
  saved: Task | undefined;
  /** The execution of the latest turn; undefined once retention has removed it. */
  execution: ExecutionRow | undefined;
  /** Set when an interrupted task was canceled between turns (its execution had finished). */
  closedState: TaskState | null;
}

/**
 * The task as A2A shows it: the saved history and artifacts, with the state of its current
 * execution. The saved status is kept when it agrees with the execution (it carries the
 * SDK's message and timestamp); otherwise it is rebuilt from the row, which happens after a
 * restart or when the REST API changed the execution.
 */
export function taskView(record: TaskRecord): Task {
  const { agentId, taskId, contextId, saved, execution } = record;
  const base: Task = saved ?? { id: taskId, contextId, status: undefined, artifacts: [], history: execution ? [inputMessage(execution, contextId)] : [], metadata: undefined };
  const task: Task = { ...base, artifacts: [...base.artifacts], history: [...base.history] };
  if (record.closedState !== null) {
    if (task.status?.state !== record.closedState) task.status = { state: record.closedState, message: undefined, timestamp: new Date().toISOString() };
    return task;
  }
  if (!execution) return task;
  const state = stateOf(execution);
  if (task.status?.state !== state) {
    const status: TaskStatus = { state, message: statusMessage(execution, taskId, contextId, state, agentId), timestamp: timestampOf(execution) };
    task.status = status;
    if (status.message && !task.history.some((m) => m.messageId === status.message?.messageId)) task.history.push(status.message);
  }
  // An `output` artifact present is the execution's answer, or its reference (a2a-large.ts, storableTask).
  if (task.artifacts.some((a) => a.artifactId === `${execution.id}-output`)) return task;
  for (const artifact of artifactsOf(execution, agentId)) {
    if (!task.artifacts.some((a) => a.artifactId === artifact.artifactId)) task.artifacts.push(artifact);
  }
  return task;
}

export const encodeTask = (task: Task): string => JSON.stringify(Task.toJSON(task));
export const decodeTask = (text: string): Task => Task.fromJSON(JSON.parse(text));
