import type { Env } from '../env';
import { ApiError } from '../errors';
import type { AgentConfig } from '../schemas/agent';
import { getPool } from '../pools/store';
import { checkOutboundUrl, outboundPolicy } from '../upstream/outbound-guard';
import { conformanceEnabled } from '../upstream/conformance';
import { refuseUnverified } from '../upstream/unverified';

/**
 * Refuses what would fail at call time, so it fails early: URLs the outbound guard refuses,
 * and pools the tenant does not have.
 */
export async function checkUpstream(env: Env, tenantId: string, config: AgentConfig['upstream'] | undefined): Promise<void> {
  if (config?.kind === 'builtin' && config.mode === 'a2a-conformance' && !conformanceEnabled(env)) {
    throw new ApiError('invalid_request', 'the a2a-conformance upstream is disabled on this gateway (ENABLE_CONFORMANCE_UPSTREAM)', [{ path: ['upstream', 'mode'], message: 'not enabled', code: 'custom' }]);
  }
  if (!config || config.kind === 'builtin') return;
  if (config.kind === 'pool') {
    if (!(await getPool(env, tenantId, config.pool))) {
      throw new ApiError('invalid_request', `pool ${config.pool} does not exist`, [{ path: ['upstream', 'pool'], message: 'no such pool', code: 'custom' }]);
    }
    return;
  }
  const url = config.kind === 'agent-http' ? config.url : config.baseUrl;
  const check = await checkOutboundUrl(url, outboundPolicy(env));
  refuseUnverified([check]);
  if (!check.ok) throw new ApiError('invalid_request', `upstream URL refused: ${check.reason}`, [{ path: ['upstream'], message: check.reason, code: 'outbound_refused' }]);
}
