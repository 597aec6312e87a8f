import { checkOutboundUrl, type OutboundPolicy } from './outbound-guard';
import { UpstreamError, type Upstream } from './types';

/**
 * Re-checks the URL (and what its name resolves to now) before every call: the answer may
 * have been re-pointed, or the guard's setting changed, since the URL was stored.
 */
export function guarded(upstream: Upstream, url: string, policy: OutboundPolicy): Upstream {
  return {
    ...upstream,
    async call(request, options) {
      const check = await checkOutboundUrl(url, policy);
      if (!check.ok) throw new UpstreamError('refused', `upstream URL refused: ${check.reason}`, false);
      return upstream.call(request, options);
    },
  };
}
