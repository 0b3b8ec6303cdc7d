/**
 * INCRBYFLOAT's arithmetic. Redis adds in C's long double (64-bit mantissa on
 * x86) and prints the sum with `%.17Lf`, trailing zeros cut, so `0.1 + 0.2` is
 * `0.3`; a JS double would say `0.30000000000000004`. makhzen has no long
 * double, so it adds the two numbers exactly, as decimals (BigInt), and prints
 * the sum as Redis does: 17 digits after the point, rounded half to even,
 * trailing zeros cut. For every sum whose exact value has at most 17 decimals
 * this is Redis's answer; where long double's own rounding shows in Redis's
 * (`1000.1` prints `1000.09999999999999998`; `1e400` prints its binary
 * expansion) makhzen answers the exact decimal (`1000.1`, a 1 and 400 zeros).
 *
 * Input is read as Redis's string2ld reads it (strtold): decimal with an
 * optional exponent, hexadecimal (`0x10`, `0x1p3`), `inf`/`infinity`; no blanks,
 * no `nan`, at most 5119 characters, nothing that overflows or underflows a long
 * double. Infinity parses, and the sum is then refused, as Redis refuses it.
 *
 * A sum past long double's range is an infinity in Redis, refused ("increment
 * would produce NaN or Infinity"), so here too: the exact sum is held to the
 * bound where a long double rounds to infinity (pastLongDouble), and refused
 * beyond it rather than stored as thousands of digits (`1e4932 + 1e4932`).
 */

/** A finite number as m × 10^e, or an infinity. */
export type Decimal = { m: bigint; e: number } | { inf: 1 | -1 };

/** Redis's buffer for a long double's text (MAX_LONG_DOUBLE_CHARS): a longer argument is not a float. */
const MAX_CHARS = 5 * 1024;
/** Long double's range, as powers of ten and of two (about 1.19e4932 down to the smallest subnormal, 3.6e-4951). */
const MAX_E10 = 4932;
const MIN_E10 = -4951;
const MAX_E2 = 16384;
const MIN_E2 = -16445;

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;
const HEX = /^([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?$/;
const INF = /^([+-]?)inf(?:inity)?$/i;

/** `s` as strtold would read all of it, or undefined when Redis would answer "not a valid float". */
export function parseDecimal(s: string): Decimal | undefined {
  if (s.length === 0 || s.length >= MAX_CHARS) return undefined;
  const inf = INF.exec(s);
  if (inf) return { inf: inf[1] === "-" ? -1 : 1 };
  const hex = HEX.exec(s);
  if (hex) return fromHex(hex[1] === "-", hex[2]!, hex[3] ?? "", hex[4]);
  const dec = DECIMAL.exec(s);
  if (!dec) return undefined;
  const [, sign, int = "", frac = "", exp] = dec;
  if (int === "" && frac === "") return undefined; // "", ".", "e5"
  const digits = (int + frac).replace(/^0+/, "");
  if (digits === "") return { m: 0n, e: 0 };
  // The exponent may be any length of digits: past long double's range it is an overflow or an underflow either way.
  const written = exp === undefined ? 0 : Number(exp);
  const e = written - frac.length;
  const lead = digits.length - 1 + e;
  if (!Number.isFinite(lead) || lead > MAX_E10 || lead < MIN_E10) return undefined;
  const m = BigInt(digits);
  const d = { m: sign === "-" ? -m : m, e };
  // strtold overflows (ERANGE, HUGE_VALL) from half an ulp past LDBL_MAX, within the last power of ten.
  return lead === MAX_E10 && pastLongDouble(d) ? undefined : d;
}

/** 2^16384 - 2^16319: LDBL_MAX ((2^64 - 1) × 2^16320) plus half its ulp, the least magnitude a long double rounds to infinity (to nearest, ties to even: LDBL_MAX's mantissa is odd). */
let overflowAt: bigint | undefined;

/** Whether `d` is past long double's range: a long double would hold it as an infinity. */
export function pastLongDouble(d: { m: bigint; e: number }): boolean {
  if (d.m === 0n) return false;
  const a = d.m < 0n ? -d.m : d.m;
  // Cheap for the usual sum: its leading power of ten decides unless it is 4932.
  const lead = a.toString().length - 1 + d.e;
  if (lead !== MAX_E10) return lead > MAX_E10;
  const bound = (overflowAt ??= (1n << BigInt(MAX_E2)) - (1n << BigInt(MAX_E2 - 65)));
  return d.e >= 0 ? a * 10n ** BigInt(d.e) >= bound : a >= bound * 10n ** BigInt(-d.e);
}

/** A hexadecimal float, mantissa × 2^p, as an exact decimal (2^-k is 5^k × 10^-k). */
function fromHex(negative: boolean, int: string, frac: string, exp: string | undefined): Decimal | undefined {
  if (int === "" && frac === "") return undefined;
  const digits = (int + frac).replace(/^0+/, "");
  if (digits === "") return { m: 0n, e: 0 };
  const p = (exp === undefined ? 0 : Number(exp)) - 4 * frac.length;
  const bits = digits.length * 4 + p;
  if (!Number.isFinite(bits) || bits > MAX_E2 + 4 || bits < MIN_E2) return undefined;
  let m = BigInt(`0x${digits}`);
  if (negative) m = -m;
  const d = p >= 0 ? { m: m << BigInt(p), e: 0 } : { m: m * 5n ** BigInt(-p), e: p };
  return bits >= MAX_E2 && pastLongDouble(d) ? undefined : d;
}

/** a + b, exactly; an infinity when either is one, or when the sum is past long double's range (Redis then refuses the result). */
export function addDecimal(a: Decimal, b: Decimal): Decimal {
  if ("inf" in a) return a;
  if ("inf" in b) return b;
  const e = Math.min(a.e, b.e);
  const sum = { m: a.m * 10n ** BigInt(a.e - e) + b.m * 10n ** BigInt(b.e - e), e };
  return pastLongDouble(sum) ? { inf: sum.m < 0n ? -1 : 1 } : sum;
}

/** As Redis's `%.17Lf` with trailing zeros cut: 17 decimals at most, half to even, `-0` as `0`. */
export function formatDecimal(d: { m: bigint; e: number }): string {
  let { m, e } = d;
  // A zero sum keeps its operands' exponent (1e5 - 1e5 is 0 × 10^5): it is "0", not "000000".
  if (m === 0n) return "0";
  if (e < -17) {
    const div = 10n ** BigInt(-17 - e);
    let q = m / div;
    const r = m % div;
    const twice = (r < 0n ? -r : r) * 2n;
    if (twice > div || (twice === div && q % 2n !== 0n)) q += m < 0n ? -1n : 1n;
    m = q;
    e = -17;
  }
  const negative = m < 0n;
  let digits = (negative ? -m : m).toString();
  if (e >= 0) digits += "0".repeat(e);
  else {
    digits = digits.padStart(-e + 1, "0");
    digits = `${digits.slice(0, e)}.${digits.slice(e)}`.replace(/0+$/, "").replace(/\.$/, "");
  }
  return negative && /[1-9]/.test(digits) ? `-${digits}` : digits;
}
