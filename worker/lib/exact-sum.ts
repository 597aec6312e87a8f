/**
 * Whether `sum` (the double `a + b` produced) is exactly the sum of `a` and `b` as JSON writes
 * them: the shortest decimal that reads back as the same number, which is all a client ever
 * sees of a stored value. A double sum rounds whenever the exact one has no double of its
 * own (100 + 1e-20 gives 100, 0.2 + 0.1 gives 0.30000000000000004), and a transfer that
 * rounded one side would create or lose units. Decimal rather than binary exactness, so that
 * 30.2 + 0.05 = 30.25 (rounded in binary, exact as written) keeps working for decimal amounts.
 */
export function sumIsExact(a: number, b: number, sum: number): boolean {
  // Integers below 2^53 add exactly: the common case needs no decimal arithmetic.
  if (Number.isSafeInteger(a) && Number.isSafeInteger(b) && Number.isSafeInteger(sum)) return true;
  const [x, y, s] = [decimal(a), decimal(b), decimal(sum)];
  if (!x || !y || !s) return false;
  const exponent = Math.min(x.exponent, y.exponent, s.exponent);
  const scaled = (d: Decimal) => d.digits * 10n ** BigInt(d.exponent - exponent);
  return scaled(x) + scaled(y) === scaled(s);
}

interface Decimal {
  digits: bigint;
  exponent: number;
}

/** `digits × 10^exponent`, read from the number's shortest decimal (`String(x)`); null if not finite. */
function decimal(x: number): Decimal | null {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(x));
  if (!match) return null;
  const [, sign = '', whole = '', fraction = '', exponent = '0'] = match;
  return { digits: BigInt(sign + whole + fraction), exponent: Number(exponent) - fraction.length };
}
