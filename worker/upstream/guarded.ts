import { outboundUrlProblem } from './outbound-guard';
import { UpstreamError, type Upstream } from './types';

/** Re-checks the URL before every call: the guard's setting may have changed since it was stored. */
export function guarded(upstream: Upstream, url: string, allowPrivate: boolean): Upstream {
  return {
    ...upstream,
    call(request, options) {
      const problem = outboundUrlProblem(url, allowPrivate);
      if (problem) return Promise.reject(new UpstreamError('refused', `upstream URL refused: ${problem}`, false));
      return upstream.call(request, options);
    },
  };
}
