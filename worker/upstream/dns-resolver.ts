/**
 * Name resolution for the outbound guard. Workers cannot resolve DNS themselves, so names are
 * looked up with DNS over HTTPS (the JSON API: `?name=…&type=A|AAAA`,
 * `accept: application/dns-json`) at the operator's resolver. Answers are cached per isolate
 * for their TTL (capped), in a bounded map; failures are never cached.
 */

export const DEFAULT_DNS_RESOLVER_URL = 'https://cloudflare-dns.com/dns-query';
const RESOLVE_TIMEOUT_MS = 3_000;
const MAX_CACHE_ENTRIES = 1_000;
const MAX_TTL_S = 300;
const TYPE_A = 1;
const TYPE_AAAA = 28;

/**
 * `transient`: the resolver could not answer now (unreachable, timed out, HTTP 5xx or 429,
 * SERVFAIL), which says nothing of the name; otherwise the name has no usable answer (NXDOMAIN,
 * no records) or the resolver refuses the question, which asking again will not change.
 */
export type Resolution = { ok: true; addresses: string[] } | { ok: false; reason: string; transient: boolean };

interface DohAnswer {
  type?: unknown;
  TTL?: unknown;
  data?: unknown;
}

const cache = new Map<string, { addresses: string[]; expiresAt: number }>();

/** Forgets cached answers (tests, and an operator changing resolver). */
export function clearDnsCache(): void {
  cache.clear();
}

/**
 * Every A and AAAA address of `name`, or why there are none (fail closed). `signal`: the call
 * the lookup is for, whose own deadline may come before the lookup's.
 */
export async function resolveName(name: string, resolverUrl: string, now = Date.now(), signal?: AbortSignal): Promise<Resolution> {
  const key = `${resolverUrl} ${name}`;
  const hit = cache.get(key);
  if (hit && hit.expiresAt > now) return { ok: true, addresses: hit.addresses };
  cache.delete(key);

  const limit = signal ? AbortSignal.any([signal, AbortSignal.timeout(RESOLVE_TIMEOUT_MS)]) : AbortSignal.timeout(RESOLVE_TIMEOUT_MS);
  const lookups = await Promise.all([query(name, 'A', TYPE_A, resolverUrl, limit), query(name, 'AAAA', TYPE_AAAA, resolverUrl, limit)]);
  // A lasting failure wins: the name's own answer, whatever the other lookup met.
  const failed = lookups.find((l) => !l.ok && !l.transient) ?? lookups.find((l) => !l.ok);
  if (failed && !failed.ok) return failed;
  const answers = lookups.flatMap((l) => (l.ok ? l.answers : []));
  if (answers.length === 0) return { ok: false, reason: `${name} has no A or AAAA records`, transient: false };

  const addresses = answers.map((a) => a.address);
  const ttl = Math.min(MAX_TTL_S, ...answers.map((a) => a.ttl));
  if (ttl > 0) {
    if (cache.size >= MAX_CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
    cache.set(key, { addresses, expiresAt: now + ttl * 1000 });
  }
  return { ok: true, addresses };
}

type Lookup = { ok: true; answers: { address: string; ttl: number }[] } | { ok: false; reason: string; transient: boolean };

/** DNS's SERVFAIL: the resolver failed to get an answer, which a later question may get. */
const SERVFAIL = 2;
const NXDOMAIN = 3;

async function query(name: string, typeName: string, type: number, resolverUrl: string, signal: AbortSignal): Promise<Lookup> {
  let url: URL;
  try {
    url = new URL(resolverUrl);
  } catch {
    return { ok: false, reason: 'DNS_RESOLVER_URL is not a valid URL', transient: false };
  }
  url.searchParams.set('name', name);
  url.searchParams.set('type', typeName);
  let body: { Status?: unknown; Answer?: unknown };
  try {
    const response = await fetch(url, { headers: { accept: 'application/dns-json' }, signal });
    if (!response.ok) {
      await response.body?.cancel();
      return { ok: false, reason: `DNS resolver answered HTTP ${response.status} for ${name}`, transient: response.status >= 500 || response.status === 429 };
    }
    body = (await response.json()) as typeof body;
  } catch (error) {
    // Unreachable, timed out, or an answer that broke off: the resolver's trouble, not the name's.
    return { ok: false, reason: `DNS resolution of ${name} failed: ${error instanceof Error ? error.message : String(error)}`, transient: true };
  }
  // Anything but 0 (NOERROR) leaves the name unresolved.
  if (body.Status !== 0) {
    const reason = body.Status === NXDOMAIN ? `${name} does not exist (NXDOMAIN)` : `DNS resolution of ${name} failed (status ${String(body.Status)})`;
    return { ok: false, reason, transient: body.Status === SERVFAIL };
  }
  const answers = Array.isArray(body.Answer) ? (body.Answer as DohAnswer[]) : [];
  // CNAME records come along with the addresses they lead to; only addresses are judged.
  return {
    ok: true,
    answers: answers
      .filter((a) => a.type === type && typeof a.data === 'string')
      .map((a) => ({ address: a.data as string, ttl: typeof a.TTL === 'number' && a.TTL >= 0 ? a.TTL : 0 })),
  };
}
