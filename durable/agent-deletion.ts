import { fail, ok, type Result } from '../worker/errors';
import { agentLocked } from './agent-rpc';
import type { AgentStore } from './agent-store';
import type { AgentTransactions } from './agent-transactions';

export type Deleted = Result<{ deleted: true }>;

/** What a deletion asks of the rest of the agent's object (durable/agent.ts wires them). */
export interface DeletionSteps {
  /** Ends the executions running here: they go with the agent. */
  abortRunning(): void;
  /** Waits for what must leave before the storage goes: the outbox flush in flight, what executions owe their keys' budgets. */
  settle(): Promise<void>;
  /** The event log's highest seq ever, which an agent created again under the id goes on from. */
  lastSeq(): number;
  /** After the wipe: what was cached of the deleted agent is forgotten, its tables made again, its listeners told. */
  wiped(lastSeq: number): void;
}

/**
 * Deletes the agent's storage: one deletion at a time. A DELETE that reaches the object while
 * another is under way (a client's retry, or a second client) joins it and answers as it does.
 * Run beside it, it would still be awaiting the flush (or its settlements) when the first had
 * wiped the storage, the edge had answered 204 and a create had made the id's next agent here:
 * it then wiped that agent, and until then kept it closed to writes (`liveRow`).
 */
export class AgentDeletion {
  private running: Promise<Deleted> | undefined;

  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly store: AgentStore,
    private readonly tx: AgentTransactions,
    private readonly steps: DeletionSteps,
  ) {}

  /** Given `createdAt` (the DELETE's registry row), only the agent created then. */
  destroy(createdAt?: number): Promise<Deleted> {
    const row = this.store.agentRow();
    if (!row || (createdAt !== undefined && row.created_at !== createdAt)) return Promise.resolve(fail('not_found', 'agent not found'));
    // The running deletion's agent is this row: nothing creates one while it is there.
    if (this.running) return this.running;
    const running = this.run().finally(() => {
      if (this.running === running) this.running = undefined;
    });
    this.running = running;
    return running;
  }

  private async run(): Promise<Deleted> {
    // Deleting would drop a lock, held now or taken while this waits, and leave the coordinator committing into nothing.
    const lock = this.tx.closeForDelete();
    if (lock) return agentLocked(lock.tx_id);
    this.steps.abortRunning();
    let lastSeq: number;
    try {
      await this.steps.settle();
      await this.storage.deleteAlarm();
      lastSeq = this.steps.lastSeq();
      await this.storage.deleteAll();
    } finally {
      this.tx.reopen();
    }
    this.steps.wiped(lastSeq);
    return ok({ deleted: true });
  }
}
