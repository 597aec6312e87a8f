import type { Context } from 'hono';
import type { PushChange } from '../../durable/a2a-push-audit';
import type { AppEnv } from '../env';
import { auditEntry, recordAudit } from '../audit/log';

/**
 * Writes the audit entries of the push configs an A2A request saved or deleted (`push.put`,
 * `push.delete`), as the webhook routes do for webhooks: after the agent made the change, the
 * config id as target, the task and the URL's host (never the URL, token or credentials).
 */
export async function auditPushChanges(c: Context<AppEnv>, agentId: string, changes: readonly PushChange[] | undefined): Promise<void> {
  if (!changes || changes.length === 0) return;
  await recordAudit(c.env, ...changes.map((change) => auditEntry(c, change.change === 'put' ? 'push.put' : 'push.delete', change.configId, {
    details: { agentId, taskId: change.taskId, ...(change.host !== undefined && { host: change.host }) },
  })));
}
