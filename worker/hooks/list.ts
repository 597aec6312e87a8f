import type { Env } from '../env';
import { hookView, HOOK_VIEW_FROM, type HookViewRow } from './store';
import type { Hook } from '../schemas/hook';

// Keyset pages on the hook id within a tenant (and an agent): each query walks its index
// (migrations/0009_hooks_list.sql) from the cursor and sorts nothing; one row past the page
// says whether another follows.
export const LIST_HOOKS_QUERY = `SELECT ${HOOK_VIEW_FROM} WHERE hooks.tenant_id = ? AND hooks.id > ? ORDER BY hooks.id LIMIT ?`;
export const LIST_AGENT_HOOKS_QUERY = `SELECT ${HOOK_VIEW_FROM} WHERE hooks.tenant_id = ? AND hooks.agent_id = ? AND hooks.id > ? ORDER BY hooks.id LIMIT ?`;

/** A page of a tenant's hooks (of one agent, if named) after the hook id `after`, and the id the next page starts after. */
export async function listHooks(env: Env, tenantId: string, page: { limit: number; after: string; agentId?: string | undefined }): Promise<{ hooks: Hook[]; next: string | null }> {
  const statement =
    page.agentId === undefined
      ? env.DB.prepare(LIST_HOOKS_QUERY).bind(tenantId, page.after, page.limit + 1)
      : env.DB.prepare(LIST_AGENT_HOOKS_QUERY).bind(tenantId, page.agentId, page.after, page.limit + 1);
  const { results } = await statement.all<HookViewRow>();
  const rows = results.slice(0, page.limit);
  const last = rows.at(-1);
  return { hooks: rows.map(hookView), next: results.length > page.limit && last ? last.id : null };
}
