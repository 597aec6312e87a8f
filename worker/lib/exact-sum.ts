/**
 * `a + b` computed on the numbers as JSON writes them (the shortest decimal that reads back as
 * the same number, which is all a client ever sees of a stored value), or null when no double
 * is written as that exact decimal sum. A double sum rounds in binary (0.2 + 0.1 gives
 * 0.30000000000000004), so the sum is taken in decimal and read back: 0.2 + 0.1 is 0.3. Null
 * is the case a transfer must refuse, since whatever double it stored would create or lose units
 * (100 + 1e-20 has no double of its own: the nearest is 100).
 */
export function exactSum(a: number, b: number): number | null {
  // Integers below 2^53 add exactly: the common case needs no decimal arithmetic.
  const binary = a + b;
  if (Number.isSafeInteger(a) && Number.isSafeInteger(b) && Number.isSafeInteger(binary)) return binary;
  const [x, y] = [decimal(a), decimal(b)];
  if (!x || !y) return null;
  const exponent = Math.min(x.exponent, y.exponent);
  const digits = scaled(x, exponent) + scaled(y, exponent);
  const sum = Number(`${digits}e${exponent}`);
  // Read back, the double must be written as exactly that sum: a digit below its last, or a
  // different digit, means it is only the nearest double.
  const back = decimal(sum);
  if (!back || back.exponent < exponent) return null;
  return scaled(back, exponent) === digits ? sum : null;
}

interface Decimal {
  digits: bigint;
  exponent: number;
}

function scaled(d: Decimal, exponent: number): bigint {
  return d.digits * 10n ** BigInt(d.exponent - exponent);
}

/** `digits × 10^exponent`, read from the number's shortest decimal (`String(x)`); null if not finite. */
function decimal(x: number): Decimal | null {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(x));
  if (!match) return null;
  const [, sign = '', whole = '', fraction = '', exponent = '0'] = match;
  return { digits: BigInt(sign + whole + fraction), exponent: Number(exponent) - fraction.length };
}
