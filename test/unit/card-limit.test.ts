import { describe, expect, it } from 'vitest';
import { LOCAL_BUCKET, clientBucket } from '../../worker/a2a/card-limit';

describe('clientBucket', () => {
  it('is the IPv4 address itself', () => {
    expect(clientBucket('203.0.113.7')).toBe('203.0.113.7');
    expect(clientBucket(' 203.0.113.7 ')).toBe('203.0.113.7');
  });

  it('is the /64 of an IPv6 address, however the address is written', () => {
    expect(clientBucket('2001:db8:0:1::1')).toBe('20010db800000001::/64');
    expect(clientBucket('2001:0DB8:0000:0001:ffff:ffff:ffff:ffff')).toBe('20010db800000001::/64');
    expect(clientBucket('2001:db8:0:2::1')).not.toBe(clientBucket('2001:db8:0:1::1'));
  });

  it("is one shared bucket without a usable address (requests not through Cloudflare's edge have none)", () => {
    expect(clientBucket(undefined)).toBe(LOCAL_BUCKET);
    expect(clientBucket('')).toBe(LOCAL_BUCKET);
    expect(clientBucket('not an address')).toBe(LOCAL_BUCKET);
  });
});
