import { createRoute } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { RunInput, RunResult } from '../../durable/transaction';
import type { AppEnv, Env } from '../env';
import { ApiError, unwrap } from '../errors';
import { findAgent } from '../agents/registry';
import { canonicalJson, sha256Hex } from '../lib/hash';
import { newId } from '../lib/ids';
import { CreateTransactionBody, Transaction, TransactionAborted, TransactionCommitted, TransactionParams } from '../schemas/transaction';
import { idempotencyHeaders, writtenHeaders } from '../schemas/common';
import { commonErrors, errorResponse, json, jsonBody, security, unavailableResponse } from './openapi';
import { router } from './router';
import { coordinator, coordinatorName, idName } from '../transactions/coordinator';
import { rpcMethodMissing } from '../lib/rpc-missing';
import { isPlatformError } from '../lib/storage-errors';

const IdempotencyHeaders = idempotencyHeaders('the same key returns the recorded outcome and never runs the transaction twice, for a day after the transaction completed (then the key starts a new one)');
const OutcomeHeaders = writtenHeaders('the transaction (GET: votes and acknowledgements)', '/v1/transactions/tx_01jd8x3v7c9q2m4n6p8r0s2t4v');

const TX_ID = /^tx_[0-9a-z]{26}$/;

interface DurableObjectError extends Error {
  retryable?: boolean;
  overloaded?: boolean;
}

/**
 * Calls the coordinator, retrying once with a fresh stub on a retryable platform error: `run`
 * is idempotent for one coordinator name (a second call returns the recorded outcome).
 */
async function runOnce(env: Env, name: string, input: RunInput, key: string | undefined) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await coordinator(env, name).run(input);
    } catch (error) {
      const e = error as DurableObjectError;
      if (e.retryable && !e.overloaded && attempt < 2) continue;
      if (isPlatformError(e)) throw unreachable(input.txId, key, e.overloaded === true);
      throw error;
    }
  }
}

/**
 * The coordinator failed to answer. It may have been reached, even decided, before the answer
 * was lost, so "retry" alone could run a transfer twice: the refusal says how to learn the
 * outcome first, by the id (an unkeyed transaction's coordinator is named from it) or by
 * sending the key again (a keyed one's replays it).
 */
function unreachable(txId: string, key: string | undefined, overloaded: boolean): ApiError {
  const what = overloaded ? 'transaction coordinator is overloaded' : 'transaction coordinator is temporarily unreachable';
  if (key) return new ApiError('unavailable', `${what}; it may have begun: send the same Idempotency-Key again, which replays its outcome if it did`, undefined, { 'retry-after': '1' });
  return new ApiError('unavailable', `${what}; it may have begun: GET /v1/transactions/${txId} tells whether it did and how it ended (404: it did not) before you run it again`, { transactionId: txId }, { 'retry-after': '1', location: `/v1/transactions/${txId}` });
}

/** 200 for a commit, 409 for an abort, with where to read it and whether it was a replay. */
function outcome(c: Context<AppEnv>, { transaction, replayed }: RunResult, key: string | undefined) {
  const headers: Record<string, string> = { location: `/v1/transactions/${transaction.id}` };
  if (replayed && key) headers['idempotent-replayed'] = 'true';
  // The decision is certain; a participant not told yet within the coordinator's wait is told by its alarm.
  const pending = !transaction.completed && { completed: false as const };
  if (transaction.status === 'committed') return c.json({ id: transaction.id, status: 'committed' as const, versions: transaction.versions ?? {}, ...pending }, 200, headers);
  const aborted = { id: transaction.id, status: 'aborted' as const, reason: transaction.reason ?? 'internal_error', ...(transaction.agentId && { agentId: transaction.agentId }), ...(transaction.message && { message: transaction.message }), ...pending };
  return c.json(aborted, 409, headers);
}

