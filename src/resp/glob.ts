/**
 * Redis's glob patterns (KEYS, SCAN MATCH, CONFIG GET): `*`, `?`, `[abc]`, `[^a]`,
 * `[a-z]`, and `\` to take the next character as itself.
 *
 * Redis matches by recursion, which a pattern like `*a*a*a*a*b` drives into
 * exponential time; this matcher keeps one backtrack point (the last `*`) and is
 * O(pattern × key) at worst, so no pattern a client sends can stall the node.
 * It compares UTF-16 code units: a non-ASCII character matches itself and a `?`
 * may match half of a surrogate pair, a difference only astral characters see.
 */
export function globMatch(pattern: string, s: string, nocase = false): boolean {
  if (nocase) {
    pattern = pattern.toLowerCase();
    s = s.toLowerCase();
  }
  let p = 0;
  let i = 0;
  let starP = -1;
  let starI = 0;
  while (i < s.length) {
    if (p < pattern.length) {
      const c = pattern[p]!;
      if (c === "*") {
        starP = p++;
        starI = i;
        continue;
      }
      const step = matchOne(pattern, p, s[i]!);
      if (step > 0) {
        p += step;
        i++;
        continue;
      }
    }
    if (starP < 0) return false;
    p = starP + 1;
    i = ++starI;
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

/** Whether the pattern element at `p` matches `ch`: its length in the pattern, or 0 when it does not. */
function matchOne(pattern: string, p: number, ch: string): number {
  const c = pattern[p]!;
  if (c === "?") return 1;
  if (c === "\\" && p + 1 < pattern.length) return pattern[p + 1] === ch ? 2 : 0;
  if (c !== "[") return c === ch ? 1 : 0;
  let q = p + 1;
  const negate = pattern[q] === "^";
  if (negate) q++;
  let hit = false;
  // As Redis, an unclosed class runs to the end of the pattern.
  while (q < pattern.length && pattern[q] !== "]") {
    if (pattern[q] === "\\" && q + 1 < pattern.length) {
      if (pattern[q + 1] === ch) hit = true;
      q += 2;
    } else if (pattern[q + 1] === "-" && q + 2 < pattern.length) {
      // As Redis's stringmatchlen, even when the range's end is `]`: `[cb-]` is `c` and `]`..`b`, and the class runs on.
      let lo = pattern[q]!;
      let hi = pattern[q + 2]!;
      if (lo > hi) [lo, hi] = [hi, lo];
      if (ch >= lo && ch <= hi) hit = true;
      q += 3;
    } else {
      if (pattern[q] === ch) hit = true;
      q++;
    }
  }
  if (negate) hit = !hit;
  return hit ? Math.min(q + 1, pattern.length) - p || 1 : 0;
}

/** The literal start of a pattern (up to its first special character): keys outside it cannot match. */
export function literalPrefix(pattern: string): string {
  const m = /^[^*?[\\]*/.exec(pattern);
  return m ? m[0] : "";
}
