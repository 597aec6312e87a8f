import { createApp } from './app';
import type { Env } from './env';

export { AgentDO } from '../durable/agent';
export { TransactionDO } from '../durable/transaction';

const app = createApp();

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
