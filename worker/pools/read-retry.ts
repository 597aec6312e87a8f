import type { Env } from '../env';
import { isTransientStorageError } from '../lib/storage-errors';
import { loadPoolRuntime, type PoolRuntime } from './runtime';

/**
 * The waits before each new read of a pool that D1 failed for a transient reason (a lost
 * connection, an overloaded database): about 1.3 s in all, the backoff an execution's outcome
 * write gets. An execution on a pool the isolate holds in neither its cache nor KV reads D1,
 * and failing it on the first such error threw away work a moment's wait would have run.
 */
export const POOL_READ_BACKOFF_MS: readonly number[] = [50, 250, 1_000];

/** D1 did not answer for the pool, on every read before the backoff ran out (or the deadline neared). */
export const POOL_STORE_UNAVAILABLE = 'unavailable';

/** The message of an execution failed so: stable, naming the pool, without D1's own text. */
export const poolStoreUnavailable = (name: string): string =>
  `pool ${name} could not be loaded: the gateway's configuration store did not answer (a transient failure); nothing was sent upstream, run the execution again`;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * `loadPoolRuntime`, read again after a transient storage error, as long as the next wait ends
 * before `deadlineAt`. Every other error is thrown as it is (a credential that no longer opens
 * says so in its own words).
 */
export async function loadPoolRuntimeRetrying(env: Env, tenantId: string, name: string, deadlineAt: number): Promise<PoolRuntime | null | typeof POOL_STORE_UNAVAILABLE> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await loadPoolRuntime(env, tenantId, name);
    } catch (error) {
      if (!isTransientStorageError(error)) throw error;
      const wait = POOL_READ_BACKOFF_MS[attempt];
      if (wait === undefined || Date.now() + wait >= deadlineAt) {
        // The operator's copy of what D1 said; the execution carries only the stable message.
        console.warn(JSON.stringify({ level: 'warn', msg: 'pool read failed: D1 did not answer', tenant: tenantId, pool: name, reads: attempt + 1, error: String(error) }));
        return POOL_STORE_UNAVAILABLE;
      }
      await sleep(wait);
    }
  }
}
