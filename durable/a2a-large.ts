import { Artifact, Message, Role, Task, type Part } from '@a2a-js/sdk';
import type { ExecutionRow } from './agent-rows';
import { agentMessage, dataPart, textPart } from './a2a-parts';
import { modesOfRow, shapedArtifacts } from './a2a-output-modes';
import { exceedsJsonBytes, utf8BytesOver } from '../worker/lib/json-limits';

/**
 * Answers too large to keep in a task. A task's history and artifacts are one JSON value in
 * the agent's SQLite (a2a_tasks.task), which Durable Object storage refuses past 2 MB, and the
 * record keeps a turn's answer twice (an artifact's text and data parts; an interrupted turn's
 * status message and its history entry). An upstream output may take 1 MiB, more once escaped
 * inside a text part, so a large answer is kept by reference: the task says how large it is
 * and which execution's REST resource holds it in full. The rule reads the execution row
 * alone, so the stream, the blocking send's answer, GetTask and push notifications (all built
 * by a2a-view.ts from the row) show the same thing.
 */

/**
 * Largest share of a task's record one turn's answer may take, its copies counted: a record
 * is at most MAX_TASK_RECORD_BYTES (1 MiB) when a turn starts, so it ends the turn under
 * 1.5 MiB, with room under SQLite's limit.
 */
export const MAX_ANSWER_IN_TASK_BYTES = 512 * 1024;
/** The most a stored task record may take: under SQLite's 2 MB, whatever turns ran side by side. */
export const MAX_STORED_TASK_BYTES = 1_900_000;
/** An output character takes at most this many bytes in a task's copies of it (escaped twice, two copies). */
const WORST_BYTES_PER_OUTPUT_CHAR = 12;
/** Room for what the copies add around the answer (ids, names, media types). */
const WRAPPER_BYTES = 4096;

const encoder = new TextEncoder();

/** Whether an answer's copies (`copies` of `value`, in A2A JSON) are too large to keep in the task. */
export function tooLargeToKeep(row: ExecutionRow, field: 'output' | 'error', value: () => unknown, copies: number): boolean {
  const stored = row[field]?.length ?? 0;
  if (stored * WORST_BYTES_PER_OUTPUT_CHAR + WRAPPER_BYTES <= MAX_ANSWER_IN_TASK_BYTES) return false;
  return exceedsJsonBytes(value(), Math.floor(MAX_ANSWER_IN_TASK_BYTES / copies));
}

/** Where the REST API shows an execution, with the same API key. */
export const executionPath = (agentId: string, executionId: string): string => `/v1/agents/${agentId}/executions/${executionId}`;

/** The parts standing for an answer kept by reference: a note, and the reference as data. */
function referenceParts(row: ExecutionRow, agentId: string, field: 'output' | 'error'): Part[] {
  const bytes = encoder.encode(row[field] ?? '').byteLength;
  const href = executionPath(agentId, row.id);
  return [
    textPart(`This answer is ${bytes} bytes, too large to keep in the task. It is kept in full as the ${field} of execution ${row.id}: GET ${href} (with the same API key).`),
    dataPart({ executionId: row.id, href, field, bytes }),
  ];
}

/**
 * A succeeded execution's artifacts, kept by reference: one `output` artifact (the id of the
 * usual one), its parts shaped by the send's `acceptedOutputModes` as the artifacts it stands for.
 */
export function referenceArtifact(row: ExecutionRow, agentId: string): Artifact {
  const artifact: Artifact = { artifactId: `${row.id}-output`, name: 'output', description: 'kept by reference: too large to keep in the task', parts: referenceParts(row, agentId, 'output'), metadata: undefined, extensions: [] };
  return shapedArtifacts([artifact], modesOfRow(row))[0] ?? artifact;
}

/** A finished execution's status message, kept by reference (the output of a succeeded one, else its error). */
export function referenceMessage(row: ExecutionRow, taskId: string, contextId: string, agentId: string): Message {
  return agentMessage(`${row.id}-status`, taskId, contextId, referenceParts(row, agentId, row.status === 'succeeded' ? 'output' : 'error'));
}

const ANSWER_ID = /^(.+)-(?:output|artifact-\d+|status)$/;

/**
 * The task with answers it keeps by copy replaced by references, largest first, until its
 * record fits MAX_STORED_TASK_BYTES; the task itself when it fits. Turns one at a time never
 * need this (see MAX_ANSWER_IN_TASK_BYTES); turns that ran side by side (messages sent while a
 * turn was still running) may, and a save must not fail for size.
 */
export function storableTask(task: Task, agentId: string, execution: (id: string) => ExecutionRow | undefined): { task: Task; json: string } {
  let json = JSON.stringify(Task.toJSON(task));
  if (utf8BytesOver(json, MAX_STORED_TASK_BYTES) === null) return { task, json };
  const sizes = new Map<string, number>();
  const count = (id: string, value: unknown) => {
    const executionId = ANSWER_ID.exec(id)?.[1];
    if (executionId) sizes.set(executionId, (sizes.get(executionId) ?? 0) + JSON.stringify(value).length);
  };
  for (const artifact of task.artifacts) count(artifact.artifactId, Artifact.toJSON(artifact));
  for (const message of task.history) count(message.messageId, Message.toJSON(message));
  if (task.status?.message) count(task.status.message.messageId, Message.toJSON(task.status.message));
  let current: Task = { ...task, artifacts: [...task.artifacts], history: [...task.history] };
  for (const [executionId] of [...sizes].sort((a, b) => b[1] - a[1])) {
    const row = execution(executionId);
    if (!row) continue;
    const mine = (id: string) => ANSWER_ID.exec(id)?.[1] === executionId;
    const first = current.artifacts.findIndex((a) => mine(a.artifactId));
    const artifacts = current.artifacts.filter((a) => !mine(a.artifactId));
    if (first >= 0) artifacts.splice(first, 0, referenceArtifact(row, agentId));
    const message = referenceMessage(row, task.id, task.contextId, agentId);
    const history = current.history.map((m) => (m.messageId === message.messageId && m.role === Role.ROLE_AGENT ? message : m));
    const status = current.status?.message?.messageId === message.messageId ? { ...current.status, message } : current.status;
    current = { ...current, artifacts, history, status };
    json = JSON.stringify(Task.toJSON(current));
    if (utf8BytesOver(json, MAX_STORED_TASK_BYTES) === null) break;
  }
  return { task: current, json };
}
