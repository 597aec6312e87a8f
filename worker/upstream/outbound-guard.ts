import { DEFAULT_DNS_RESOLVER_URL, resolveName } from './dns-resolver';
import { allowedByCidrs, blockedReason, parseCidr, parseIp, type Cidr } from './ip-ranges';
import { UpstreamError } from './types';

/**
 * The SSRF guard for tenant-supplied URLs (upstream targets, webhook endpoints): https only,
 * no credentials, and no host that is — or resolves to — a private, loopback, link-local,
 * multicast, metadata or otherwise reserved address. Checked when a URL is stored and again
 * before every call, so a name re-pointed at 127.0.0.1 after it was stored is refused.
 */
export interface OutboundPolicy {
  /** ALLOW_PRIVATE_UPSTREAMS="true": local development, the guard is off. */
  allowPrivate: boolean;
  /** DNS-over-HTTPS JSON endpoint (operator config, so not itself subject to the guard). */
  resolverUrl: string;
  /** Ranges permitted even though private (an operator's VPC). */
  allowCidrs: readonly Cidr[];
}

export interface OutboundEnv {
  ALLOW_PRIVATE_UPSTREAMS?: string | undefined;
  DNS_RESOLVER_URL?: string | undefined;
  OUTBOUND_ALLOW_CIDRS?: string | undefined;
}

/**
 * `stage: 'url'`: the URL's text can never pass; `'dns'`: what the name resolves to now was
 * refused (or could not be resolved), which can change. `unverified`: the resolver could not
 * answer now (its outage, not the name's fault), so the URL was neither passed nor judged.
 */
export type OutboundCheck = { ok: true } | { ok: false; reason: string; stage: 'url' | 'dns'; unverified?: true };

export const allowsPrivate = (env: { ALLOW_PRIVATE_UPSTREAMS?: string | undefined }): boolean => env.ALLOW_PRIVATE_UPSTREAMS === 'true';

const parsedCidrs = new Map<string, Cidr[]>();

/** Malformed entries are skipped: a typo must never widen what is allowed. */
export function parseAllowCidrs(list: string | undefined): Cidr[] {
  if (!list) return [];
  let parsed = parsedCidrs.get(list);
  if (!parsed) {
    parsed = list.split(',').filter((s) => s.trim()).map(parseCidr).filter((c): c is Cidr => c !== null);
    if (parsedCidrs.size > 16) parsedCidrs.clear();
    parsedCidrs.set(list, parsed);
  }
  return parsed;
}

export function outboundPolicy(env: OutboundEnv): OutboundPolicy {
  return {
    allowPrivate: allowsPrivate(env),
    resolverUrl: env.DNS_RESOLVER_URL || DEFAULT_DNS_RESOLVER_URL,
    allowCidrs: parseAllowCidrs(env.OUTBOUND_ALLOW_CIDRS),
  };
}

const asPolicy = (policy: OutboundPolicy | boolean): OutboundPolicy =>
  typeof policy === 'boolean' ? { allowPrivate: policy, resolverUrl: DEFAULT_DNS_RESOLVER_URL, allowCidrs: [] } : policy;

/**
 * The host as judged: brackets and every trailing dot dropped. The URL parser keeps `x.internal..`
 * as it is, and with only one dot dropped a local-only name so spelt escaped the name check
 * and was resolved instead (a resolver answering for it let it pass).
 */
const hostOf = (url: URL) => url.hostname.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.+$/, '');

const isLocalName = (host: string) =>
  host === 'localhost' || host.endsWith('.localhost') || host.endsWith('.internal') || host.endsWith('.local') || host.endsWith('.home.arpa');

/**
 * What can be told without DNS: the URL's form, and a host that is a literal address or a
 * local-only name. Null when the URL may be called as far as its text goes.
 */
export function outboundUrlProblem(raw: string, policyOrAllowPrivate: OutboundPolicy | boolean): string | null {
  const policy = asPolicy(policyOrAllowPrivate);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'not a valid URL';
  }
  if (url.username || url.password) return 'URLs with credentials are not allowed';
  if (policy.allowPrivate) return url.protocol === 'https:' || url.protocol === 'http:' ? null : 'only http(s) URLs are allowed';
  if (url.protocol !== 'https:') return 'only https URLs are allowed';
  const host = hostOf(url);
  if (isLocalName(host)) return `private, loopback and link-local addresses are not allowed (${host} is a local name)`;
  const ip = parseIp(host);
  return ip ? addressProblem(host, ip, policy) : null;
}

function addressProblem(text: string, ip: NonNullable<ReturnType<typeof parseIp>>, policy: OutboundPolicy): string | null {
  const reason = blockedReason(ip);
  if (!reason || allowedByCidrs(ip, policy.allowCidrs)) return null;
  return `private, loopback, link-local and reserved addresses are not allowed (${text}: ${reason})`;
}

/**
 * The full check: the URL's text, then every A and AAAA answer for its host name. Refuses if
 * ANY answer is not allowed, and if the name cannot be resolved (fail closed).
 */
export async function checkOutboundUrl(raw: string, policy: OutboundPolicy, signal?: AbortSignal): Promise<OutboundCheck> {
  const problem = outboundUrlProblem(raw, policy);
  if (problem) return { ok: false, reason: problem, stage: 'url' };
  if (policy.allowPrivate) return { ok: true };
  const host = hostOf(new URL(raw));
  if (parseIp(host)) return { ok: true };
  const resolved = await resolveName(host, policy.resolverUrl, Date.now(), signal);
  if (!resolved.ok) return { ok: false, reason: `cannot verify the host's addresses: ${resolved.reason}`, stage: 'dns', ...(resolved.transient && { unverified: true as const }) };
  for (const address of resolved.addresses) {
    const ip = parseIp(address);
    if (!ip) return { ok: false, reason: `${host} resolves to an unparseable address (${address})`, stage: 'dns' };
    const refused = addressProblem(address, ip, policy);
    if (refused) return { ok: false, reason: `${host} resolves to a refused address: ${refused}`, stage: 'dns' };
  }
  return { ok: true };
}

/**
 * A failed check as the call's failure, kind `refused` either way: nothing was sent, so it is
 * no verdict on the target's health. Refused for what the URL is or resolves to, it is not
 * retried. When the resolver could not answer now, it is retryable, waiting out the backoff
 * as a network failure does: a resolver's blip used to fail every call it met for good (an
 * execution failed, a chat answered 400), and the name is checked again on the next attempt.
 */
export function outboundFailure(check: Exclude<OutboundCheck, { ok: true }>): UpstreamError {
  if (check.unverified) return new UpstreamError('refused', `upstream URL could not be checked now: ${check.reason}`, true);
  return new UpstreamError('refused', `upstream URL refused: ${check.reason}`, false);
}
