import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { tempDirs } from "../support/cleanup.ts";
import { run } from "../support/proc.ts";
import { stallingServer } from "../support/stalling-server.ts";

/** The flags every client command takes to reach a node (--token, --timeout), through the real CLI. */

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const tempDir = tempDirs("makhzen-connection-");
const cli = (args: string[], opts: Parameters<typeof run>[1] = {}) => run([process.execPath, MAIN, ...args], { timeoutMs: 15_000, ...opts });

describe("a hung node: every client command gives up after --timeout, exit 1, one line", () => {
  test("dump, dump --local and load as get does; a dump that stalls mid-body names the node and the stall", async () => {
    await using silent = await stallingServer("silent");
    await using deaf = await stallingServer("deaf");
    await using midway = await stallingServer("stall-mid-body");
    const file = join(tempDir(), "in.ndjson");
    writeFileSync(file, '{"bucket":"default","key":"k","value":"v","version":"001700000000000-000000-x"}\n');
    const cases: [string[], string, Parameters<typeof run>[1]?][] = [
      [["get", "k", "--url", silent.url], `cannot reach ${silent.url}: no answer within 300 ms`],
      [["dump", "--url", silent.url], `cannot reach ${silent.url}: no answer within 300 ms`],
      [["dump", "--local", "--url", silent.url], `cannot reach ${silent.url}: no answer within 300 ms`],
      [["load", "--url", deaf.url], `cannot reach ${deaf.url}: no answer within 300 ms`, { stdin: Bun.file(file) }],
      [["dump", "--url", midway.url], `${midway.url} stalled mid-dump: it sent no data for 300 ms`],
    ];
    for (const [args, message, opts] of cases) {
      const start = performance.now();
      const r = await cli([...args, "--timeout", "300ms"], opts);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 1, stderr: `makhzen: ${message}\n` });
      expect(performance.now() - start).toBeLessThan(8000);
    }
  }, 60_000);

  test("--timeout and MAKHZEN_TIMEOUT take a duration; anything else is a usage error naming it", async () => {
    await using silent = await stallingServer("silent");
    const env = await cli(["ls", "--url", silent.url], { env: { MAKHZEN_TIMEOUT: "250ms" } });
    expect([env.code, env.stderr]).toEqual([1, `makhzen: cannot reach ${silent.url}: no answer within 250 ms\n`]);
    for (const [args, env, named] of [
      [["--timeout", "5"], {}, '--timeout must be a duration with a unit, like 500ms, 30s, 10m or 24h, not "5"'],
      [["--timeout", "25h"], {}, "--timeout must be from 1ms to 24h, not 25h"],
      [[], { MAKHZEN_TIMEOUT: "soon" }, 'MAKHZEN_TIMEOUT must be a duration with a unit, like 500ms, 30s, 10m or 24h, not "soon"'],
    ] as const) {
      const r = await cli(["get", "k", "--url", silent.url, ...args], { env });
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 2, stderr: `makhzen: ${named}\n` });
    }
  });
});

test("a --token (or MAKHZEN_TOKEN) a header cannot carry is a usage error naming it, exit 2, before any request", async () => {
  await using silent = await stallingServer("silent");
  for (const [args, env, named] of [
    [["--token", "a\nb"], {}, "--token"],
    [["--token", "two words"], {}, "--token"],
    [[], { MAKHZEN_TOKEN: "a\nb" }, "MAKHZEN_TOKEN"],
  ] as const) {
    for (const cmd of [["get", "k"], ["dump"], ["status"]]) {
      const r = await cli([...cmd, "--url", silent.url, ...args], { env });
      expect({ cmd, args, code: r.code, stderr: r.stderr }).toEqual({ cmd, args, code: 2, stderr: `makhzen: ${named} must be visible ASCII characters without spaces\n` });
    }
  }
});

test("put refuses a VALUE whose bytes were not UTF-8 on the command line (they arrive as U+FFFD), pointing to stdin", async () => {
  // `makhzen put k $'\xff\xfeA'` printed OK and stored U+FFFD U+FFFD A: an acknowledged value nobody sent.
  const bash = Bun.which("bash");
  if (!bash) throw new Error("this test needs bash to pass bytes that are not UTF-8 as an argument");
  const r = await run([bash, "-c", `exec '${process.execPath}' '${MAIN}' put k $'\\xff\\xfeA' --url http://127.0.0.1:9`], { timeoutMs: 15_000 });
  expect(r.code).toBe(2);
  expect(r.stderr).toStartWith("makhzen: VALUE holds U+FFFD, what a byte that is not UTF-8 becomes on the command line");
});
