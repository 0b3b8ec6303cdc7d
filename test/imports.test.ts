import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/**
 * Imports run one way: core, then cluster and storage, then the service, then the
 * front ends (http/, cli/, client/) and node.ts. A lower family that imports a
 * higher one (the core reading the node's config, the cluster reaching into HTTP
 * or storage) fails here, naming the file and the import.
 */

const SRC = resolve(import.meta.dir, "../src");

const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );

/** What a file imports: paths under src/ for relative imports, package names otherwise. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^"';]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)/g)].map((m) => (m[1] ?? m[2])!);
  return specs.map((s) => (s.startsWith(".") ? relative(SRC, resolve(dirname(file), s)) : s));
}

const FRONT_ENDS_AND_ABOVE = ["config.ts", "node.ts", "index.ts", "create-core.ts", "service", "http/", "cli/", "client/", "ops/metrics.ts", "ops/request-stats.ts"];
const PACKAGES = ["elysia", "citty", "prom-client", "@elysiajs/"];

const RULES: { family: string; mayNot: string[] }[] = [
  { family: "core/", mayNot: [...FRONT_ENDS_AND_ABOVE, "cluster/", "storage/"] },
  { family: "cluster/", mayNot: [...FRONT_ENDS_AND_ABOVE, "storage/"] },
  { family: "storage/", mayNot: [...FRONT_ENDS_AND_ABOVE, "cluster/"] },
];

describe("import direction", () => {
  for (const { family, mayNot } of RULES) {
    test(`nothing in src/${family} imports ${mayNot.join(", ")} or ${PACKAGES.join(", ")}`, () => {
      const wrong: string[] = [];
      for (const file of files(join(SRC, family))) {
        for (const target of importsOf(file)) {
          const bad = mayNot.some((m) => target === m || target.startsWith(m)) || PACKAGES.some((p) => target === p || target.startsWith(p));
          if (bad) wrong.push(`${relative(SRC, file)} imports ${target}`);
        }
      }
      expect(wrong).toEqual([]);
    });
  }

  test("the scan sees imports (a rule that finds nothing to check cannot fail)", () => {
    expect(importsOf(join(SRC, "cluster/cluster.ts"))).toContain("core/record.ts");
    expect(importsOf(join(SRC, "http/app.ts"))).toContain("elysia");
    expect(importsOf(join(SRC, "node.ts"))).toContain("config.ts");
  });
});
