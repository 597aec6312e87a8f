import { DEFAULT_TIMEOUT_MS } from '../../durable/agent-rpc';
import { canonicalJson, sha256Hex } from '../lib/hash';
import type { CreateExecutionBody } from '../schemas/execution';

/**
 * What tells a replay of an `Idempotency-Key` from the key reused with another request: the
 * request as it runs, whichever face sent it (REST, MCP `execute_intent`). A default spelled out
 * is the same request as one left out (`"timeoutMs": 30000`, `"input": null`: the same execution),
 * so both are left out here; `mode` is always there, as validation fills it in.
 *
 * `legacy`: the fingerprint the previous release recorded, of the body as validated (defaults
 * spelled out or not, as sent): a retry within a key's day of one recorded before the deploy
 * still replays it. Leaving defaults out (rather than filling them in) keeps the two equal for
 * every body that spelled none, so most requests have one fingerprint (`legacy` is then absent).
 */
export async function executionFingerprints(body: CreateExecutionBody): Promise<{ fingerprint: string; legacyFingerprint?: string }> {
  const { input, timeoutMs, ...rest } = body;
  const runs = { ...rest, ...(input !== undefined && input !== null && { input }), ...(timeoutMs !== undefined && timeoutMs !== DEFAULT_TIMEOUT_MS && { timeoutMs }) };
  const [fingerprint, legacy] = await Promise.all([sha256Hex(canonicalJson(runs)), sha256Hex(canonicalJson(body))]);
  return legacy === fingerprint ? { fingerprint } : { fingerprint, legacyFingerprint: legacy };
}
