import { TaskState, type ListTasksRequest, type ListTasksResponse, type Task, type TaskPushNotificationConfig } from '@a2a-js/sdk';
import { RequestMalformedError } from '@a2a-js/sdk/errors';
import type { PushNotificationStore, TaskStore } from '@a2a-js/sdk/server';
import { TERMINAL } from '../worker/schemas/execution';
import { sha256Hex } from '../worker/lib/hash';
import { checkOutboundUrl, type OutboundPolicy } from '../worker/upstream/outbound-guard';
import type { DeferredSchema } from './agent-schema';
import type { AgentStore } from './agent-store';
import { decodeTask, encodeTask, INTERRUPTED_TASK_STATES, stateOf, taskView, type TaskRecord } from './a2a-view';
import { storableTask } from './a2a-large';
import { boundedPage } from './a2a-list-page';
import { asExecutionCancel, asWaitingCancel } from './a2a-cancel-status';
import { agentDeleted, pushUrlUnchecked } from './a2a-internal';
import type { Sql } from './sql';
import type { A2AVersion } from '../worker/a2a/rpc-error';
import { readPushConfig, storedPushConfig } from './a2a-push-wire';
import { notePushChange, pushHost } from './a2a-push-audit';

interface TaskRow extends Record<string, string | number | null> {
  id: string;
  context_id: string;
  execution_id: string;
  task: string;
  closed_state: number | null;
}

/** Push configs per task; more is a client bug or abuse. */
const MAX_PUSH_CONFIGS = 10;
/**
 * A ListTasks page token: the status time (ms) and the execution's position of the last task
 * shown, then a tag of the agent it lists (tenant, id, creation): a bare position was taken from
 * another agent's list as well, and paged this one from that point in time.
 */
const PAGE_TOKEN = /^(\d{1,15})\.(\d{1,15})\.([0-9a-f]{8})$/;

export interface A2AStoreHooks {
  /** Cancels an unfinished execution (the REST API's cancel), ended `at` (ms; else now); false if it had finished. */
  cancel(executionId: string, at?: number): boolean;
  /** The outgoing-request guard's policy for push notification URLs. */
  outboundPolicy(): OutboundPolicy;
  /** Whether the agent is there and no deletion is under way: a write after an await checks it again. */
  live(): boolean;
}

/**
 * The A2A SDK's `TaskStore` and `PushNotificationStore` on the agent's SQLite. A task is an
 * execution: loading one reads its execution row (the state) and its `a2a_tasks` row (history,
 * artifacts, context); an execution made through the REST API is a task too, shown from its
 * row alone. Saving a CANCELED task cancels its execution, so the SDK's own cancel path (with
 * or without a live executor) and the REST API's cancel are one operation.
 */
