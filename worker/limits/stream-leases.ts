import type { Context } from 'hono';
import type { StreamLeaseAnswer } from '../../durable/key-stream-leases';
import { streamsPerKey } from '../../durable/stream-slots';
import type { AppEnv } from '../env';
import { ApiError } from '../errors';
import { rpcMethodMissing } from '../lib/rpc-missing';
import { limiter, limiterName } from './limiter';

/**
 * Opens a stream of the request's key on agent object `agent` (`open`) under a lease on one more
 * of the key's streams (durable/key-stream-leases.ts), or throws 429 `too_many_streams`
 * (`streams.perKey`) without opening it. The lease is given back when `open` throws or its
 * answer is no open stream (`opened` false: the agent's own cap, a deleted agent, an error
 * before the first event); once a stream is open, its agent's count is what keeps or frees the
 * lease. `check`: a HEAD, which only hears whether one more fits and takes nothing. A limiter of
 * a release without stream leases (a gradual deployment) caps nothing, as that release did.
 */
export async function underStreamLease<T>(c: Context<AppEnv>, agent: string, open: () => Promise<T>, opened: (answer: T) => boolean = () => true, check = false): Promise<T> {
  const release = await takeStreamLease(c, agent, check);
  let answer: T;
  try {
    answer = await open();
  } catch (error) {
    release();
    throw error;
  }
  if (!opened(answer)) release();
  return answer;
}

/** Takes the lease `underStreamLease` opens under; returns what gives it back. */
async function takeStreamLease(c: Context<AppEnv>, agent: string, check: boolean): Promise<() => void> {
  const { keyId } = c.get('principal');
  const stub = limiter(c.env, limiterName(keyId));
  let answer: StreamLeaseAnswer;
  try {
    // The RPC's answer type wraps the union so that `ok` no longer narrows it: read as what it is.
    answer = (await stub.takeStreamLease({ keyId, max: streamsPerKey(c.env), agent, check })) as StreamLeaseAnswer;
  } catch (error) {
    if (rpcMethodMissing(error, 'takeStreamLease')) return () => {};
    throw error;
  }
  if (!answer.ok) throw ApiError.from(answer);
  const { leaseId } = answer;
  if (leaseId === null) return () => {};
  return () =>
    c.executionCtx.waitUntil(
      Promise.resolve(stub.releaseStreamLease(leaseId)).catch((error: unknown) =>
        console.warn(JSON.stringify({ level: 'warn', msg: 'could not give back a stream lease the agent refused; the next check finds it', leaseId, error: String(error) })),
      ),
    );
}
