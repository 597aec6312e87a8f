import type { AgentDO } from '../../durable/agent';
import type { Env } from '../env';
import { ApiError } from '../errors';
import { IsolateCache } from '../lib/isolate-cache';
import { dropCached } from '../lib/kv-cache';
import { rpcMethodMissing } from '../lib/rpc-missing';
import { isPlatformError, type DurableObjectError } from '../lib/storage-errors';
import type { Agent, Jurisdiction, Region } from '../schemas/agent';

/** Where an agent's Durable Object lives; fixed when the agent is created. */
export interface AgentRoute {
  jurisdiction: Jurisdiction | null;
  locationHint: Region | null;
}

const ROUTE_TTL_MS = 5 * 60_000;
const ROUTE_KV_TTL_S = 24 * 60 * 60;
/** Known agents only: an id not found is looked up again, so a new agent is found at once. */
const routeCache = new IsolateCache<AgentRoute | null>(ROUTE_TTL_MS, { maxEntries: 50_000 });
const routeKey = (tenantId: string, agentId: string) => `route:v1:${tenantId}:${agentId}`;

/**
 * Claims agent ids for a tenant in the D1 registry, in one batch (one commit however many),
 * each with a provisional snapshot for list reads until the agent's outbox refreshes it.
 * Returns, per agent, whether its id was claimed (false: taken).
 */
export async function registerAgents(env: Env, tenantId: string, claims: readonly { agent: Agent; route: AgentRoute }[], now: number): Promise<boolean[]> {
  if (claims.length === 0) return [];
  const insert = env.DB.prepare(
    `INSERT INTO agents (tenant_id, id, jurisdiction, location_hint, name, state, snapshot, rev, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, 'idle', ?, 0, ?, ?) ON CONFLICT (tenant_id, id) DO NOTHING`,
  );
  const results = await env.DB.batch(
    claims.map(({ agent, route }) => insert.bind(tenantId, agent.id, route.jurisdiction, route.locationHint, agent.name, JSON.stringify({ agent, contextVersion: 0 }), now, now)),
  );
  return claims.map(({ agent, route }, i) => {
    const claimed = (results[i]?.meta.changes ?? 0) > 0;
    if (claimed) remember(tenantId, agent.id, route);
    return claimed;
  });
}

/**
 * Releases a claim this request made (`createdAt`: its creation time) after its object refused
 * the agent. Only that claim: one taken over meanwhile (see `adoptOrphanedClaim`), or one an
 * agent has projected into, is left alone.
 */
export async function releaseClaim(env: Env, tenantId: string, agentId: string, createdAt: number): Promise<void> {
  await env.DB.prepare('DELETE FROM agents WHERE tenant_id = ? AND id = ? AND created_at = ? AND rev = 0').bind(tenantId, agentId, createdAt).run();
  forgetRoute(tenantId, agentId);
  await dropCached(env.CACHE, routeKey(tenantId, agentId), 'agent route');
}

/**
 * Takes over a registry row with no agent behind it and returns its route, or null when the id
 * is taken. Two ways leave one: an id is claimed in D1 before its object creates the agent, so a
 * creation whose object refused, and whose release of the claim failed too, leaves a claim
 * (rev 0); a DELETE destroys the object before it removes the row, so one whose D1 batch failed
 * leaves the agent's last row (whatever its rev). Either would refuse every later create (409) while
 * reads answer 404. The object, the agent's one writer, says whether it holds an agent: only its
 * own `not_found` answer counts (a platform error is thrown, never taken for "no agent"). The
 * row then moves to this request by compare-and-set on its creation time, so the request that
 * left it can no longer remove it (`releaseClaim`, `unregisterAgent` match on it too), and two
 * requests cannot both take it over. The old agent's D1 execution rows go in the same batch
 * while the row still names the old creation time; its revision restarts at 0, under the new
 * agent's first snapshot. The row keeps its placement: one in another jurisdiction is not taken.
 */
export async function adoptOrphanedClaim(env: Env, tenantId: string, agent: Agent, jurisdiction: Jurisdiction | null, now: number): Promise<AgentRoute | null> {
  const claim = await registryRow(env, tenantId, agent.id);
  if (!claim || claim.jurisdiction !== jurisdiction) return null;
  const route: AgentRoute = { jurisdiction: claim.jurisdiction, locationHint: claim.location_hint };
  const held = await callAgent(env, tenantId, agent.id, route, (stub) => stub.get(), { retry: true });
  if (held.ok || held.code !== 'not_found') return null;
  const [, moved] = await env.DB.batch([
    deleteExecutionsOf(env, tenantId, agent.id, claim.created_at),
    env.DB.prepare("UPDATE agents SET name = ?, state = 'idle', snapshot = ?, rev = 0, created_at = ?, updated_at = ? WHERE tenant_id = ? AND id = ? AND created_at = ?")
      .bind(agent.name, JSON.stringify({ agent, contextVersion: 0 }), now, now, tenantId, agent.id, claim.created_at),
  ]);
  if ((moved?.meta.changes ?? 0) === 0) return null;
  remember(tenantId, agent.id, route);
  return route;
}