export const transactions = router()
  .openapi(
    createRoute({
      method: 'post',
      path: '/v1/transactions',
      tags: ['transactions'],
      summary: "Apply operations to up to 16 of the tenant's agents, all or nothing (two-phase commit)",
      security,
      request: { headers: IdempotencyHeaders, ...jsonBody(CreateTransactionBody) },
      responses: {
        200: { ...json(TransactionCommitted, 'committed: every operation applied; the new context version of each agent'), headers: OutcomeHeaders },
        404: errorResponse('not_found: an agent of the operations does not exist for this tenant (nothing was locked)'),
        409: { ...json(TransactionAborted, 'aborted: nothing applied; reason names why (version_mismatch, agent_locked, guard_failed, timeout, …) and agentId which agent'), headers: OutcomeHeaders },
        422: errorResponse('idempotency_key_reused: same key, different body'),
        ...commonErrors,
        503: unavailableResponse(
          'unavailable: the coordinator did not answer (or D1 refused for now); it may have been reached, even decided, so an unkeyed transaction names itself (details.transactionId, Location: GET it before running it again) and a keyed one is replayed by its key (Retry-After)',
          { Location: 'an unkeyed transaction the coordinator stopped answering for: where to read whether it began and how it ended' },
        ),
      },
    }),
    async (c) => {
      const body = c.req.valid('json');
      const key = c.req.valid('header')['idempotency-key'];
      const { tenantId } = c.get('principal');
      // Every agent is resolved before anything is locked: an unknown one (or another
      // tenant's, which is the same thing from here) is a 404 that touched nothing.
      const fingerprint = key ? await sha256Hex(canonicalJson(body)) : null;
      const txId = newId('tx');
      const name = coordinatorName(tenantId, txId, key);
      // Every agent is resolved before anything is locked: an unknown one (or another
      // tenant's, which is the same thing from here) is a 404 that touched nothing, unless the
      // key's transaction ran before the agent was deleted: its outcome is the answer.
      const routes = await Promise.all(body.operations.map((op) => findAgent(c.env, tenantId, op.agentId)));
      const missing = body.operations.findIndex((_op, i) => !routes[i]);
      if (missing >= 0) {
        const recorded = key ? await coordinator(c.env, name).replay(tenantId, fingerprint).catch(noReplay) : null;
        if (recorded) return outcome(c, unwrap(recorded), key);
        throw new ApiError('not_found', `agent ${body.operations[missing]?.agentId} not found`, { agentId: body.operations[missing]?.agentId });
      }

      const input: RunInput = {
        txId,
        tenantId,
        coordinatorName: name,
        fingerprint,
        timeoutMs: body.timeoutMs,
        operations: body.operations.map(({ agentId, ...operation }, i) => {
          const route = routes[i];
          if (!route) throw new Error('route vanished');
          return { agentId, route, operation };
        }),
      };
      return outcome(c, unwrap(await runOnce(c.env, name, input, key)), key);
    },
  )
  .openapi(
    createRoute({
      method: 'get',
      path: '/v1/transactions/{id}',
      tags: ['transactions'],
      summary: 'Read a transaction: its decision, votes and acknowledgements (from its coordinator)',
      security,
      request: { params: TransactionParams },
      responses: { 200: json(Transaction, 'the transaction'), 404: errorResponse('not_found: no such transaction for this tenant, or it completed more than a day ago'), ...commonErrors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const { tenantId } = c.get('principal');
      // Unkeyed coordinators are named from the id, so GET still works while D1 is unreachable;
      // only ids the gateway could have made are tried that way, to not create objects for junk.
      let indexDown = false;
      const row = await c.env.DB.prepare('SELECT coordinator_name FROM transactions WHERE tenant_id = ? AND id = ?')
        .bind(tenantId, id)
        .first<{ coordinator_name: string }>()
        .catch(() => {
          indexDown = true;
          return null;
        });
      const name = row?.coordinator_name ?? (TX_ID.test(id) ? idName(tenantId, id) : null);
      if (!name) throw new ApiError('not_found', `transaction ${id} not found`);
      const found = await coordinator(c.env, name).get(tenantId, id);
      // A keyed transaction's coordinator is named from its key, which only D1 knows (or a
      // pointer at the id's object, when D1 refused the row as it began): without D1 a miss
      // proves nothing, and a 404 would invite the client to run the transfer again.
      if (!found.ok && found.code === 'not_found' && indexDown) {
        throw new ApiError('unavailable', 'the transaction index is unreachable; retry later', undefined, { 'retry-after': '1' });
      }
      return c.json(unwrap(found), 200);
    },
  );

/**
 * `replay`'s failure: a coordinator of a release before keyed replays (a gradual deployment)
 * has no record to give, and the missing agent's 404 is the answer, as that release gave.
 */
function noReplay(error: unknown): null {
  if (rpcMethodMissing(error)) return null;
  throw error;
}
