import { Task, TaskState } from '@a2a-js/sdk';
import { describe, expect, it } from 'vitest';
import { MAX_STORED_TASK_BYTES, storableTask } from '../../durable/a2a-large';
import { agentMessage, dataPart, textPart } from '../../durable/a2a-parts';
import type { ExecutionRow } from '../../durable/agent-rows';

describe('storableTask', () => {
  it('keeps a record under its bound when turns that ran side by side added answers past it: the largest become references', () => {
    const rows = new Map<string, ExecutionRow>();
    const turn = (id: string, chars: number) => {
      const output = { answer: 'a'.repeat(chars) };
      rows.set(id, { id, intent: 'a2a.message', input: null, status: 'succeeded', output: JSON.stringify(output), error: null, attempts: 1, upstream: null, idempotency_key: null, deadline_at: 0, created_at: 0, started_at: 0, finished_at: 0, rev: 1, a2a_state: null });
      return { artifact: { artifactId: `${id}-output`, name: 'output', description: '', parts: [textPart(output.answer), dataPart(output)], metadata: undefined, extensions: [] } };
    };
    const answers = [turn('ex_1', 200_000), turn('ex_2', 250_000), turn('ex_3', 240_000), turn('ex_4', 230_000), turn('ex_5', 10_000)];
    const status = agentMessage('ex_5-status', 'ex_1', 'ctx', [textPart('b'.repeat(300_000))]);
    const task: Task = {
      id: 'ex_1', contextId: 'ctx', metadata: undefined,
      status: { state: TaskState.TASK_STATE_INPUT_REQUIRED, message: status, timestamp: new Date(0).toISOString() },
      artifacts: answers.map((a) => a.artifact), history: [status],
    };
    expect(JSON.stringify(Task.toJSON(task)).length).toBeGreaterThan(MAX_STORED_TASK_BYTES);

    const stored = storableTask(task, 'agent-1', (id) => rows.get(id));
    expect(stored.json.length).toBeLessThanOrEqual(MAX_STORED_TASK_BYTES);
    expect(stored.json).toBe(JSON.stringify(Task.toJSON(stored.task)));
    // Largest first: ex_5's answer (its status message is in the record twice); the rest stay copies.
    expect(stored.task.status?.message?.parts[1]?.content).toEqual({ $case: 'data', value: { executionId: 'ex_5', href: '/v1/agents/agent-1/executions/ex_5', field: 'output', bytes: 10_013 } });
    expect(stored.task.history).toEqual([stored.task.status?.message]);
    const kept = stored.task.artifacts.map((a) => (a.parts[0]?.content?.$case === 'text' && a.parts[0].content.value.startsWith('This answer is') ? 'reference' : 'copy'));
    expect(kept).toEqual(['copy', 'copy', 'copy', 'copy', 'reference']);
  });

  it('leaves a task within its bound as it is', () => {
    const task: Task = { id: 'ex_1', contextId: 'ctx', metadata: undefined, status: undefined, artifacts: [], history: [] };
    expect(storableTask(task, 'agent-1', () => undefined).task).toBe(task);
  });
});