/**
 * Gives a claim this request took over (`takenAt`: the creation time it wrote) back to the agent
 * that reached the object first, the create whose claim it was (`createdAt`: that agent's own).
 * Left at the taker's time, the row named no agent the object holds: a DELETE then destroyed
 * nothing (the object matches the time), removed the row, and left the agent running unlisted.
 */
export async function returnClaim(env: Env, tenantId: string, agentId: string, takenAt: number, createdAt: number): Promise<void> {
  await env.DB.prepare('UPDATE agents SET created_at = ? WHERE tenant_id = ? AND id = ? AND created_at = ?').bind(createdAt, tenantId, agentId, takenAt).run();
}

/** The registry row of an agent as a DELETE finds it: its route and creation time, or null. */
export async function findRegistration(env: Env, tenantId: string, agentId: string): Promise<{ route: AgentRoute; createdAt: number } | null> {
  const row = await registryRow(env, tenantId, agentId);
  if (row) return { route: { jurisdiction: row.jurisdiction, locationHint: row.location_hint }, createdAt: row.created_at };
  // Gone (deleted elsewhere): no cache here may keep routing to it.
  forgetRoute(tenantId, agentId);
  await dropCached(env.CACHE, routeKey(tenantId, agentId), 'agent route');
  return null;
}

/**
 * Removes the registry row a DELETE found (`createdAt`: its creation time) and that agent's D1
 * execution rows, in one batch. A row taken over meanwhile by a new create (see
 * `adoptOrphanedClaim`) is the new agent's and is left alone, with its executions.
 */
export async function unregisterAgent(env: Env, tenantId: string, agentId: string, createdAt: number): Promise<void> {
  await env.DB.batch([
    deleteExecutionsOf(env, tenantId, agentId, createdAt),
    env.DB.prepare('DELETE FROM agents WHERE tenant_id = ? AND id = ? AND created_at = ?').bind(tenantId, agentId, createdAt),
  ]);
  routeCache.delete(routeKey(tenantId, agentId));
  await dropCached(env.CACHE, routeKey(tenantId, agentId), 'agent route');
}

/**
 * The registry row as the primary holds it: its creation time is what a compare-and-set then
 * matches, and a read replica behind the primary would offer one already replaced.
 */
function registryRow(env: Env, tenantId: string, agentId: string) {
  return env.DB.withSession('first-primary')
    .prepare('SELECT jurisdiction, location_hint, created_at FROM agents WHERE tenant_id = ? AND id = ?')
    .bind(tenantId, agentId)
    .first<{ jurisdiction: Jurisdiction | null; location_hint: Region | null; created_at: number }>();
}

/** The D1 execution rows of the agent registered at `createdAt`; none once the row is another's. */
function deleteExecutionsOf(env: Env, tenantId: string, agentId: string, createdAt: number): D1PreparedStatement {
  return env.DB.prepare('DELETE FROM executions WHERE tenant_id = ? AND agent_id = ? AND EXISTS (SELECT 1 FROM agents WHERE tenant_id = ? AND id = ? AND created_at = ?)')
    .bind(tenantId, agentId, tenantId, agentId, createdAt);
}

/** The route of a tenant's agent, or null: isolate cache, then KV, then the D1 registry. */
export async function findAgent(env: Env, tenantId: string, agentId: string): Promise<AgentRoute | null> {
  const key = routeKey(tenantId, agentId);
  return routeCache.get(key, async () => {
    const cached = await env.CACHE.get<AgentRoute>(key, 'json').catch(() => null);
    if (cached) return cached;
    const row = await env.DB.prepare('SELECT jurisdiction, location_hint FROM agents WHERE tenant_id = ? AND id = ?')
      .bind(tenantId, agentId)
      .first<{ jurisdiction: Jurisdiction | null; location_hint: Region | null }>();
    if (!row) return null;
    const route: AgentRoute = { jurisdiction: row.jurisdiction, locationHint: row.location_hint };
    await env.CACHE.put(key, JSON.stringify(route), { expirationTtl: ROUTE_KV_TTL_S }).catch(() => undefined);
    return route;
  }, (route) => route !== null);
}

export async function requireAgent(env: Env, tenantId: string, agentId: string): Promise<AgentRoute> {
  const route = await findAgent(env, tenantId, agentId);
  if (!route) throw new ApiError('not_found', `agent ${agentId} not found`);
  return route;
}

export function forgetRoute(tenantId: string, agentId: string): void {
  routeCache.delete(routeKey(tenantId, agentId));
}

function remember(tenantId: string, agentId: string, route: AgentRoute): void {
  routeCache.set(routeKey(tenantId, agentId), route);
}

