import { describe, expect, it } from 'vitest';
import { applyOperation } from '../../durable/agent-transactions';

const ctx = (data: Record<string, unknown>, version = 3) => ({ version, data });

describe('applyOperation', () => {
  it('applies the merge patch, then increments, and bumps the version', () => {
    expect(applyOperation(ctx({ balance: 10, a: { b: 1 } }), { patch: { a: { c: 2 } }, increment: { balance: 5 } }, 1_000)).toEqual({
      ok: true,
      value: { data: { balance: 15, a: { b: 1, c: 2 } }, version: 4 },
    });
  });

  it('counts a missing key as 0 and may increment a key the patch just set', () => {
    expect(applyOperation(ctx({}), { increment: { n: 2 } }, 1_000)).toMatchObject({ ok: true, value: { data: { n: 2 } } });
    expect(applyOperation(ctx({ n: 'x' }), { patch: { n: 1 }, increment: { n: 2 } }, 1_000)).toMatchObject({ ok: true, value: { data: { n: 3 } } });
  });

  it('guards a missing key as 0, as an increment counts it: a guard above 0 fails, one at 0 holds', () => {
    expect(applyOperation(ctx({}), { patch: { a: 1 }, min: { credits: 10 } }, 1_000)).toMatchObject({ ok: false, code: 'guard_failed', details: { key: 'credits', value: 0, min: 10 } });
    expect(applyOperation(ctx({}), { patch: { a: 1 }, min: { credits: 0 } }, 1_000)).toMatchObject({ ok: true, value: { data: { a: 1 } } });
    // The guard reads the key; it does not write it.
    expect(applyOperation(ctx({}), { patch: { a: 1 }, min: { credits: -5 } }, 1_000)).toEqual({ ok: true, value: { data: { a: 1 }, version: 4 } });
  });

  it('refuses a stale ifVersion, a non-number increment, a broken guard and an oversized result', () => {
    expect(applyOperation(ctx({}), { patch: { a: 1 }, ifVersion: 2 }, 1_000)).toMatchObject({ ok: false, code: 'version_mismatch', details: { version: 3 } });
    expect(applyOperation(ctx({ n: 'x' }), { increment: { n: 1 } }, 1_000)).toMatchObject({ ok: false, code: 'invalid_request' });
    expect(applyOperation(ctx({ balance: 20 }), { increment: { balance: -30 }, min: { balance: 0 } }, 1_000)).toMatchObject({ ok: false, code: 'guard_failed', details: { key: 'balance', value: -10, min: 0 } });
    expect(applyOperation(ctx({ balance: 20 }), { increment: { balance: -20 }, min: { balance: 0 } }, 1_000)).toMatchObject({ ok: true });
    expect(applyOperation(ctx({ s: 'x' }), { patch: { a: 1 }, min: { s: 0 } }, 1_000)).toMatchObject({ ok: false, code: 'invalid_request' });
    expect(applyOperation(ctx({}), { patch: { big: 'x'.repeat(100) } }, 50)).toMatchObject({ ok: false, code: 'payload_too_large' });
    expect(applyOperation(ctx({ n: Number.MAX_VALUE }), { increment: { n: Number.MAX_VALUE } }, 1_000)).toMatchObject({ ok: false, code: 'invalid_request' });
    // Results beyond 2^53 - 1 would be rounded; right at the edge they are still exact.
    expect(applyOperation(ctx({ n: Number.MAX_SAFE_INTEGER }), { increment: { n: 1 } }, 1_000)).toMatchObject({ ok: false, code: 'invalid_request', details: { key: 'n' } });
    expect(applyOperation(ctx({ n: -Number.MAX_SAFE_INTEGER }), { increment: { n: -1 } }, 1_000)).toMatchObject({ ok: false, code: 'invalid_request' });
    expect(applyOperation(ctx({ n: Number.MAX_SAFE_INTEGER - 1 }), { increment: { n: 1 } }, 1_000)).toMatchObject({ ok: true, value: { data: { n: Number.MAX_SAFE_INTEGER } } });
  });

  it('refuses an increment whose result is not the exact decimal sum, and applies one that is', () => {
    const add = (value: number, delta: number) => applyOperation(ctx({ n: value }), { increment: { n: delta } }, 1_000);
    // No double holds the sum: 100 - 1e-20 is 100, 0.1 + 1e-17 is 0.1, a subnormal vanishes into 100.
    for (const [value, delta] of [[100, -1e-20], [0.1, 1e-17], [100, 1e-320], [100, 5e-324], [2 ** 52 + 1, 0.5], [1.2345678901234567, 1e-16]] as const) {
      expect(add(value, delta), `${value} + ${delta}`).toMatchObject({ ok: false, code: 'invalid_request', details: { key: 'n', value, increment: delta } });
    }
    // Summed as JSON writes them (0.2 + 0.1 is 0.30000000000000004 in binary, 0.3 in decimal), and integers.
    for (const [value, delta, sum] of [[0.2, 0.1, 0.3], [30.2, 0.05, 30.25], [1, 0.1, 1.1], [0.7, 0.1, 0.8], [19.99, -0.01, 19.98], [-0.1, 0.1, 0], [0.5, 0.25, 0.75], [0, 1e-320, 1e-320], [7, -0, 7], [-5, 5, 0], [Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, 0]] as const) {
      expect(add(value, delta), `${value} + ${delta}`).toEqual({ ok: true, value: { data: { n: sum }, version: 4 } });
    }
  });

  it('treats "__proto__" as data and never mutates the current context', () => {
    const current = ctx({ balance: 1 });
    const result = applyOperation(current, { increment: { ['__proto__']: 1, balance: 1 } }, 1_000);
    expect(result.ok && Object.hasOwn(result.value.data, '__proto__')).toBe(true);
    expect(current.data).toEqual({ balance: 1 });
  });
});
