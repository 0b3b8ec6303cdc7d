/**
 * The release artifact end to end: compile the linux binary with the real build
 * script, start it as a node, and drive it with its own CLI commands.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TARGETS, build, type TargetName } from "../../scripts/build.ts";
import { run, startNode, type NodeProcess } from "../support/proc.ts";

const hostTarget = `${process.platform === "win32" ? "windows" : process.platform}-${process.arch}` as TargetName;
if (!(hostTarget in TARGETS)) throw new Error(`no release target for this host (${hostTarget})`);

describe("compiled binary", () => {
  let dir: string;
  let bin: string;
  let node: NodeProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "makhzen-bin-"));
    bin = await build(hostTarget, dir);
    node = await startNode([bin, "serve", "--port", "0"]);
  }, 120_000);

  // One node for the whole file (building the binary is the slow part); afterAll runs
  // whatever the tests did, so a failure leaks no process.
  afterAll(async () => {
    await node?.kill9();
    rmSync(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => run([bin, ...args, "--url", node.url]);

  test("serves PUT and GET over HTTP", async () => {
    const put = await fetch(`${node.url}/items/hello`, { method: "PUT", body: JSON.stringify({ value: "world" }) });
    expect(put.status).toBe(200);
    const item = (await put.json()) as { version: string };
    expect(put.headers.get("etag")).toBe(`"${item.version}"`);
    const get = await fetch(`${node.url}/items/hello`);
    expect(await get.json()).toEqual({ key: "hello", value: "world", version: item.version });
    const raw = await fetch(`${node.url}/items/hello`, { headers: { accept: "text/plain" } });
    expect(await raw.text()).toBe("world");
  });

  test("put, get, ls and del through the CLI", async () => {
    expect(await cli("put", "dir/a b", "one")).toMatchObject({ code: 0, stdout: "OK\n" });
    expect(await cli("put", "dir/c", "two", "--ttl", "60")).toMatchObject({ code: 0 });
    expect(await cli("get", "dir/a b")).toMatchObject({ code: 0, stdout: "one\n" });
    const json = await cli("get", "dir/c", "--json");
    expect(json.code).toBe(0);
    const rec = JSON.parse(json.stdout);
    expect(rec).toMatchObject({ key: "dir/c", value: "two" });
    expect(rec.expiresAt).toBeGreaterThan(Date.now());
    expect((await cli("ls", "--prefix", "dir/")).stdout).toBe("dir/a b\ndir/c\n");
    expect(await cli("del", "dir/a b")).toMatchObject({ code: 0 });
    const missing = await cli("get", "dir/a b");
    expect(missing.code).toBe(1);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toBe('makhzen: key "dir/a b" not found\n');
  });

  test("buckets are separate", async () => {
    expect((await cli("put", "k", "in-b", "--bucket", "b1")).code).toBe(0);
    expect((await cli("get", "k", "--bucket", "b1")).stdout).toBe("in-b\n");
    expect((await cli("get", "k")).code).toBe(1);
    // Refused before any request, naming the flag: a usage error.
    const bad = await cli("get", "k", "--bucket", "no/slash");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('makhzen: --bucket must be 1 to 64 characters of A-Z a-z 0-9 _ . -, not "no/slash"\n');
  });

  test("--version and --help", async () => {
    const pkg = await Bun.file(join(import.meta.dir, "../..", "package.json")).json();
    expect(await run([bin, "--version"])).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
    for (const cmd of ["serve", "agent", "get", "put", "del", "ls"]) {
      const help = await run([bin, cmd, "--help"]);
      expect(help.code).toBe(0);
      expect(help.stdout).toContain("USAGE");
    }
  });

  test("bad flags and an unreachable node get one line and a non-zero exit", async () => {
    const cases: [string[], number, RegExp][] = [
      [["serve", "--port", "abc"], 2, /--port must be an integer/],
      [["serve", "--prot", "1"], 2, /unknown flag --prot/],
      [["serve", "--eviction", "random"], 2, /--eviction must be one of/],
      [["serve", "--max-memory", "lots"], 2, /--max-memory must be a size/],
      [["put", "k"], 2, /VALUE/],
      [["nope"], 2, /unknown command "nope"/],
      [["get", "k", "--url", "http://127.0.0.1:1"], 1, /cannot reach http:\/\/127.0.0.1:1/],
      [["put", "k", "v", "--ttl", "-1"], 2, /--ttl must be a number > 0/],
    ];
    for (const [args, code, message] of cases) {
      const r = await run([bin, ...args]);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  test("flags fall back to MAKHZEN_* environment variables", async () => {
    const r = await run([bin, "get", "hello"], { env: { MAKHZEN_URL: node.url } });
    expect(r).toMatchObject({ code: 0, stdout: "world\n" });
    const bad = await run([bin, "serve"], { env: { MAKHZEN_PORT: "notaport" } });
    expect(bad.code).toBe(2);
    // Named as what the user set: the variable.
    expect(bad.stderr).toContain("MAKHZEN_PORT must be an integer");
  });

  test("a port in use is a clear one-line error", async () => {
    const r = await run([bin, "serve", "--port", String(node.port)]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot listen on 127.0.0.1:\d+: address in use/);
  });

  test("SIGTERM stops the node with exit 0", async () => {
    await using other = await startNode([bin, "serve", "--port", "0"]);
    expect(await other.stop("SIGTERM")).toBe(0);
  });
});
