import { checkOutboundUrl, outboundFailure, type OutboundPolicy } from './outbound-guard';
import type { Upstream } from './types';

/**
 * Re-checks the URL (and what its name resolves to now) before every call: the answer may
 * have been re-pointed, or the guard's setting changed, since the URL was stored.
 */
export function guarded(upstream: Upstream, url: string, policy: OutboundPolicy): Upstream {
  return {
    ...upstream,
    async call(request, options) {
      const check = await checkOutboundUrl(url, policy, options.signal);
      if (!check.ok) throw outboundFailure(check);
      return upstream.call(request, options);
    },
  };
}