/**
 * The RPC surface of an agent. Its methods return plain result objects that structured clone
 * carries unchanged; the platform's generated stub types lose JSON-valued (`unknown`) fields,
 * so the stub is viewed through the class's own signatures instead.
 */
export type AgentRpc = Pick<
  AgentDO,
  | 'create' | 'get' | 'read' | 'update' | 'reconfigure' | 'destroy' | 'execute' | 'getExecution' | 'executionByKey' | 'cancel' | 'status' | 'getContext' | 'patchContext'
  | 'createWebhook' | 'listWebhooks' | 'deleteWebhook' | 'listDeliveries' | 'retryDelivery' | 'subscribe'
  | 'prepare' | 'commit' | 'abort' | 'transactionLock' | 'resolveTransaction' | 'a2a'
>;

/** The agent's Durable Object: named by tenant and id, so tenants can never share one. */
function agentObject(env: Env, tenantId: string, agentId: string, route: AgentRoute) {
  const namespace = route.jurisdiction ? inJurisdiction(env.AGENTS, route.jurisdiction) : env.AGENTS;
  return { namespace, id: namespace.idFromName(`${tenantId}/${agentId}`) };
}

/** The id of the agent's Durable Object, as a string another object can call it by. */
export const agentObjectId = (env: Env, tenantId: string, agentId: string, route: AgentRoute): string => agentObject(env, tenantId, agentId, route).id.toString();

/** A stub of the agent's Durable Object, in its location when the route names one. */
export function agentStub(env: Env, tenantId: string, agentId: string, route: AgentRoute): AgentRpc {
  const { namespace, id } = agentObject(env, tenantId, agentId, route);
  const stub = route.locationHint ? namespace.get(id, { locationHint: route.locationHint }) : namespace.get(id);
  return stub as unknown as AgentRpc;
}

/**
 * The namespace restricted to a jurisdiction. Local workerd does not implement jurisdictions
 * (it throws "… not implemented in workerd"); there, and only there, objects live in the
 * default namespace. Any other error is raised: a residency rule is never dropped silently.
 */
export function inJurisdiction<T extends Rpc.DurableObjectBranded | undefined>(namespace: DurableObjectNamespace<T>, jurisdiction: Jurisdiction): DurableObjectNamespace<T> {
  try {
    return namespace.jurisdiction(jurisdiction);
  } catch (error) {
    if (error instanceof Error && error.message.includes('not implemented in workerd')) return namespace;
    throw error;
  }
}

const RETRY_DELAYS_MS = [50, 200];

/**
 * Calls an agent's Durable Object. With `retry` (only for operations that are idempotent or
 * keyed), a retryable platform error is retried with a fresh stub and backoff. When the object
 * stays unreachable or is overloaded, `fallback` answers instead if given (reads serve the last
 * D1 snapshot), otherwise the caller gets 503 `agent_unavailable` with Retry-After.
 */
export async function callAgent<T>(
  env: Env,
  tenantId: string,
  agentId: string,
  route: AgentRoute,
  fn: (stub: AgentRpc) => Promise<T>,
  options: { retry?: boolean; fallback?: () => Promise<T | null> } = {},
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(agentStub(env, tenantId, agentId, route));
    } catch (error) {
      if (rpcMethodMissing(error)) throw olderRelease(error);
      const e = error as DurableObjectError;
      if (!isPlatformError(e)) throw error;
      const delay = RETRY_DELAYS_MS[attempt];
      if (!e.overloaded && options.retry && delay !== undefined) {
        await new Promise((resolve) => setTimeout(resolve, delay + Math.random() * delay));
        continue;
      }
      console.warn(JSON.stringify({ level: 'warn', msg: 'agent unavailable', tenantId, agentId, overloaded: e.overloaded === true, error: e.message }));
      const fallback = options.fallback ? await options.fallback().catch(() => null) : null;
      if (fallback !== null) return fallback;
      throw new ApiError('agent_unavailable', e.overloaded ? 'the agent is overloaded; retry later' : 'the agent is temporarily unreachable; retry later', undefined, { 'retry-after': e.overloaded ? '2' : '1' });
    }
  }
}

/**
 * The answer for an operation the agent's object does not have: during a gradual deployment it
 * may run the release before the edge's (docs/ARCHITECTURE.md, "object RPC is an interface
 * between releases"). Not the gateway's fault and gone once the deployment completes, so 503
 * with a Retry-After rather than a 500.
 */
function olderRelease(error: unknown): ApiError {
  console.warn(JSON.stringify({ level: 'warn', msg: "agent object of an older release lacks the operation", error: String(error) }));
  return new ApiError('agent_unavailable', "the agent's object runs an older release of the gateway, without this operation (a gradual deployment is in progress); retry once it completes", undefined, { 'retry-after': '60' });
}
