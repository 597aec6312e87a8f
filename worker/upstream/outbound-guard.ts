/**
 * First line of the SSRF guard: tenant-supplied URLs must be https and must not name a
 * private, loopback, link-local or metadata host literally. (Resolving names to catch a
 * hostname that points at 127.0.0.1 is the hardening issue's part.) Operators turn the guard
 * off for local development with ALLOW_PRIVATE_UPSTREAMS="true".
 */
export function outboundUrlProblem(raw: string, allowPrivate: boolean): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'not a valid URL';
  }
  if (url.username || url.password) return 'URLs with credentials are not allowed';
  if (allowPrivate) return url.protocol === 'https:' || url.protocol === 'http:' ? null : 'only http(s) URLs are allowed';
  if (url.protocol !== 'https:') return 'only https URLs are allowed';
  if (isPrivateHost(url.hostname)) return 'private, loopback and link-local addresses are not allowed';
  return null;
}

export const allowsPrivate = (env: { ALLOW_PRIVATE_UPSTREAMS?: string }): boolean => env.ALLOW_PRIVATE_UPSTREAMS === 'true';

function isPrivateHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  if (host === 'localhost' || host.endsWith('.localhost') || host.endsWith('.internal') || host.endsWith('.local')) return true;
  const v4 = parseIPv4(host);
  if (v4) return isPrivateV4(v4);
  if (host.includes(':')) return isPrivateV6(host);
  return false;
}

function parseIPv4(host: string): number[] | null {
  const parts = host.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p))) return null;
  const nums = parts.map(Number);
  return nums.every((n) => n <= 255) ? nums : null;
}

function isPrivateV4([a = 0, b = 0]: number[]): boolean {
  return (
    a === 0 || a === 10 || a === 127 || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127) || a >= 224
  );
}

function isPrivateV6(host: string): boolean {
  if (host === '::1' || host === '::') return true;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(host);
  if (mapped?.[1]) {
    const v4 = parseIPv4(mapped[1]);
    return v4 ? isPrivateV4(v4) : true;
  }
  // The URL parser normalises ::ffff:127.0.0.1 to ::ffff:7f00:1: decode the two hex groups.
  const mappedHex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (mappedHex?.[1] && mappedHex[2]) {
    const hi = parseInt(mappedHex[1], 16);
    const lo = parseInt(mappedHex[2], 16);
    return isPrivateV4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
  }
  return /^(fc|fd|fe8|fe9|fea|feb|ff)/.test(host);
}
