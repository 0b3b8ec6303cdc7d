/**
 * Two 32-bit hash lanes fed one 32-bit word at a time: how fingerprint.ts builds
 * 64-bit hashes without a BigInt. Each lane is MurmurHash3's block step, with its
 * own constants and start. A step is a bijection of the lane for a given word, and
 * of the word for a given lane, so two runs of the same number of words that
 * differ in one word always end different in both halves; runs that differ more
 * collide at ~2^-32 per half, and in both halves together at ~2^-64.
 *
 * The state is the module's (no object per hash): a run is `begin`, `word`s and
 * `finish`, with no other run in between (nothing here awaits or calls out).
 */
let lane1 = 0;
let lane2 = 0;

/** A 64-bit hash as two unsigned 32-bit halves. */
export interface Halves {
  lo: number;
  hi: number;
}

const rotl = (x: number, r: number): number => (x << r) | (x >>> (32 - r));

export function begin(start1: number, start2: number): void {
  lane1 = start1 | 0;
  lane2 = start2 | 0;
}

export function word(k: number): void {
  let a = Math.imul(rotl(Math.imul(k, 0xcc9e2d51), 15), 0x1b873593);
  lane1 = (Math.imul(rotl(lane1 ^ a, 13), 5) + 0xe6546b64) | 0;
  a = Math.imul(rotl(Math.imul(k, 0x38b34ae5), 16), 0xa1e38b93);
  lane2 = (Math.imul(rotl(lane2 ^ a, 17), 5) + 0x0bcaa747) | 0;
}

const fmix = (h: number): number => {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
};

/** Ends a run into `out`: each lane finished, then each added into the other (a bijection of the pair). */
export function finish(out: Halves): Halves {
  const a = fmix(lane1);
  const b = fmix(lane2);
  out.lo = (a + b) >>> 0;
  out.hi = (a + b + b) >>> 0;
  return out;
}

/** Feeds a string's UTF-16 code units, two to a word, then its length (a lone surrogate is itself, not U+FFFD as in UTF-8). */
export function chars(s: string): void {
  const n = s.length;
  let i = 0;
  for (; i + 1 < n; i += 2) word(s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16));
  if (i < n) word(s.charCodeAt(i));
  word(n);
}

/** A string's 64-bit hash, from its code units, into `out`. */
export function hashChars(s: string, out: Halves): Halves {
  begin(0x2545f491, 0x6a09e667);
  chars(s);
  return finish(out);
}
