import type { Admission, AdmitRequest } from '../../durable/key-limiter';
import { tightest, type PolicyState } from '../../durable/key-limiter-policy';
import type { Env } from '../env';
import type { KeyLimits } from '../schemas/limits';
import type { ChatTokenEstimate } from './usage';
import { rpcMethodMissing } from '../lib/rpc-missing';

/** The key's main limiter: rate windows (unless sharded), concurrency and budgets, exactly. */
export const limiterName = (keyId: string): string => `key:${keyId}`;
export const shardName = (keyId: string, shard: number): string => `key:${keyId}:r${shard}`;

export const limiter = (env: Env, name: string) => env.KEY_LIMITS.get(env.KEY_LIMITS.idFromName(name));

/** A key's rate windows split over `shards` objects: each allows limit/shards (at least 1). */
export function shardLimits(limits: KeyLimits, shards: number): KeyLimits {
  const part = (n: number | undefined) => (n === undefined ? undefined : Math.max(1, Math.floor(n / shards)));
  const perSecond = part(limits.perSecond);
  const perMinute = part(limits.perMinute);
  return { ...(perSecond !== undefined && { perSecond }), ...(perMinute !== undefined && { perMinute }) };
}

export interface Admitted {
  ok: true;
  /** Where to release the lease, if one was taken. */
  lease: { name: string; id: string } | null;
  policy: ReturnType<typeof tightest>;
  /** What to report instead when the gateway refuses the request and its budgets are given back. */
  givenBackPolicy: ReturnType<typeof tightest>;
  /** Tokens reserved against the key's token budget (0 without one). */
  reservedTokens: number;
  /** What the token budget has left beyond this reservation, and when its period ends (null: none). */
  tokenBudget: { free: number; reset: number } | null;
}

/**
 * Admits a request against the key's limits. Unsharded keys take one round trip to the key's
 * object. With `shards` > 1 the rate windows go to one shard chosen at random (so a hot key's
 * rate checks spread over several objects), and only requests that call an upstream, on keys
 * with a concurrency cap or a budget, take a second trip to the main object (as does one such
 * request the shard refused, to hear whether its budget is used up: that refusal comes first).
 */
export async function admit(env: Env, keyId: string, limits: KeyLimits, upstream: boolean, estimate: ChatTokenEstimate, replayable = false, holdTokens = false): Promise<Admitted | Extract<Admission, { ok: false }>> {
  // Each shard admits at least one a window, so more shards than the smaller window holds
  // would admit more than the limit between them: use no more than that.
  const shards = Math.min(limits.shards ?? 1, limits.perSecond ?? Infinity, limits.perMinute ?? Infinity);
  const exact = upstream && (limits.concurrency !== undefined || limits.budget !== undefined);
  const flags = { ...(replayable && { replayable }), ...(holdTokens && { holdTokens }) };
  if (shards <= 1) {
    const result = await limiter(env, limiterName(keyId)).admit({ limits, upstream, tokens: estimate.tokens, minTokens: estimate.least, ...flags });
    if (!result.ok) return result;
    return { ok: true, lease: result.leaseId ? { name: limiterName(keyId), id: result.leaseId } : null, policy: result.policy, givenBackPolicy: result.givenBackPolicy, reservedTokens: result.reservedTokens, tokenBudget: result.tokenBudget };
  }
  const policies: PolicyState[] = [];
  const { perSecond: _s, perMinute: _m, ...rest } = limits;
  // The shard has counted the rate windows by the time the main object sees `replayable`.
  const request: AdmitRequest = { limits: rest, upstream, tokens: estimate.tokens, minTokens: estimate.least, ...flags };
  const rates = shardLimits(limits, shards);
  if (rates.perSecond !== undefined || rates.perMinute !== undefined) {
    const shard = Math.floor(Math.random() * shards);
    const result = await limiter(env, shardName(keyId, shard)).admit({ limits: rates, upstream: false, tokens: 0 });
    if (!result.ok) {
      // A used-up budget keeps the request out longer than the window: that is the answer
      // (asked only of refused requests, so admitted ones still take one trip per object).
      // A limiter of a release before this check (a gradual deployment) lacks it: the rate
      // window's refusal is the answer, as that release gave.
      const budget = upstream && limits.budget ? await limiter(env, limiterName(keyId)).budgetRefusal(request).catch(noBudgetRefusal) : null;
      return budget ?? result;
    }
    if (result.policy) policies.push(result.policy);
  }
  if (!exact) return { ok: true, lease: null, policy: tightest(policies), givenBackPolicy: tightest(policies), reservedTokens: 0, tokenBudget: null };
  const result = await limiter(env, limiterName(keyId)).admit(request);
  if (!result.ok) return result;
  const withMain = (policy: PolicyState | null) => tightest(policy ? [...policies, policy] : policies);
  return { ok: true, lease: result.leaseId ? { name: limiterName(keyId), id: result.leaseId } : null, policy: withMain(result.policy), givenBackPolicy: withMain(result.givenBackPolicy), reservedTokens: result.reservedTokens, tokenBudget: result.tokenBudget };
}

/** `budgetRefusal`'s failure: none from a limiter without the method (an older release), else thrown. */
function noBudgetRefusal(error: unknown): null {
  if (rpcMethodMissing(error)) return null;
  throw error;
}
