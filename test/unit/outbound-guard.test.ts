import { describe, expect, it } from 'vitest';
import { allowsPrivate, outboundUrlProblem, parseAllowCidrs } from '../../worker/upstream/outbound-guard';
import { allowedByCidrs, blockedReason, parseCidr, parseIp } from '../../worker/upstream/ip-ranges';

describe('outboundUrlProblem with the guard on', () => {
  it.each([
    'https://api.example.com/v1/chat',
    'https://api.example.com:8443/agents?x=1',
    'https://8.8.8.8/',
    'https://[2606:4700:4700::1111]/',
    'https://172.32.0.1/', // just outside 172.16.0.0/12
    'https://100.128.0.1/', // just outside 100.64.0.0/10
  ])('accepts the public https URL %s', (url) => {
    expect(outboundUrlProblem(url, false)).toBeNull();
  });

  it('refuses plain http', () => {
    expect(outboundUrlProblem('http://api.example.com/', false)).toMatch(/https/);
  });

  it.each([
    ['localhost', 'https://localhost/'],
    ['a localhost subdomain', 'https://api.localhost/'],
    ['loopback', 'https://127.0.0.1/'],
    ['loopback, anywhere in 127/8', 'https://127.8.9.10:8443/'],
    ['10/8', 'https://10.1.2.3/'],
    ['172.16/12 (low end)', 'https://172.16.0.1/'],
    ['172.16/12 (high end)', 'https://172.31.255.254/'],
    ['192.168/16', 'https://192.168.1.1/'],
    ['the cloud metadata address', 'https://169.254.169.254/latest/meta-data/'],
    ['carrier-grade NAT 100.64/10', 'https://100.64.0.1/'],
    ['carrier-grade NAT 100.64/10 (high end)', 'https://100.127.255.254/'],
    ['0.0.0.0', 'https://0.0.0.0/'],
    ['IPv6 loopback', 'https://[::1]/'],
    ['IPv6 unique local', 'https://[fc00::1]/'],
    ['IPv6 unique local (fd)', 'https://[fd12:3456::1]/'],
    ['IPv6 link-local', 'https://[fe80::1]/'],
    ['a .internal name', 'https://metadata.google.internal/'],
    ['loopback in decimal form', 'https://2130706433/'],
    ['loopback in hex form', 'https://0x7f.0.0.1/'],
  ])('refuses %s (%s)', (_label, url) => {
    expect(outboundUrlProblem(url, false)).toMatch(/private|loopback|link-local/);
  });

  // The URL parser serialises an IPv4-mapped host in hex ([::ffff:127.0.0.1] → [::ffff:7f00:1]).
  it.each([
    'https://[::ffff:127.0.0.1]/',
    'https://[::ffff:169.254.169.254]/',
    'https://[::ffff:10.0.0.1]/',
  ])('refuses the IPv4-mapped IPv6 address %s', (url) => {
    expect(outboundUrlProblem(url, false)).not.toBeNull();
  });

  // Every other spelling of a refused address the URL parser or the guard reads back to it.
  it.each([
    'https://0x7f.1/', 'https://127.1/', 'https://0177.0.0.1/', 'https://0x7f000001/', 'https://0/', 'https://0251.0376.0251.0376/', 'https://\uff11\uff12\uff17.0.0.1/',
    'https://127%2e0%2e0%2e1/', 'https://169.254.169.254./', 'https://100.64.0.0/', 'https://255.255.255.255/', 'https://224.0.0.1/',
    'https://[::ffff:7f00:1]/', 'https://[::]/', 'https://[fc00::]/', 'https://[fe80::1%25eth0]/', 'https://[::127.0.0.1]/', 'https://[64:ff9b::7f00:1]/',
    'https://[2002:7f00:1::]/', 'https://[::ffff:a9fe:a9fe]/', 'https://[0000:0000:0000:0000:0000:0000:0000:0001]/', 'https://[ff02::1]/', 'https://[fd00:ec2::254]/',
    'https://localhost./', 'https://LOCALHOST/', 'https://x.localhost./', 'https://printer.LOCAL/', 'https://a.home.arpa/', 'https://metadata.google.internal./',
    'https://evil@127.0.0.1/', 'https://evil.com@127.0.0.1/', 'https://127.0.0.1:443/', 'https:\\\\127.0.0.1\\', 'HTTPS://127.0.0.1/',
  ])('refuses %s', (url) => {
    expect(outboundUrlProblem(url, false)).not.toBeNull();
  });

  it('refuses credentials in the URL', () => {
    expect(outboundUrlProblem('https://user:pass@api.example.com/', false)).toMatch(/credentials/);
    expect(outboundUrlProblem('https://user@api.example.com/', false)).toMatch(/credentials/);
  });

  it('refuses something that is not a URL', () => {
    expect(outboundUrlProblem('not-a-url', false)).not.toBeNull();
    expect(outboundUrlProblem('', false)).not.toBeNull();
    expect(outboundUrlProblem('https://', false)).not.toBeNull();
  });

  it('refuses other schemes', () => {
    expect(outboundUrlProblem('ftp://files.example.com/', false)).not.toBeNull();
    expect(outboundUrlProblem('file:///etc/passwd', false)).not.toBeNull();
  });
});

