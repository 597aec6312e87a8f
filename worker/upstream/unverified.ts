import { ApiError } from '../errors';
import type { OutboundCheck } from './outbound-guard';

/**
 * Refuses a request that stores URLs whose host the resolver could not check now (its outage):
 * 503 with Retry-After, nothing stored. It used to be the 400 of a URL refused for good, which
 * told the client its URL was wrong and not to send it again. Called once the lasting
 * refusals (400 `outbound_refused`) have been looked for, so a URL wrong for good is said first.
 */
export function refuseUnverified(checks: readonly (OutboundCheck | null)[]): void {
  for (const check of checks) {
    if (check && !check.ok && check.unverified) throw new ApiError('unavailable', `cannot check the URL's host right now (${check.reason}); retry later`, undefined, { 'retry-after': '1' });
  }
}
