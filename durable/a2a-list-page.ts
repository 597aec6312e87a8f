import { Task } from '@a2a-js/sdk';
import { PAGE_BYTES } from '../worker/agents/execution-list';

/**
 * Most bytes of tasks one ListTasks page holds (always at least one task), the REST execution
 * list's bound: a task keeps up to ~1.9 MB of history and artifacts, so 100 of them, a page at
 * the largest `pageSize`, were over 100 MB built into the agent's object and the Worker at once.
 */
export const TASK_PAGE_BYTES = PAGE_BYTES;

const encoder = new TextEncoder();

/**
 * The tasks of a page as `view` shows them, in order, until the next would take the page past
 * TASK_PAGE_BYTES (the first is shown whatever its size). `after` is the token of the last
 * candidate read (shown, or gone since it was listed), `cut` whether one was left out for size.
 * Each task is measured as the client reads it: artifacts only with `includeArtifacts`, history
 * cut to `historyLength` (the SDK cuts it again, to the same length).
 */
export function boundedPage(
  candidates: { id: string; token: string }[],
  view: (id: string) => Task | undefined,
  shape: { includeArtifacts?: boolean; historyLength?: number },
): { tasks: Task[]; after: string | null; cut: boolean } {
  const tasks: Task[] = [];
  let after: string | null = null;
  let bytes = 0;
  for (const candidate of candidates) {
    const task = view(candidate.id);
    if (task) {
      if (!shape.includeArtifacts) task.artifacts = [];
      if (shape.historyLength !== undefined) task.history = shape.historyLength <= 0 ? [] : task.history.slice(-shape.historyLength);
      const size = encoder.encode(JSON.stringify(Task.toJSON(task))).byteLength;
      if (tasks.length > 0 && bytes + size > TASK_PAGE_BYTES) return { tasks, after, cut: true };
      bytes += size;
      tasks.push(task);
    }
    after = candidate.token;
  }
  return { tasks, after, cut: false };
}
