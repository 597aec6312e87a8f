import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { AppEnv } from '../env';
import { ApiError, invalidRequest } from '../errors';
import { auditEntry } from '../audit/log';
import { decodePoolCursor, encodePoolCursor } from '../lib/config-cursors';
import { iso } from '../lib/time';
import { latencyNow, targetHealthy } from '../pools/balancer';
import { CircuitBreaker } from '../pools/circuit-breaker';
import { cachedRuntime, healthKey, probeDown, probeOf, type ProbeResult } from '../pools/runtime';
import { deletePool, getPool, listPools, poolView, putPool } from '../pools/store';
import { POOL_PAGE_MAX, PoolListQuery, PoolName, PoolView, PutPoolBody, type StoredPool } from '../schemas/pool';
import { page } from '../schemas/common';
import { checkOutboundUrl, outboundPolicy, type OutboundPolicy } from '../upstream/outbound-guard';
import { refuseUnverified } from '../upstream/unverified';
import { commonErrors, errorResponse, json, jsonBody, security } from './openapi';

const NameParams = z.object({ name: PoolName });

/**
 * URLs the outbound guard refuses are a 400 with one issue per target; else a host the resolver
 * could not check now is a 503 to retry. Nothing is stored either way.
 */
async function checkTargets(body: PutPoolBody, policy: OutboundPolicy): Promise<void> {
  const checks = await Promise.all(
    body.targets.map((t) => {
      const url = t.kind === 'agent-http' ? t.url : t.kind === 'openai-chat' ? t.baseUrl : undefined;
      return url === undefined ? null : checkOutboundUrl(url, policy);
    }),
  );
  const issues = checks.flatMap((check, i) => {
    const target = body.targets[i];
    if (!check || check.ok || check.unverified || !target) return [];
    return [{ path: ['targets', String(i), target.kind === 'agent-http' ? 'url' : 'baseUrl'], message: check.reason, code: 'outbound_refused' }];
  });
  if (issues.length > 0) throw invalidRequest(issues);
  refuseUnverified(checks);
}

/** The pool with each target's live health as this isolate and the last active probe see it. */
async function withHealth(c: { env: AppEnv['Bindings'] }, tenantId: string, pool: StoredPool): Promise<PoolView> {
  const view = poolView(pool);
  const probes = (await c.env.CACHE.get<Record<string, ProbeResult>>(healthKey(tenantId, pool.name), 'json').catch(() => null)) ?? {};
  const runtime = cachedRuntime(tenantId, pool.name);
  const now = Date.now();
  runtime?.endOverdue(now);
  return {
    ...view,
    targets: view.targets.map((t) => {
      const stored = pool.targets.find((s) => s.id === t.id);
      // A runtime of the pool before its last PUT still holds what the next call will keep.
      const state = runtime && stored ? runtime.stateOf(stored) : undefined;
      // Only a probe of the target as now defined; shown without its subject (an internal hash).
      const found = stored ? probeOf(probes, stored) : null;
      const shown = found && { ok: found.ok, checkedAt: found.checkedAt, latencyMs: found.latencyMs, ...(found.error !== undefined && { error: found.error }) };
      // Judged by the balancer's own rule, from the probes just read (an isolate reloads its
      // own every 15 s); a target this isolate has not called has a closed circuit.
      const breaker = state?.breaker ?? new CircuitBreaker();
      const circuit = breaker.current(now);
      // As the balancer weighs it now: decayed since its last sample (balancer.ts, latencyNow).
      const latency = state ? latencyNow(state, now) : null;
      return {
        ...t,
        health: {
          circuit,
          inflight: state?.inflight ?? 0,
          latencyMs: latency === null ? null : Math.round(latency),
          probe: shown,
          healthy: targetHealthy({ breaker, probeDown: probeDown(shown, now) }, now),
          pausedUntil: state && state.retryAfterUntil > now ? iso(state.retryAfterUntil) : null,
        },
      };
    }),
  };
}

export const pools = new OpenAPIHono<AppEnv>()
  .openapi(
    createRoute({
      method: 'put',
      path: '/v1/pools/{name}',
      tags: ['pools'],
      summary: 'Create or replace a pool of upstream targets',
      security,
      request: { params: NameParams, ...jsonBody(PutPoolBody) },
      responses: { 200: json(PoolView, 'the pool, replaced'), 201: json(PoolView, 'the pool, created'), 409: errorResponse('pool_limit_reached: a new pool would take the tenant past the pools it may hold (details.limit)'), ...commonErrors },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      const body = c.req.valid('json');
      const { tenantId } = c.get('principal');
      await checkTargets(body, outboundPolicy(c.env));
      const targets = body.targets.map((t) => ({ id: t.id, kind: t.kind }));
      const { pool, created } = await putPool(c.env, tenantId, name, body, auditEntry(c, 'pool.put', name, { details: { targets } }));
      return c.json(poolView(pool), created ? 201 : 200);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/pools',
      tags: ['pools'],
      summary: `The tenant's pools in name order, a page at a time (by default ${POOL_PAGE_MAX}, the most a page holds)`,
      security,
      request: { query: PoolListQuery },
      responses: { 200: json(page(PoolView), 'a page of pools'), ...commonErrors },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid('query');
      const { tenantId } = c.get('principal');
      const { pools: found, next } = await listPools(c.env, tenantId, limit, (await decodePoolCursor(tenantId, cursor)) ?? '');
      return c.json({ data: found.map(poolView), nextCursor: next === null ? null : await encodePoolCursor(tenantId, next) }, 200);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/pools/{name}',
      tags: ['pools'],
      summary: "A pool with each target's live health (circuit, in-flight, latency, last probe, Retry-After pause)",
      security,
      request: { params: NameParams },
      responses: { 200: json(PoolView, 'the pool'), 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      const { tenantId } = c.get('principal');
      const pool = await getPool(c.env, tenantId, name);
      if (!pool) throw new ApiError('not_found', `pool ${name} not found`);
      return c.json(await withHealth(c, tenantId, pool), 200);
    },
  )
  .openapi(
    createRoute({
      method: 'delete',
      path: '/v1/pools/{name}',
      tags: ['pools'],
      summary: 'Delete a pool (agents that name it fail their executions until it exists again)',
      security,
      request: { params: NameParams },
      responses: { 204: { description: 'deleted' }, 404: errorResponse('not_found'), ...commonErrors },
    }),
    async (c) => {
      const { name } = c.req.valid('param');
      if (!(await deletePool(c.env, c.get('principal').tenantId, name, auditEntry(c, 'pool.delete', name)))) throw new ApiError('not_found', `pool ${name} not found`);
      return c.body(null, 204);
    },
  );
