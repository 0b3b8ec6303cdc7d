import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CLIENT_VARIABLE_FLAGS } from "../../src/cli/_connection.ts";
import { checkVariables, envName } from "../../src/cli/_flags.ts";
import { SERVE_FLAGS } from "../../src/cli/serve-flags.ts";

const known = new Set(["MAKHZEN_PORT", "MAKHZEN_URL", "MAKHZEN_MAX_MEMORY"]);

describe("checkVariables", () => {
  test("lets known and foreign variables through", () => {
    expect(() => checkVariables(known, { MAKHZEN_PORT: "1", MAKHZEN_URL: "x", PATH: "/bin", MAKHZENPORT: "1" })).not.toThrow();
  });

  test("refuses an unknown MAKHZEN_* variable, with the nearest names", () => {
    expect(() => checkVariables(known, { MAKHZEN_PROT: "1" })).toThrow("MAKHZEN_PROT is not a makhzen setting (did you mean MAKHZEN_PORT?)");
    expect(() => checkVariables(known, { MAKHZEN_MAX_MEM: "1" })).toThrow("(did you mean MAKHZEN_MAX_MEMORY?)");
    expect(() => checkVariables(known, { MAKHZEN_ZZZZZZ: "1" })).toThrow(/^MAKHZEN_ZZZZZZ is not a makhzen setting; unset it/);
    // An empty value is still a setting someone wrote.
    expect(() => checkVariables(known, { MAKHZEN_: "" })).toThrow("MAKHZEN_ is not a makhzen setting");
  });
});

describe("the variables the CLI accepts are the ones it reads", () => {
  test("every flagFrom(args, \"name\") in src/cli is a serve flag or in CLIENT_VARIABLE_FLAGS", () => {
    // A client flag given a MAKHZEN_* fallback without a line in CLIENT_VARIABLE_FLAGS
    // would have its variable refused as unknown; one listed but never read, accepted and ignored.
    const dir = join(import.meta.dir, "../../src/cli");
    const read = new Set<string>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
      for (const m of readFileSync(join(dir, file), "utf8").matchAll(/flagFrom\(args, "([a-z-]+)"\)/g)) read.add(m[1]!);
    }
    expect([...read].sort()).toEqual([...CLIENT_VARIABLE_FLAGS].sort());
    // serve reads its own through readFlag, one variable per row of its table.
    expect(SERVE_FLAGS.every((f) => f.env === envName(f.name))).toBe(true);
  });
});
