/**
 * IP address parsing and the ranges the outbound guard refuses. Addresses are numbers:
 * IPv4 a 32-bit integer, IPv6 a 128-bit bigint, so a range check is one mask and compare.
 */

export type IpAddress = { v: 4; n: number } | { v: 6; n: bigint };

export interface Cidr {
  v: 4 | 6;
  /** Network address, masked. */
  base: bigint;
  bits: number;
}

/** Dotted-quad IPv4 only (the URL parser has already normalised hex and decimal forms). */
export function parseIPv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p))) return null;
  const nums = parts.map(Number);
  if (!nums.every((n) => n <= 255)) return null;
  return ((nums[0]! << 24) | (nums[1]! << 16) | (nums[2]! << 8) | nums[3]!) >>> 0;
}

/** Any textual IPv6 form: `::` compression, a dotted IPv4 tail, a zone id (dropped). */
export function parseIPv6(text: string): bigint | null {
  let host = text.replace(/^\[|\]$/g, '').toLowerCase();
  const zone = host.indexOf('%');
  if (zone >= 0) host = host.slice(0, zone);
  if (!/^[0-9a-f:.]+$/.test(host) || !host.includes(':')) return null;
  // A dotted IPv4 tail stands for the last two groups.
  const lastColon = host.lastIndexOf(':');
  const tail = host.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseIPv4(tail);
    if (v4 === null) return null;
    host = `${host.slice(0, lastColon + 1)}${(v4 >>> 16).toString(16)}:${(v4 & 0xffff).toString(16)}`;
  }
  const halves = host.split('::');
  if (halves.length > 2) return null;
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const head = groups(halves[0]);
  const rest = groups(halves[1]);
  const missing = 8 - head.length - rest.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return null;
  const all = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...rest];
  let value = 0n;
  for (const group of all) {
    if (!/^[0-9a-f]{1,4}$/.test(group)) return null;
    value = (value << 16n) | BigInt(parseInt(group, 16));
  }
  return value;
}

export function parseIp(text: string): IpAddress | null {
  const v4 = parseIPv4(text);
  if (v4 !== null) return { v: 4, n: v4 };
  const v6 = parseIPv6(text);
  return v6 === null ? null : { v: 6, n: v6 };
}

/** `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128). Null if malformed. */
export function parseCidr(text: string): Cidr | null {
  const [addr = '', bitsText, extra] = text.trim().split('/');
  if (extra !== undefined) return null;
  const ip = parseIp(addr);
  if (!ip) return null;
  const width = ip.v === 4 ? 32 : 128;
  const bits = bitsText === undefined ? width : /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (!(bits >= 0 && bits <= width)) return null;
  return { v: ip.v, base: mask(BigInt(ip.n), bits, width), bits };
}

function mask(n: bigint, bits: number, width: number): bigint {
  const hostBits = BigInt(width - bits);
  return (n >> hostBits) << hostBits;
}

export function inCidr(ip: IpAddress, cidr: Cidr): boolean {
  if (ip.v !== cidr.v) return false;
  return mask(BigInt(ip.n), cidr.bits, ip.v === 4 ? 32 : 128) === cidr.base;
}

const cidrs = (list: [string, string][]): [Cidr, string][] => list.map(([text, why]) => [parseCidr(text)!, why]);

/** Every IPv4 range that is not ordinary public unicast (IANA special-purpose registry). */
const BLOCKED_V4 = cidrs([
  ['0.0.0.0/8', 'unspecified ("this network")'],
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'carrier-grade NAT (shared)'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local (cloud metadata)'],
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'IETF protocol assignments'],
  ['192.0.2.0/24', 'documentation'],
  ['192.31.196.0/24', 'AS112'],
  ['192.52.193.0/24', 'AMT'],
  ['192.88.99.0/24', '6to4 relay anycast'],
  ['192.168.0.0/16', 'private'],
  ['192.175.48.0/24', 'AS112'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved (and broadcast)'],
]);

/**
 * IPv6: only global unicast (2000::/3) is allowed, minus its special blocks; forms that
 * embed an IPv4 address are judged by that address.
 */
const GLOBAL_UNICAST_V6 = parseCidr('2000::/3')!;
const BLOCKED_V6 = cidrs([
  ['2001::/23', 'IETF protocol assignments (incl. Teredo)'],
  ['2001:db8::/32', 'documentation'],
  ['3fff::/20', 'documentation'],
]);
const NAMED_V6 = cidrs([
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['fc00::/7', 'unique local (incl. fd00:ec2::254 metadata)'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'site-local'],
  ['ff00::/8', 'multicast'],
  ['64:ff9b:1::/48', 'local-use NAT64'],
  ['100::/64', 'discard-only'],
]);
const MAPPED_V4 = parseCidr('::ffff:0:0/96')!;
const NAT64 = parseCidr('64:ff9b::/96')!;
const SIX_TO_FOUR = parseCidr('2002::/16')!;

/** The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), if any. */
export function embeddedV4(n: bigint): number | null {
  const ip: IpAddress = { v: 6, n };
  if (inCidr(ip, MAPPED_V4) || inCidr(ip, NAT64)) return Number(n & 0xffffffffn);
  if (inCidr(ip, SIX_TO_FOUR)) return Number((n >> 80n) & 0xffffffffn);
  return null;
}

/** Why an address may not be called, or null for an ordinary public address. */
export function blockedReason(ip: IpAddress): string | null {
  if (ip.v === 4) return BLOCKED_V4.find(([c]) => inCidr(ip, c))?.[1] ?? null;
  const v4 = embeddedV4(ip.n);
  if (v4 !== null) {
    const inner = blockedReason({ v: 4, n: v4 });
    return inner ? `IPv4 embedded in IPv6: ${inner}` : null;
  }
  const named = NAMED_V6.find(([c]) => inCidr(ip, c));
  if (named) return named[1];
  if (!inCidr(ip, GLOBAL_UNICAST_V6)) return 'reserved (not global unicast)';
  return BLOCKED_V6.find(([c]) => inCidr(ip, c))?.[1] ?? null;
}

/** True when an allow-list entry covers the address (or the IPv4 address it embeds). */
export function allowedByCidrs(ip: IpAddress, allow: readonly Cidr[]): boolean {
  if (allow.some((c) => inCidr(ip, c))) return true;
  const v4 = ip.v === 6 ? embeddedV4(ip.n) : null;
  return v4 !== null && allow.some((c) => inCidr({ v: 4, n: v4 }, c));
}
