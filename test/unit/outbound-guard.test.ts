import { describe, expect, it } from 'vitest';
import { allowsPrivate, outboundUrlProblem } from '../../worker/upstream/outbound-guard';

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
