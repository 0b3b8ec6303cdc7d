/**
 * What a command prints reaches a pipe whole before the process exits. Writes into
 * a pipe complete later, and the CLI exits once the command returns: without
 * awaiting them (src/cli/_output.ts) the tail of a long `makhzen ls` was dropped
 * whenever the reader fell behind (seen under load in CI).
 */
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { createNode } from "../../src/index.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { cleanEnv } from "../support/proc.ts";

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const track = closeAfterEach();

test("makhzen ls prints every key into a pipe whose reader is slow, before it exits", async () => {
  const node = track(createNode({ name: "out", port: 0 }), (n) => n.close());
  const { url } = await node.listen();
  // Pages of 1000 keys of ~200 bytes: each page is ~200 KB, several pipe buffers.
  const keys = Array.from({ length: 3000 }, (_, i) => `key-${String(i).padStart(6, "0")}-${"x".repeat(190)}`);
  for (const k of keys) node.bucket().set(k, "v");
  const proc = Bun.spawn([process.execPath, MAIN, "ls", "--url", url], { stdout: "pipe", stderr: "pipe", env: cleanEnv() });
  const killer = setTimeout(() => proc.kill(), 60_000);
  try {
    // The reader starts late: the fault a loaded machine injects (the delay is the fault, not a wait for a state).
    await Bun.sleep(1000);
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toBe(keys.map((k) => `${k}\n`).join(""));
  } finally {
    clearTimeout(killer);
  }
}, 60_000);

/** Runs `script` under bash with MAIN as $1 and returns what it printed and its status. */
async function bash(script: string) {
  const proc = Bun.spawn(["bash", "-c", script, "bash", `${process.execPath} ${MAIN}`], { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: cleanEnv() });
  const killer = setTimeout(() => proc.kill(), 20_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(killer);
  return { stdout, stderr, code };
}

test("a reader that goes away, a full disk, stdin a directory: one line or none, never a stack", async () => {
  const node = track(createNode({ name: "out2", port: 0 }), (n) => n.close());
  const { url } = await node.listen();
  for (let i = 0; i < 3000; i++) node.bucket().set(`key-${i}-${"x".repeat(100)}`, "v");
  // `head` closes the pipe after one line: the rest of the dump has no reader (EPIPE). Silent, status 141, as `cat | head`.
  const closed = await bash(`$1 dump --url ${url} | head -1 >/dev/null; echo "status \${PIPESTATUS[0]}"`);
  expect(closed).toEqual({ stdout: "status 141\n", stderr: "", code: 0 });
  const full = await bash(`$1 get key-1-${"x".repeat(100)} --url ${url} > /dev/full`);
  expect(full).toEqual({ stdout: "", stderr: "makhzen: cannot write its output: no space left on device (ENOSPC)\n", code: 1 });
  const dir = await bash(`$1 put k - --url ${url} < /tmp`);
  expect(dir.code).toBe(1);
  expect(dir.stderr).toMatch(/^makhzen: cannot read its input: .+ \(EISDIR\)\n$/);
  expect(node.bucket().get("k")).toBeUndefined();
  // load looks at stdin before reading it (fstat): the same one line.
  const load = await bash(`$1 load --url ${url} < /tmp`);
  expect(load.code).toBe(1);
  expect(load.stderr).toMatch(/^makhzen: cannot read its input: .+ \(EISDIR\)\n$/);
});
