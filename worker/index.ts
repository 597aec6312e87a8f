import { createApp } from './app';
import type { Env } from './env';
import { probeAllPools } from './pools/probe';

export { AgentDO } from '../durable/agent';
export { TransactionDO } from '../durable/transaction';
export { KeyLimiterDO } from '../durable/key-limiter';
export { ProjectorDO } from '../durable/projector';

const app = createApp();

export default {
  fetch: app.fetch,
  /** Cron: active health checks of every pool target (see wrangler.toml `[triggers]`). */
  async scheduled(_controller, env, ctx) {
    ctx.waitUntil(
      probeAllPools(env).then(
        (summary) => console.log(JSON.stringify({ level: 'info', msg: 'pool probes', ...summary })),
        (error: unknown) => console.error(JSON.stringify({ level: 'error', msg: 'pool probes failed', error: String(error) })),
      ),
    );
  },
} satisfies ExportedHandler<Env>;
