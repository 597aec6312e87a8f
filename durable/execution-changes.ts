import { TERMINAL } from '../worker/schemas/execution';
import type { EventType } from '../worker/schemas/webhook';
import type { A2AServer } from './a2a';
import type { AgentEvents } from './agent-events';
import { asAccepted, toExecution, type ExecutionRow } from './agent-rows';
import type { AgentStore } from './agent-store';
import type { AgentWebhooks } from './agent-webhooks';
import type { AgentCharges } from './agent-charges';

/**
 * What every change of an execution's state records, inside the change's transaction: its D1
 * outbox row, its lifecycle events for streams, the webhook deliveries of terminal events, the
 * A2A task's push notifications, and the agent's snapshot marked stale (the snapshot's state
 * moves with its executions).
 */
export class ExecutionChanges {
  constructor(
    private readonly store: AgentStore,
    private readonly events: AgentEvents,
    private readonly webhooks: AgentWebhooks,
    private readonly a2a: Pick<A2AServer, 'executionChanged'>,
    private readonly snapshotStale: () => void,
    private readonly charges: Pick<AgentCharges, 'finished'>,
  ) {}

  /** `written`: the row as just written, if the caller has it; `insertedRunning`: it was inserted running. */
  record(id: string, now: number, written?: ExecutionRow, insertedRunning = false): void {
    const row = this.store.agentRow();
    const execution = written ?? this.store.execution(id);
    if (!row || !execution) return;
    const agentId = this.store.config(row).id;
    const view = toExecution(execution, agentId);
    const json = JSON.stringify(view); // once, for the outbox row and the event alike
    this.store.enqueueJson(`execution:${id}`, 'execution', execution.rev, json, now);
    const type = `execution.${execution.status}`;
    // Inserted running, it was accepted (queued) first all the same: its stream says so.
    const accepted = insertedRunning ? [{ type: 'execution.queued', data: toExecution(asAccepted(execution), agentId) }] : [];
    this.events.recordAll([...accepted, { type, data: view, json }], now);
    if (TERMINAL.has(execution.status)) {
      this.webhooks.fanOut(type as EventType, view, now);
      this.charges.finished(execution, now);
    }
    this.a2a.executionChanged(id, now);
    this.snapshotStale();
  }
}
