import type { PoolRuntime, PoolTarget } from '../pools/runtime';
import { agentHttpUpstream } from './agent-http';
import { builtinUpstream } from './builtin';
import { openAIChatUpstream } from './openai-chat';
import { guarded } from './guarded';
import type { OutboundPolicy } from './outbound-guard';
import { UpstreamError, type Lease, type Upstream } from './types';

/** A single pool target as an Upstream (credentials already opened). */
export function targetUpstream(target: PoolTarget, policy: OutboundPolicy): Upstream {
  switch (target.kind) {
    case 'builtin':
      return builtinUpstream;
    case 'agent-http':
      return guarded(agentHttpUpstream(target.url ?? '', target.timeoutMs, target.apiKey), target.url ?? '', policy);
    case 'openai-chat':
      return guarded(openAIChatUpstream(target.baseUrl ?? '', target.model ?? '', target.apiKey, target.timeoutMs), target.baseUrl ?? '', policy);
  }
}

/** A pool target as `x-gateway-upstream` names it: `<pool>/<target>`. */
export const poolTargetName = (pool: string, target: string): string => `${pool}/${target}`;

const LABEL_PREFIX = 'pool ';

/**
 * `x-gateway-upstream` for an attempt's label (an execution's `upstream`, which keeps the
 * label as it is): `<pool>/<target>` for a pool target, as the chat completions endpoint
 * names it; an agent's own upstream by its label (`builtin`, `agent-http <host>`…); nothing
 * when no target was reached (a pool that no longer exists, no attempt at all).
 */
export function gatewayUpstream(label: string | undefined): string | undefined {
  if (label === undefined || !label.startsWith(LABEL_PREFIX)) return label;
  const name = label.slice(LABEL_PREFIX.length);
  return name.includes('/') ? name : undefined;
}

/**
 * How an attempt's failure counts for the target's health: a 4xx is the caller's fault (the
 * target answered); a call the outbound guard refused was never sent, so it says nothing of the
 * target (it used to count as a success, closing an open circuit it never tested). A redirect
 * is never followed, so a target that answers one fails every call whoever makes it: the
 * target's failure, as its probe already said (it counted as a success, and the circuit never
 * opened while every call sent to the target failed).
 */
export function healthOutcome(error: unknown): 'failure' | 'success' | 'cancelled' {
  if (!(error instanceof UpstreamError)) return 'failure';
  if (error.kind === 'cancelled' || error.kind === 'refused') return 'cancelled';
  const redirect = error.status !== undefined && error.status >= 300 && error.status < 400;
  if (error.kind === 'http' && !error.retryable && !redirect) return 'success';
  return 'failure';
}

/** The Retry-After of a failure that may be retried (a 429 or 503 asking for a pause), if any. */
export function retryAfterOf(error: unknown): number | undefined {
  return error instanceof UpstreamError && error.retryable ? error.retryAfterMs : undefined;
}

/**
 * An upstream backed by a pool: every attempt goes to the target the balancer picks, a retry
 * to another target when there is one, and every outcome feeds the target's circuit breaker
 * and latency.
 */
export function poolUpstream(runtime: PoolRuntime, regions: readonly string[], policy: OutboundPolicy): Upstream {
  const tried = new Set<string>();
  // Targets whose URL the outbound guard refused in this execution: never picked again in it.
  const refused = new Set<string>();
  let lastRefusal: UpstreamError | undefined;
  let current: { lease: Lease; upstream: Upstream } | null = null;
  const name = runtime.pool.name;
  return {
    label: `${LABEL_PREFIX}${name}`,
    next() {
      const lease = runtime.lease(regions, tried, undefined, refused);
      // Every target left was refused: the execution fails with what the guard said.
      if (!lease) throw lastRefusal ?? new UpstreamError('refused', `pool ${name} has no targets`, false);
      tried.add(lease.target.id);
      current = { lease, upstream: targetUpstream(lease.target, policy) };
      const timeoutMs = lease.target.timeoutMs ?? runtime.pool.timeouts?.firstByteMs;
      return { label: `${LABEL_PREFIX}${poolTargetName(name, lease.target.id)}`, notBefore: lease.notBefore, ...(timeoutMs !== undefined && { timeoutMs }) };
    },
    skip() {
      current?.lease.done('cancelled');
      current = null;
    },
    async call(request, options) {
      const attempt = current;
      if (!attempt) throw new UpstreamError('refused', 'no target chosen', false);
      const started = Date.now();
      try {
        const reply = await attempt.upstream.call(request, options);
        attempt.lease.done('success', Date.now() - started);
        return reply;
      } catch (error) {
        attempt.lease.done(healthOutcome(error), Date.now() - started, retryAfterOf(error));
        // Refused for what the name resolves to: not picked again in this execution. One the
        // resolver could not check now may be picked again once the backoff has passed.
        if (error instanceof UpstreamError && error.kind === 'refused' && !error.retryable) {
          refused.add(attempt.lease.target.id);
          lastRefusal = error;
        }
        throw error;
      }
    },
  };
}