export class A2AStore implements TaskStore {
  /** Whether any push config exists: most agents have none, so most changes skip the lookups. */
  private anyPushConfig: boolean | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly schema: DeferredSchema,
    private readonly store: AgentStore,
    private readonly hooks: A2AStoreHooks,
  ) {}

  /** Before any A2A request: the tables exist from here on. */
  ready(): void {
    this.schema.ensure('a2a');
  }

  /** Whether the A2A tables exist; without them there are no task rows, configs or turns. */
  hasSchema(): boolean {
    return this.schema.has('a2a');
  }

  // --- links between tasks and executions ---

  /** Records that `executionId` runs turn `turn` of `taskId` (turn 1 creates the task row). */
  link(taskId: string, contextId: string, executionId: string, turn: number, task: Task, now: number): void {
    this.sql.run('INSERT INTO a2a_turns (execution_id, task_id, turn) VALUES (?, ?, ?) ON CONFLICT(execution_id) DO NOTHING', executionId, taskId, turn);
    this.sql.run(
      `INSERT INTO a2a_tasks (id, context_id, execution_id, task, closed_state, created_at, updated_at) VALUES (?, ?, ?, ?, NULL, ?, ?)
       ON CONFLICT(id) DO UPDATE SET execution_id = excluded.execution_id, updated_at = excluded.updated_at`,
      taskId, contextId, executionId, encodeTask(task), now, now,
    );
  }

  /** The task an execution belongs to (an execution without A2A rows is its own task). */
  taskIdOf(executionId: string): string {
    return this.sql.one<{ task_id: string }>('SELECT task_id FROM a2a_turns WHERE execution_id = ?', executionId)?.task_id ?? executionId;
  }

  /** The number of an existing task's next turn (a task made through the REST API has no turn rows: its execution is turn 1). */
  nextTurn(taskId: string): number {
    const turns = this.sql.one<{ n: number }>('SELECT count(*) AS n FROM a2a_turns WHERE task_id = ?', taskId)?.n ?? 0;
    return Math.max(turns, 1) + 1;
  }

  /**
   * The task `taskId`: its A2A row and the execution of its latest turn, or an execution made
   * through the REST API (its own task). A follow-up turn's execution is part of its task,
   * never a task of its own (as ListTasks leaves it out).
   */
  record(taskId: string): TaskRecord | undefined {
    const row = this.sql.one<TaskRow>('SELECT id, context_id, execution_id, task, closed_state FROM a2a_tasks WHERE id = ?', taskId);
    if (!row && this.sql.one('SELECT 1 AS one FROM a2a_turns WHERE execution_id = ? AND turn > 1', taskId)) return undefined;
    const execution = this.store.execution(row?.execution_id ?? taskId);
    if (!row && !execution) return undefined;
    return {
      agentId: this.agentId(),
      taskId,
      contextId: row?.context_id ?? taskId,
      saved: row ? decodeTask(row.task) : undefined,
      execution,
      closedState: (row?.closed_state ?? null) as TaskState | null,
    };
  }

  /** The agent's id (A2A requests reach an existing agent only). */
  agentId(): string {
    const row = this.store.agentRow();
    return row ? this.store.config(row).id : '';
  }

  view(taskId: string): Task | undefined {
    const record = this.record(taskId);
    return record && taskView(record);
  }

  /** Drops A2A rows whose executions retention has removed. */
  prune(): void {
    if (!this.hasSchema()) return;
    this.sql.run('DELETE FROM a2a_turns WHERE execution_id NOT IN (SELECT id FROM executions)');
    this.sql.run('DELETE FROM a2a_tasks WHERE id NOT IN (SELECT task_id FROM a2a_turns) AND id NOT IN (SELECT id FROM executions)');
    this.sql.run('DELETE FROM a2a_push_configs WHERE task_id NOT IN (SELECT id FROM a2a_tasks) AND task_id NOT IN (SELECT id FROM executions)');
    this.invalidate();
  }

  // --- TaskStore ---

  async load(taskId: string): Promise<Task | undefined> {
    if (!this.store.agentRow()) throw agentDeleted(taskId);
    return this.view(taskId);
  }

  async save(task: Task): Promise<void> {
    // The SDK loads and saves the FAILED status of a turn whose agent was deleted: nothing is left to keep it in.
    if (!this.store.agentRow()) throw agentDeleted(task.id);
    const now = Date.now();
    const row = this.sql.one<TaskRow>('SELECT id, context_id, execution_id, task, closed_state FROM a2a_tasks WHERE id = ?', task.id);
    const executionId = row?.execution_id ?? task.id;
    const cancelled = task.status?.state === TaskState.TASK_STATE_CANCELED ? this.store.execution(executionId) : undefined;
    if (cancelled && !TERMINAL.has(cancelled.status)) asExecutionCancel(task, executionId);
    else if (cancelled && INTERRUPTED_TASK_STATES.has(stateOf(cancelled))) asWaitingCancel(task);
    const stored = storableTask(task, this.agentId(), (id) => this.store.execution(id));
    if (stored.task !== task) {
      // The SDK answers a blocking send with the task it saved: it shows what is stored.
      Object.assign(task, { artifacts: stored.task.artifacts, history: stored.task.history, status: stored.task.status });
      console.warn(JSON.stringify({ level: 'warn', msg: 'a2a task record over its bound: answers kept by reference', taskId: task.id, bytes: stored.json.length }));
    }
    this.sql.run(
      `INSERT INTO a2a_tasks (id, context_id, execution_id, task, closed_state, created_at, updated_at) VALUES (?, ?, ?, ?, NULL, ?, ?)
       ON CONFLICT(id) DO UPDATE SET task = excluded.task, updated_at = excluded.updated_at`,
      task.id, task.contextId, executionId, stored.json, now, now,
    );
    if (task.status?.state !== TaskState.TASK_STATE_CANCELED) return;
    const execution = this.store.execution(executionId);
    if (!execution) return;
    if (!TERMINAL.has(execution.status)) {
      // Ended when the CANCELED status says, so the task and the execution tell one time.
      // Never before it started (it might have, between the status and this save).
      const at = Date.parse(task.status.timestamp ?? '');
      this.hooks.cancel(executionId, Number.isFinite(at) ? Math.max(at, execution.started_at ?? execution.created_at) : undefined);
    } else if (INTERRUPTED_TASK_STATES.has(stateOf(execution))) {
      // Waiting for input, its execution finished: the cancel closes the task itself.
      this.sql.run('UPDATE a2a_tasks SET closed_state = ? WHERE id = ?', TaskState.TASK_STATE_CANCELED, task.id);
    }
  }

  /**
   * Most recently updated first, as A2A requires: by the time of the task's latest status
   * (the one `statusTimestampAfter` filters on), then newest created first. The page token is
   * that pair for the last task of the previous page; a task updated between two pages moves
   * to the front, so a client paging through may miss it there and see it on a later list.
   */
  async list(params: ListTasksRequest): Promise<ListTasksResponse> {
    const pageSize = params.pageSize ?? 50;
    const row = this.store.agentRow();
    const after = params.statusTimestampAfter ? Date.parse(params.statusTimestampAfter) : null;
    // The filters make a list of their own: a filtered page's token read unfiltered (or under
    // another filter) answered the tasks past that page's place and skipped every newer one
    // without a word. Unfiltered, the tag is what it was, so those tokens stay good.
    const filters = params.contextId || params.status || after !== null ? `?${params.contextId || ''}&${params.status || ''}&${after ?? ''}` : '';
    const tag = (await sha256Hex(`tasks/${row?.tenant_id}/${row && this.store.config(row).id}/${row?.created_at}${filters}`)).slice(0, 8);
    const token = params.pageToken ? PAGE_TOKEN.exec(params.pageToken) : null;
    if (params.pageToken && token?.[3] !== tag) throw new RequestMalformedError("pageToken is not one this server issued for this agent's tasks with these filters (contextId, status, statusTimestampAfter)");
    const before = token ? { at: Number(token[1]), seq: Number(token[2]) } : null;
    // Every execution that is not a follow-up turn is a task; its state is its latest turn's,
    // or the state it was closed in between turns (at the time of that save).
    const rows = this.sql.all<{ seq: number; id: string; status: string; asked: string | null; closed_state: number | null; at: number }>(
      `SELECT e.seq AS seq, e.id AS id, c.status AS status,
              CASE WHEN c.status <> 'succeeded' THEN NULL
                   WHEN c.a2a_state IS NOT NULL THEN nullif(c.a2a_state, '')
                   ELSE json_extract(c.output, '$.a2a.state') END AS asked,
              t.closed_state AS closed_state,
              CASE WHEN t.closed_state IS NOT NULL THEN t.updated_at ELSE coalesce(c.finished_at, c.started_at, c.created_at) END AS at
       FROM executions e
       LEFT JOIN a2a_tasks t ON t.id = e.id
       JOIN executions c ON c.id = coalesce(t.execution_id, e.id)
       WHERE e.id NOT IN (SELECT execution_id FROM a2a_turns WHERE turn > 1)
         AND (? IS NULL OR coalesce(t.context_id, e.id) = ?)
       ORDER BY at DESC, e.seq DESC`,
      params.contextId || null, params.contextId || null,
    );
    const matching = rows.filter((r) => {
      const state = (r.closed_state as TaskState | null) ?? stateOf({ status: r.status as never, output: r.asked === null ? null : JSON.stringify({ a2a: { state: r.asked } }) });
      if (params.status && state !== params.status) return false;
      return after === null || r.at > after;
    });
    const start = before ? matching.findIndex((r) => r.at < before.at || (r.at === before.at && r.seq < before.seq)) : 0;
    const end = start < 0 ? start : start + pageSize;
    const candidates = start < 0 ? [] : matching.slice(start, end).map((r) => ({ id: r.id, token: `${r.at}.${r.seq}.${tag}` }));
    const { tasks, after: last, cut } = boundedPage(candidates, (taskId) => this.view(taskId), params);
    const more = cut || (start >= 0 && end < matching.length);
    return { tasks, nextPageToken: more && last ? last : '', pageSize, totalSize: matching.length };
  }

  // --- PushNotificationStore ---
  // The SDK's signature is (taskId, context, config); the context adds nothing here, since
  // this object is one tenant's one agent.

  /**
   * Refuses (-32602) a config `taskId` cannot take: a URL the outbound guard refuses (the full
   * guard, names resolved, as for webhooks; checked again before every send), or one config
   * more than a task may have. A send checks its config with this before the SDK stores the
   * message (a follow-up's history), which it does before it saves the config.
   */
  async checkConfig(taskId: string, config: Pick<TaskPushNotificationConfig, 'id' | 'url'>): Promise<void> {
    const check = await checkOutboundUrl(config.url, this.hooks.outboundPolicy());
    // The check resolves the URL's host: the agent may have been deleted meanwhile, its tables with it.
    if (!this.hooks.live()) throw agentDeleted(taskId);
    // The resolver's outage says nothing of the URL: not the -32602 of a config to correct.
    if (!check.ok && check.unverified) throw pushUrlUnchecked(check.reason);
    if (!check.ok) throw new RequestMalformedError(`push notification URL refused: ${check.reason}`);
    const others = this.sql.one<{ n: number }>('SELECT count(*) AS n FROM a2a_push_configs WHERE task_id = ? AND id != ?', taskId, config.id)?.n ?? 0;
    if (others >= MAX_PUSH_CONFIGS) throw new RequestMalformedError(`at most ${MAX_PUSH_CONFIGS} push notification configs per task`);
  }

  async saveConfig(taskId: string, config: TaskPushNotificationConfig, wire: A2AVersion): Promise<void> {
    const id = config.id || crypto.randomUUID();
    // Refused there if the agent's deletion began or ended during the check: it would wipe the config.
    await this.checkConfig(taskId, { id, url: config.url });
    // Pushes go out through the webhook deliveries: their tables exist before any push is
    // queued (inside a change's transaction, where creating them could be rolled back).
    this.schema.ensure('webhooks');
    config.id = id;
    config.taskId = taskId;
    this.sql.run(
      `INSERT INTO a2a_push_configs (task_id, id, config, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT(task_id, id) DO UPDATE SET config = excluded.config`,
      taskId, id, JSON.stringify(storedPushConfig(config, wire)), Date.now(),
    );
    this.anyPushConfig = true;
  }

  /** Forgets what it knows of push configs (after one is deleted, or deleteAll). */
  invalidate(): void {
    this.anyPushConfig = undefined;
  }

  hasPushConfigs(): boolean {
    this.anyPushConfig ??= this.hasSchema() && this.sql.one('SELECT 1 AS one FROM a2a_push_configs LIMIT 1') !== undefined;
    return this.anyPushConfig;
  }

  configs(taskId: string): TaskPushNotificationConfig[] {
    return this.pushConfigs(taskId).map((c) => c.config);
  }

  /** A task's push configs, oldest first, each with the protocol version its deliveries speak. */
  pushConfigs(taskId: string): { config: TaskPushNotificationConfig; wire: A2AVersion }[] {
    if (!this.hasSchema()) return [];
    return this.sql
      .all<{ config: string }>('SELECT config FROM a2a_push_configs WHERE task_id = ? ORDER BY created_at, id', taskId)
      .map((r) => readPushConfig(r.config));
  }
}

/** The SDK-facing push store: the same rows, with the SDK's argument order. */
export function pushStore(store: A2AStore, sql: Sql): PushNotificationStore {
  return {
    // The caller's version decides the form of the config's deliveries (a2a-push-wire.ts).
    save: async (taskId, context, config) => {
      await store.saveConfig(taskId, config, context?.requestedVersion === '0.3' ? '0.3' : '1.0');
      notePushChange(context, { change: 'put', taskId, configId: config.id, host: pushHost(config.url) });
    },
    load: async (taskId) => store.configs(taskId),
    delete: async (taskId, context, configId) => {
      const id = configId ?? taskId;
      const removed = sql.run('DELETE FROM a2a_push_configs WHERE task_id = ? AND id = ?', taskId, id);
      store.invalidate();
      if (removed > 0) notePushChange(context, { change: 'delete', taskId, configId: id });
    },
  };
}
