/**
 * "Did you mean": the names a mistyped one most likely stands for. A leaf (no
 * imports), for anything that refuses an unknown name: createNode's options today.
 *
 * Names are compared without case or separators, so `max-memory-bytes` and
 * `MaxMemoryBytes` are `maxMemoryBytes`. Then, in order, the first rule that finds
 * anything wins:
 * 1. the same name: a different spelling of case or separators;
 * 2. a name it starts, or that starts it: a unit left off (`maxMemory` for
 *    `maxMemoryBytes`, `tombstoneTtl` for `tombstoneTtlMs`) or added;
 * 3. a typo: at most one edit per four characters (optimal string alignment
 *    distance: an insertion, deletion, substitution or swap of neighbours is one);
 * 4. a name it is part of, for a word of four or more characters (`secret` for
 *    `clusterSecret`).
 * Within a rule the closest lengths come first; at most three are offered.
 */
export function closestNames(given: string, names: readonly string[]): string[] {
  const g = fold(given);
  if (g.length === 0) return [];
  const folded = names.map((name) => ({ name, f: fold(name) }));
  const rules: ((f: string) => boolean)[] = [
    (f) => f === g,
    (f) => g.length >= 3 && (f.startsWith(g) || g.startsWith(f)),
    (f) => editDistance(f, g) <= Math.max(1, Math.floor(g.length / 4)),
    (f) => g.length >= 4 && f.includes(g),
  ];
  for (const rule of rules) {
    const found = folded.filter((n) => rule(n.f));
    if (found.length > 0) {
      return found
        .sort((a, b) => Math.abs(a.f.length - g.length) - Math.abs(b.f.length - g.length))
        .slice(0, 3)
        .map((n) => n.name);
    }
  }
  return [];
}

/** ` (did you mean "x"?)`, ` (did you mean "x" or "y"?)`, or "" when nothing is close. */
export function didYouMean(given: string, names: readonly string[]): string {
  const close = closestNames(given, names).map((n) => `"${n}"`);
  if (close.length === 0) return "";
  const list = close.length === 1 ? close[0] : `${close.slice(0, -1).join(", ")} or ${close[close.length - 1]}`;
  return `; did you mean ${list}?`;
}

const fold = (s: string): string => s.toLowerCase().replace(/[-_\s]/g, "");

/** Optimal string alignment distance (Damerau-Levenshtein without repeated edits of one substring). */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[(i - 1) * cols + j]! + 1, d[i * cols + j - 1]! + 1, d[(i - 1) * cols + j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[(i - 2) * cols + j - 2]! + 1);
      d[i * cols + j] = v;
    }
  }
  return d[rows * cols - 1]!;
}
