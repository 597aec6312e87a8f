import type { Context } from 'hono';
import type { AppEnv, Env } from '../env';
import { ApiError, unwrap } from '../errors';
import { auditEntry, recordAudit } from '../audit/log';
import { eachLimited } from '../lib/each-limited';
import { newId } from '../lib/ids';
import { iso } from '../lib/time';
import type { Agent, AgentConfig, CreateAgentBody } from '../schemas/agent';
import { toApiError } from '../middleware/error-handler';
import { maskUpstream } from '../upstream/resolve';
import { checkUpstream } from './upstream-check';
import { locationHintFor, type GeoHints } from './placement';
import { adoptOrphanedClaim, callAgent, findRegistration, registerAgents, releaseClaim, returnClaim, type AgentRoute } from './registry';

/** What creating one agent came to: the agent, or the error a single create would answer. */
export type CreateOutcome = { ok: true; agent: Agent } | { ok: false; id: string; error: ApiError };

/** One agent, as `POST /v1/agents` creates it: the agent, or its error thrown. */
export async function createAgent(c: Context<AppEnv>, body: CreateAgentBody): Promise<Agent> {
  const [outcome] = await createAgents(c, [body]);
  if (outcome === undefined) throw new Error('createAgents gave no outcome');
  if (!outcome.ok) throw outcome.error;
  return outcome.agent;
}

/** Objects initialised at once by one request: enough to overlap their round trips. */
const CREATE_PARALLELISM = 16;

interface Pending {
  index: number;
  config: AgentConfig;
  provisional: Agent;
  route: AgentRoute;
}

/**
 * Creates agents for the request's tenant, each as `POST /v1/agents` would: its upstream
 * checked, its id claimed in the D1 registry, then its Durable Object initialised; a claim
 * whose object refused is released. The claims of all of them go to D1 in one batch, and so
 * do their audit entries, so n agents cost two D1 commits instead of 2n. Each agent's outcome
 * is its own: one refused leaves the others created. Outcomes are in the order asked.
 */
export async function createAgents(c: Context<AppEnv>, bodies: readonly CreateAgentBody[]): Promise<CreateOutcome[]> {
  const { tenantId } = c.get('principal');
  const now = Date.now();
  const outcomes: CreateOutcome[] = new Array<CreateOutcome>(bodies.length);
  const checks = new Map<string, Promise<void>>();

  // Checked together; kept in the order asked, so outcomes and D1's batch follow it.
  const checked = await Promise.all(
    bodies.map(async (body, index): Promise<Pending | undefined> => {
      const config = configOf(body);
      // Agents of one batch mostly share an upstream: one check (one pool read) serves them all.
      const key = JSON.stringify(body.upstream ?? null);
      let check = checks.get(key);
      if (!check) checks.set(key, (check = checkUpstream(c.env, tenantId, body.upstream)));
      try {
        await check;
      } catch (error) {
        outcomes[index] = { ok: false, id: config.id, error: toApiError(error, c.get('requestId')) };
        return undefined;
      }
      const route: AgentRoute = { jurisdiction: config.jurisdiction, locationHint: locationHintFor(config.region, c.req.raw.cf as GeoHints | undefined) };
      return { index, config, route, provisional: { ...config, upstream: maskUpstream(config.upstream), state: 'idle', createdAt: iso(now), updatedAt: iso(now) } };
    }),
  );
  const pending = checked.filter((item): item is Pending => item !== undefined);

  const claimed = await registerAgents(c.env, tenantId, pending.map(({ provisional, route }) => ({ agent: provisional, route })), now);
  const created: Agent[] = [];
  await eachLimited(pending, CREATE_PARALLELISM, async (item, i) => {
    const outcome = await createOne(c, item, claimed[i] === true, now);
    outcomes[item.index] = outcome;
    if (outcome.ok) created.push(outcome.agent);
  });
  await recordAudit(c.env, ...created.map((agent) => auditEntry(c, 'agent.create', agent.id, { details: { upstream: agent.upstream.kind, jurisdiction: agent.jurisdiction } })));
  return outcomes;
}

