import type { TokenCharge } from '../../durable/agent-rpc';
import type { Env } from '../env';
import { limiter } from './limiter';
import { rpcMethodMissing } from '../lib/rpc-missing';

/**
 * Runs `call`, which hands the agent (object `agent`) an execution holding `charge`. When it
 * fails without the agent's answer, the agent may or may not have received the execution (an
 * answer lost on the way back, or a delivery that never arrived): the key's limiter is told to
 * ask that agent later, so a reservation it never received is given back rather than charged
 * in full at expiry. Told at most best-effort: without it, the reservation expires as before.
 */
export async function withChargeDoubt<T>(env: Env, charge: TokenCharge | undefined, agent: () => string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (charge) {
      await limiter(env, charge.limiter)
        .doubtCharge(charge.id, agent())
        .catch((failure: unknown) => {
          // A limiter of a release before this (a gradual deployment) is expected, not an error.
          const level = rpcMethodMissing(failure) ? 'warn' : 'error';
          console[level](JSON.stringify({ level, msg: 'could not tell the limiter to ask about a reservation; it expires', chargeId: charge.id, error: String(failure) }));
        });
    }
    throw error;
  }
}
