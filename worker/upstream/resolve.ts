import type { UpstreamConfig } from '../schemas/agent';
import { agentHttpUpstream } from './agent-http';
import { builtinUpstream } from './builtin';
import { conformanceEnabled, conformanceUpstream } from './conformance';
import { openAIChatUpstream } from './openai-chat';
import { guarded } from './guarded';
import type { OutboundPolicy } from './outbound-guard';
import { poolUpstream } from './pool';
import { UpstreamError, type Upstream } from './types';
import type { Env } from '../env';
import { loadPoolRuntimeRetrying, POOL_STORE_UNAVAILABLE, poolStoreUnavailable } from '../pools/read-retry';
import { credentialMask, maskedForm } from '../lib/masked-credential';

export interface ResolveContext {
  env: Env;
  tenantId: string;
  /** Region tags of the agent, preferred among a pool's targets. */
  regions: readonly string[];
  /** The outbound guard's settings (see outbound-guard.ts). */
  policy: OutboundPolicy;
  /** The execution's deadline (epoch ms): a pool read D1 failed is tried again only before it. */
  deadlineAt: number;
}

export interface ResolvedUpstream {
  upstream: Upstream;
  /** Attempts the upstream allows per execution (a pool's `retry.attempts`). */
  maxAttempts?: number;
  /** Deadline of one call, retries included (a pool's `timeouts.totalMs`). */
  totalMs?: number;
}

/** Turns an agent's upstream config into the thing that calls it, loading a named pool. */
export async function resolveUpstream(config: UpstreamConfig, context: ResolveContext): Promise<ResolvedUpstream> {
  if (config.kind === 'builtin' && config.mode === 'a2a-conformance') {
    // Checked again at call time: the operator may have turned it off since the agent was saved.
    if (!conformanceEnabled(context.env)) return { upstream: refused('builtin a2a-conformance', 'the a2a-conformance upstream is disabled on this gateway') };
    return { upstream: conformanceUpstream, maxAttempts: 1 };
  }
  if (config.kind !== 'pool') return { upstream: directUpstream(config, context.policy) };
  const runtime = await loadPoolRuntimeRetrying(context.env, context.tenantId, config.pool, context.deadlineAt);
  if (runtime === POOL_STORE_UNAVAILABLE) {
    // One attempt, which fails retryably: the client's own retry may well find D1 answering.
    return { upstream: failing(`pool ${config.pool}`, new UpstreamError('network', poolStoreUnavailable(config.pool), true)), maxAttempts: 1 };
  }
  if (!runtime) {
    return { upstream: refused(`pool ${config.pool}`, `pool ${config.pool} does not exist`) };
  }
  const { retry, timeouts } = runtime.pool;
  return {
    upstream: poolUpstream(runtime, context.regions, context.policy),
    ...(retry && { maxAttempts: retry.attempts }),
    ...(timeouts?.totalMs !== undefined && { totalMs: timeouts.totalMs }),
  };
}

function refused(label: string, message: string): Upstream {
  return failing(label, new UpstreamError('refused', message, false));
}

function failing(label: string, error: UpstreamError): Upstream {
  return { label, call: () => Promise.reject(error) };
}

function directUpstream(config: Exclude<UpstreamConfig, { kind: 'pool' }>, policy: OutboundPolicy): Upstream {
  switch (config.kind) {
    case 'builtin':
      return builtinUpstream;
    case 'agent-http':
      return guarded(agentHttpUpstream(config.url, config.timeoutMs), config.url, policy);
    case 'openai-chat':
      return guarded(openAIChatUpstream(config.baseUrl, config.model, config.apiKey, config.timeoutMs), config.baseUrl, policy);
  }
}


const masked = credentialMask;

/** Masks credentials for every view of a config that leaves the agent (API, D1 snapshot). */
export function maskUpstream(config: UpstreamConfig): UpstreamConfig {
  if (config.kind !== 'openai-chat' || config.apiKey === undefined) return config;
  return { ...config, apiKey: masked(config.apiKey) };
}

/**
 * An upstream sent back with its credential in the masked form a read shows (an agent read,
 * edited and written back) keeps the credential stored, for the same base URL only: else
 * anyone with the tenant's key could send it to a host of their own. Storing the mask would
 * send "Bearer …ABCD" upstream. The ASCII spelling `...ABCD` is the same form (`maskedForm`).
 * Null: the masked form matches nothing stored here, refused.
 */
export function keepMaskedCredential(next: UpstreamConfig, stored: UpstreamConfig | undefined): UpstreamConfig | null {
  if (next.kind !== 'openai-chat') return next;
  const mask = maskedForm(next.apiKey);
  if (mask === undefined) return next;
  if (stored?.kind === 'openai-chat' && stored.baseUrl === next.baseUrl && stored.apiKey !== undefined && masked(stored.apiKey) === mask) return { ...next, apiKey: stored.apiKey };
  return null;
}