describe('outboundUrlProblem with private upstreams allowed', () => {
  it('allows http to a loopback or private address', () => {
    expect(outboundUrlProblem('http://127.0.0.1:8787/mock', true)).toBeNull();
    expect(outboundUrlProblem('http://localhost:3000/', true)).toBeNull();
    expect(outboundUrlProblem('https://10.0.0.5/', true)).toBeNull();
  });

  it('still allows only http(s)', () => {
    expect(outboundUrlProblem('ftp://127.0.0.1/', true)).not.toBeNull();
    expect(outboundUrlProblem('file:///etc/passwd', true)).not.toBeNull();
  });

  it('still refuses credentials and non-URLs', () => {
    expect(outboundUrlProblem('http://user:pass@127.0.0.1/', true)).not.toBeNull();
    expect(outboundUrlProblem('not-a-url', true)).not.toBeNull();
  });
});

describe('allowsPrivate', () => {
  it('is on only for the exact string "true"', () => {
    expect(allowsPrivate({ ALLOW_PRIVATE_UPSTREAMS: 'true' })).toBe(true);
    expect(allowsPrivate({ ALLOW_PRIVATE_UPSTREAMS: 'TRUE' })).toBe(false);
    expect(allowsPrivate({ ALLOW_PRIVATE_UPSTREAMS: '1' })).toBe(false);
    expect(allowsPrivate({})).toBe(false);
  });
});

describe('ip-ranges: which resolved addresses are refused', () => {
  const reason = (text: string) => {
    const ip = parseIp(text);
    if (!ip) throw new Error(`unparseable ${text}`);
    return blockedReason(ip);
  };

  it.each([
    '0.0.0.0', '0.255.1.1', '10.0.0.1', '100.64.0.1', '127.0.0.1', '169.254.169.254', '172.16.0.1', '192.0.0.8', '192.0.2.1',
    '192.168.0.1', '198.18.0.1', '198.19.255.255', '198.51.100.7', '203.0.113.9', '224.0.0.1', '239.255.255.250', '240.0.0.1', '255.255.255.255',
    '::', '::1', '::127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.1.2.3', '64:ff9b::a9fe:a9fe', '64:ff9b::192.168.0.1', '64:ff9b:1::1',
    '2002:a00:1::', '2001::1', '2001:db8::1', 'fc00::1', 'fd00:ec2::254', 'fe80::1%eth0', 'fec0::1', 'ff02::1', '100::1', '3fff::1', '4000::1', '1::1',
  ])('refuses %s', (address) => {
    expect(reason(address)).not.toBeNull();
  });

  it.each(['1.1.1.1', '8.8.8.8', '93.184.215.14', '172.32.0.1', '100.128.0.1', '198.20.0.1', '223.255.255.255', '2606:4700:4700::1111', '2a00:1450::1', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1'])(
    'accepts the public address %s',
    (address) => {
      expect(reason(address)).toBeNull();
    },
  );

  it('parses every IPv6 spelling to the same number', () => {
    expect(parseIp('::ffff:127.0.0.1')).toEqual(parseIp('0:0:0:0:0:ffff:7f00:1'));
    expect(parseIp('[fe80::1]')).toEqual(parseIp('fe80:0:0:0:0:0:0:1'));
    for (const bad of ['1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', '1.2.3', '256.1.1.1', 'example.com', ':::']) expect(parseIp(bad), bad).toBeNull();
  });

  it('matches CIDRs, through embedded IPv4 too, and rejects malformed ones', () => {
    const allow = parseAllowCidrs('10.20.0.0/16,fd12::/16,bogus,1.2.3.4/33');
    expect(allow).toHaveLength(2);
    expect(allowedByCidrs(parseIp('10.20.255.1')!, allow)).toBe(true);
    expect(allowedByCidrs(parseIp('::ffff:10.20.0.1')!, allow)).toBe(true);
    expect(allowedByCidrs(parseIp('10.21.0.1')!, allow)).toBe(false);
    expect(allowedByCidrs(parseIp('fd12:abcd::1')!, allow)).toBe(true);
    expect(parseCidr('0.0.0.0/0')).not.toBeNull();
  });
});
