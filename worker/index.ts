import { createApp } from './app';
import { pruneExecutions } from './agents/execution-retention';
import type { Env } from './env';
import { probeAllPools } from './pools/probe';
import { sweepTransactions } from './transactions/sweep';

export { AgentDO } from '../durable/agent';
export { TransactionDO } from '../durable/transaction';
export { KeyLimiterDO } from '../durable/key-limiter';
export { ProjectorDO } from '../durable/projector';

const app = createApp();

/** Logs a cron task's summary (none when it had nothing to report), or its failure. */
function logged(msg: string, work: Promise<object | null>): Promise<void> {
  return work.then(
    (summary) => {
      if (summary) console.log(JSON.stringify({ level: 'info', msg, ...summary }));
    },
    (error: unknown) => console.error(JSON.stringify({ level: 'error', msg: `${msg} failed`, error: String(error) })),
  );
}

export default {
  fetch: app.fetch,
  /**
   * Cron (see wrangler.toml `[triggers]`): active health checks of every pool target, the
   * sweep of transaction coordinators that outlived their retention, and D1's retention of
   * finished executions (`D1_EXECUTION_RETENTION_DAYS`).
   */
  async scheduled(_controller, env, ctx) {
    ctx.waitUntil(logged('pool probes', probeAllPools(env)));
    ctx.waitUntil(logged('transaction sweep', sweepTransactions(env).then((summary) => (summary.looked > 0 ? summary : null))));
    ctx.waitUntil(logged('execution retention', pruneExecutions(env).then((summary) => (summary && summary.deleted > 0 ? summary : null))));
  },
} satisfies ExportedHandler<Env>;
