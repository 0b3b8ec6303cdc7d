/**
 * KEYS / SCAN MATCH patterns match as redis-server's stringmatchlen does, checked
 * against a line-by-line port of it (Redis 7.0, util.c) on random patterns and
 * keys over the characters that mean something in a pattern. The port recurses
 * at every `*` (exponential on some patterns), so it is a reference for short
 * ones only; globMatch keeps one backtrack point instead.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { globMatch } from "../../src/resp/glob.ts";

/** Redis 7.0's stringmatchlen_impl without nocase; `p[i]` past the end reads as "" where C reads the NUL. */
function redisMatch(p: string, s: string): boolean {
  const at = (i: number) => p[i] ?? "";
  const rec = (pi: number, si: number): boolean => {
    let pl = p.length - pi;
    let sl = s.length - si;
    while (pl > 0 && sl > 0) {
      switch (p[pi]) {
        case "*":
          while (pl > 0 && at(pi + 1) === "*") {
            pi++;
            pl--;
          }
          if (pl === 1) return true;
          while (sl > 0) {
            if (rec(pi + 1, si)) return true;
            si++;
            sl--;
          }
          return false;
        case "?":
          si++;
          sl--;
          break;
        case "[": {
          pi++;
          pl--;
          const not = at(pi) === "^";
          if (not) {
            pi++;
            pl--;
          }
          let match = false;
          for (;;) {
            if (at(pi) === "\\" && pl >= 2) {
              pi++;
              pl--;
              if (at(pi) === s[si]) match = true;
            } else if (at(pi) === "]") {
              break;
            } else if (pl === 0) {
              pi--;
              pl++;
              break;
            } else if (pl >= 3 && at(pi + 1) === "-") {
              let start = at(pi);
              let end = at(pi + 2);
              if (start > end) [start, end] = [end, start];
              pi += 2;
              pl -= 2;
              if (s[si]! >= start && s[si]! <= end) match = true;
            } else if (at(pi) === s[si]) {
              match = true;
            }
            pi++;
            pl--;
          }
          if (not) match = !match;
          if (!match) return false;
          si++;
          sl--;
          break;
        }
        default:
          // A `\` takes the next character as itself, compared as any other.
          if (p[pi] === "\\" && pl >= 2) {
            pi++;
            pl--;
          }
          if (at(pi) !== s[si]) return false;
          si++;
          sl--;
      }
      pi++;
      pl--;
      if (sl === 0) {
        while (at(pi) === "*") {
          pi++;
          pl--;
        }
        break;
      }
    }
    return pl === 0 && sl === 0;
  };
  return rec(0, 0);
}

describe("glob patterns", () => {
  test("match as redis-server's stringmatchlen", () => {
    // The cases an adversarial check found, with what redis-server 7.0.15 answered.
    const keys = ["a", "-x", "b", "bx", "]x", "cx"];
    expect(keys.filter((k) => globMatch("[cb-]?", k))).toEqual(["a", "b"]);
    expect(keys.filter((k) => globMatch("[cb-]", k))).toEqual(["a", "b"]);
    expect(keys.filter((k) => globMatch("[-]?", k))).toEqual(["-x"]);
    expect(keys.filter((k) => globMatch("[a-]?", k))).toEqual(["a"]);
    const chars = fc.constantFrom("a", "b", "c", "-", "^", "]", "[", "\\", "*", "?");
    fc.assert(
      fc.property(fc.string({ unit: chars, maxLength: 7 }), fc.string({ unit: fc.constantFrom("a", "b", "c", "-", "^", "]", "[", "\\", "*", "?"), minLength: 1, maxLength: 5 }), (pattern, key) => {
        expect(globMatch(pattern, key)).toBe(redisMatch(pattern, key));
      }),
      { numRuns: 20_000 },
    );
  });
});
