import { describe, expect, it } from 'vitest';
import { canonicalJson, secretsEqual, sha256Hex } from '../../worker/lib/hash';

describe('canonicalJson', () => {
  it('sorts object keys', () => {
    expect(canonicalJson({ b: 1, a: 2, c: 3 })).toBe('{"a":2,"b":1,"c":3}');
  });

  it('sorts keys at every depth, including objects inside arrays', () => {
    const value = { z: { y: 1, x: [{ d: 1, c: 2 }, { b: { f: 1, e: 2 } }] }, a: null };
    expect(canonicalJson(value)).toBe('{"a":null,"z":{"x":[{"c":2,"d":1},{"b":{"e":2,"f":1}}],"y":1}}');
  });

  it('gives equal strings for equal objects whose keys were written in a different order', () => {
    const one = { intent: 'chat', input: { message: 'hi', meta: { lang: 'en', tz: 'CET' } }, tags: ['a', 'b'] };
    const two = { tags: ['a', 'b'], input: { meta: { tz: 'CET', lang: 'en' }, message: 'hi' }, intent: 'chat' };
    expect(canonicalJson(one)).toBe(canonicalJson(two));
  });

  it('keeps array order (different orders are different values)', () => {
    expect(canonicalJson([3, 1, 2])).toBe('[3,1,2]');
    expect(canonicalJson({ a: [1, 2] })).not.toBe(canonicalJson({ a: [2, 1] }));
  });

  it('gives different strings for different values', () => {
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: '1' }));
    expect(canonicalJson({ a: 1 })).not.toBe(canonicalJson({ a: 1, b: 2 }));
  });

  it('is plain JSON for primitives and parses back to an equal value', () => {
    expect(canonicalJson('x')).toBe('"x"');
    expect(canonicalJson(42)).toBe('42');
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson(true)).toBe('true');
    const value = { b: [1, { d: 'x', c: null }], a: { f: false, e: 1.5 } };
    expect(JSON.parse(canonicalJson(value))).toEqual(value);
  });
});

describe('secretsEqual', () => {
  it('is true for identical secrets', async () => {
    expect(await secretsEqual('eag_s3cret-value', 'eag_s3cret-value')).toBe(true);
    expect(await secretsEqual('', '')).toBe(true);
  });

  it('is false for different secrets, whether they differ in content, case or length', async () => {
    expect(await secretsEqual('eag_s3cret-value', 'eag_s3cret-valuf')).toBe(false);
    expect(await secretsEqual('secret', 'SECRET')).toBe(false);
    expect(await secretsEqual('secret', 'secret-longer')).toBe(false);
    expect(await secretsEqual('secret', '')).toBe(false);
  });
});

describe('sha256Hex', () => {
  it('matches the FIPS 180-2 test vector for "abc"', async () => {
    expect(await sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('matches the known digest of the empty string', async () => {
    expect(await sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('hashes UTF-8 and is 64 lowercase hex characters', async () => {
    const hex = await sha256Hex('héllo ✓');
    expect(hex).toMatch(/^[0-9a-f]{64}$/);
    expect(hex).not.toBe(await sha256Hex('hello ✓'));
  });
});