async function createOne(c: Context<AppEnv>, { config, provisional, route: asked }: Pending, claimed: boolean, now: number): Promise<CreateOutcome> {
  const { tenantId } = c.get('principal');
  let route = asked;
  try {
    if (!claimed) {
      const adopted = await adoptOrphanedClaim(c.env, tenantId, provisional, config.jurisdiction, now);
      if (!adopted) throw new ApiError('conflict', `agent ${config.id} already exists`);
      route = adopted;
    }
  } catch (error) {
    return { ok: false, id: config.id, error: toApiError(error, c.get('requestId')) };
  }
  const create = () => callAgent(c.env, tenantId, config.id, route, (stub) => stub.create({ tenantId, config, createdAt: now, locationHint: route.locationHint, adoptedClaim: !claimed }), { retry: true });
  try {
    let created = await create();
    if (claimed && !created.ok && created.code === 'conflict' && (await removeUnregisteredAgent(c.env, tenantId, config.id, route, now))) created = await create();
    if (!claimed && !created.ok && created.code === 'conflict') await returnClaimToHolder(c.env, tenantId, config.id, route, now);
    return { ok: true, agent: unwrap(created) };
  } catch (error) {
    // The object refused or was unreachable: release the claim unless the object holds the
    // agent. Should the release fail too, the next create of this id takes the claim over.
    if (!(error instanceof ApiError && error.code === 'conflict')) await releaseClaim(c.env, tenantId, config.id, now).catch(() => undefined);
    return { ok: false, id: config.id, error: toApiError(error, c.get('requestId')) };
  }
}

/**
 * Removes an agent the object holds although no registry row names it, and says whether the
 * object is now empty. Only a create that claimed the id afresh can know it has none: no row
 * named the id when it claimed it, and an agent with a row keeps it until the agent is gone (a
 * DELETE destroys the object first). So an agent there, created at another time, is one whose
 * create failed after the object had made it (its answer lost, its claim then released): an
 * agent no read could reach, which would otherwise refuse this create with 409. Unless the
 * claim is no longer this create's: another create took it over meanwhile.
 */
async function removeUnregisteredAgent(env: Env, tenantId: string, agentId: string, route: AgentRoute, claimedAt: number): Promise<boolean> {
  const held = await callAgent(env, tenantId, agentId, route, (stub) => stub.get(), { retry: true });
  if (!held.ok) return held.code === 'not_found';
  const createdAt = Date.parse(held.value.createdAt);
  if (createdAt === claimedAt) return false;
  // A claim can be taken over before its own object call lands (the object still empty): the
  // agent there is then the taker's, registered and answered 201, and this create lost.
  const row = await findRegistration(env, tenantId, agentId);
  if (row?.createdAt !== claimedAt) return false;
  const removed = await callAgent(env, tenantId, agentId, route, (stub) => stub.destroy(createdAt), { retry: true });
  return removed.ok || removed.code === 'not_found';
}

/**
 * After a taken-over claim met an agent in the object: that agent is the create's whose claim
 * it was (it reached the object first), so the row goes back to its creation time. Should this
 * fail, the create still answers 409, and a DELETE leaves that agent for the id's next create to remove.
 */
async function returnClaimToHolder(env: Env, tenantId: string, agentId: string, route: AgentRoute, takenAt: number): Promise<void> {
  const held = await callAgent(env, tenantId, agentId, route, (stub) => stub.get(), { retry: true }).catch(() => null);
  if (held?.ok) await returnClaim(env, tenantId, agentId, takenAt, Date.parse(held.value.createdAt)).catch(() => undefined);
}

function configOf(body: CreateAgentBody): AgentConfig {
  return {
    id: body.id ?? newId('ag'),
    name: body.name ?? null,
    instructions: body.instructions ?? null,
    upstream: body.upstream ?? { kind: 'builtin' },
    concurrency: body.concurrency,
    region: body.region ?? null,
    jurisdiction: body.jurisdiction ?? null,
    metadata: body.metadata ?? null,
    ...(body.a2a && { a2a: body.a2a }),
  };
}
