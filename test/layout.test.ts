/**
 * The layout's rules, checked on every import in src/ (issue 9): imports run one
 * way, from the core up to the front ends and the node, so a module can be read
 * knowing only what is below it, and the core and the cluster never see a front end.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(import.meta.dir, "../src");

/** Modules anyone may import: they import nothing of ours above them. */
const LEAVES = new Set(["errors.ts", "meta.ts", "ops/log.ts", "ops/log-limiter.ts", "ops/suggest.ts", "ops/urls.ts"]);

/**
 * Each family's rank: a module imports only from lower ranks, from its own family,
 * or from a leaf. cluster/ and storage/ share a rank, so neither imports the other.
 */
const RANKS: [prefix: string, rank: number][] = [
  ["core/", 0],
  ["cluster/", 1],
  ["storage/", 1],
  ["ops/", 2],
  ["config.ts", 1.5],
  ["create-core.ts", 3],
  // The service's own parts (its options, the load of a dump): below it, above what they use.
  ["service-", 2.5],
  ["service", 3],
  ["http/", 4],
  ["resp/", 4],
  ["client/", 4],
  ["embedded.ts", 4.5],
  ["node.ts", 5],
  ["cli/", 6],
  ["index.ts", 7],
];

/** Packages that belong to front ends and operations, never below them. */
const FRONT_END_PACKAGES = ["elysia", "@elysiajs/", "citty", "prom-client"];
const NO_FRONT_ENDS = ["core/", "cluster/", "storage/", "service"];

const MAX_LINES = 400;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

const family = (file: string): string => (file.includes("/") ? file.slice(0, file.indexOf("/") + 1) : file);
function rank(file: string): number {
  const hit = RANKS.find(([prefix]) => file.startsWith(prefix));
  if (!hit) throw new Error(`src/${file} has no rank in test/layout.test.ts: add its family to RANKS`);
  return hit[1];
}

const files = sourceFiles(SRC).map((f) => relative(SRC, f));
/**
 * Every module a source text names: `import … from`, `export … from`, a bare
 * `import "x"`, `import("x")` (quotes or backticks) and `require("x")`. Reads text,
 * so a `from "x"` inside a comment counts too: stricter, never looser.
 */
function specifiersIn(text: string): string[] {
  const pattern = /\b(?:import|export)\b[^;]*?\bfrom\s*["'`]([^"'`]+)["'`]|\bimport\s*["']([^"']+)["']|\b(?:import|require)\s*\(\s*["'`]([^"'`]+)["'`]\s*\)/g;
  return [...text.matchAll(pattern)].map((m) => (m[1] ?? m[2] ?? m[3])!);
}

const imports = files.flatMap((from) => specifiersIn(readFileSync(join(SRC, from), "utf8")).map((spec) => ({ from, spec })));

/** The imports that run the wrong way, as "src/a imports src/b". */
function backwards(list: { from: string; spec: string }[]): string[] {
  const wrong: string[] = [];
  for (const { from, spec } of list) {
    if (!spec.startsWith(".")) continue;
    const to = relative(SRC, resolve(SRC, dirname(from), spec));
    if (to.startsWith("..")) continue; // package.json (meta.ts)
    if (LEAVES.has(to) || family(to) === family(from)) continue;
    if (rank(to) >= rank(from)) wrong.push(`src/${from} imports src/${to}`);
  }
  return wrong;
}

describe("layout", () => {
  test("imports run one way: core, then cluster and storage, then service, then front ends and the node", () => {
    expect(backwards(imports)).toEqual([]);
  });

  test("the rule catches an import that runs back up, and lets leaves and the own family through", () => {
    const made = [
      { from: "core/items.ts", spec: "../config.ts" },
      { from: "cluster/protocol/http-transport.ts", spec: "../../http/errors.ts" },
      { from: "storage/persistence.ts", spec: "../cluster/digest.ts" },
      { from: "core/store.ts", spec: "./record.ts" },
      { from: "cluster/replicator.ts", spec: "../ops/log.ts" },
      { from: "http/app.ts", spec: "../service.ts" },
    ];
    expect(backwards(made)).toEqual([
      "src/core/items.ts imports src/config.ts",
      "src/cluster/protocol/http-transport.ts imports src/http/errors.ts",
      "src/storage/persistence.ts imports src/cluster/digest.ts",
    ]);
  });

  test("the core, the cluster, storage and the service never import a front end's or operations' package", () => {
    const wrong = imports
      .filter(({ from, spec }) => NO_FRONT_ENDS.some((p) => from.startsWith(p)) && FRONT_END_PACKAGES.some((p) => spec === p || spec.startsWith(p.endsWith("/") ? p : `${p}/`)))
      .map(({ from, spec }) => `src/${from} imports ${spec}`);
    expect(wrong).toEqual([]);
  });

  test(`no source file is over ${MAX_LINES} lines`, () => {
    const long = files
      .map((f) => ({ f, lines: readFileSync(join(SRC, f), "utf8").replace(/\n$/, "").split("\n").length }))
      .filter(({ lines }) => lines > MAX_LINES)
      .map(({ f, lines }) => `src/${f}: ${lines}`);
    expect(long).toEqual([]);
  });

  test("the scanner finds every form of import", () => {
    const text = [
      'import { a } from "./a.ts";',
      'import type { B } from "./b.ts";',
      'export * from "./c.ts";',
      'import "./d.ts";',
      "const e = await import(`./e.ts`);",
      'const f = require("./f.ts");',
      'const x = 1; import { g } from "./g.ts";',
      "import {\n  h, // the h\n  i,\n} from './h.ts';",
    ].join("\n");
    expect(specifiersIn(text)).toEqual(["./a.ts", "./b.ts", "./c.ts", "./d.ts", "./e.ts", "./f.ts", "./g.ts", "./h.ts"]);
  });

  test("the checker sees the imports it checks (a rule over nothing would pass)", () => {
    expect(imports.length).toBeGreaterThan(100);
    expect(imports.some(({ from, spec }) => from === "node.ts" && spec.includes("cluster/"))).toBe(true);
  });
});
