/**
 * Getting the `makhzen` command (issue 10, part 6), for real.
 *
 * `npm install -g --prefix <tmp> <checkout>` is what `npm link` does (a symlink to
 * the checkout in the prefix's lib/node_modules, its bin in the prefix's bin/), into
 * a throwaway prefix and with --offline: a checkout needs nothing from the network.
 * The command then runs from another directory with a PATH that holds node and sh
 * but no bun, so it must find the Bun that `npm install` put in node_modules. It
 * never modifies the checkout.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { eventually, freePort, run, startNode } from "../support/proc.ts";

const ROOT = resolve(import.meta.dir, "../..");
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;

let dir: string;
let makhzen: string;
/** A directory that is not the checkout, to run from. */
let elsewhere: string;
/** PATH with node and sh only: no bun. */
let path: string;

/** Runs `cmd` in `cwd` with the bun-less PATH (the helpers in proc.ts take neither). */
const inDir = (cwd: string, cmd: string[]): string[] => ["/usr/bin/env", `PATH=${path}`, "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, ...cmd];

beforeAll(async () => {
  const node = Bun.which("node");
  const npm = Bun.which("npm");
  if (!node || !npm) throw new Error("these tests need node and npm on the PATH (npm installs makhzen's Bun)");
  dir = mkdtempSync(join(tmpdir(), "makhzen-install-"));
  elsewhere = join(dir, "elsewhere");
  path = join(dir, "path");
  mkdirSync(elsewhere);
  mkdirSync(path);
  symlinkSync(node, join(path, "node"));
  symlinkSync("/bin/sh", join(path, "sh"));
  expect(Bun.which("bun", { PATH: path })).toBeNull();
  const prefix = join(dir, "prefix");
  const r = await run([npm, "install", "-g", "--prefix", prefix, ROOT, "--offline", "--no-audit", "--no-fund"], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`npm install -g failed (${r.code}):\n${r.stderr}`);
  makhzen = join(prefix, "bin", "makhzen");
}, 90_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("makhzen on the PATH through npm", () => {
  test("--version, from another directory, with no bun on the PATH", async () => {
    expect(await run(inDir(elsewhere, [makhzen, "--version"]))).toMatchObject({ code: 0, stdout: `${VERSION}\n`, stderr: "" });
  });

  test("serves, takes stdin, passes exit codes through, and stops on SIGTERM with exit 0", async () => {
    const port = freePort();
    const node = await startNode(inDir(elsewhere, [makhzen, "serve", "--port", String(port)]), port);
    try {
      writeFileSync(join(dir, "value.txt"), "from stdin\n");
      const put = await run(inDir(elsewhere, [makhzen, "put", "k", "-", "--url", node.url]), { stdin: Bun.file(join(dir, "value.txt")) });
      expect(put).toMatchObject({ code: 0, stdout: "OK\n" });
      expect(await run(inDir(elsewhere, [makhzen, "get", "k", "--url", node.url]))).toMatchObject({ code: 0, stdout: "from stdin\n\n" });
      expect(await run(inDir(elsewhere, [makhzen, "get", "missing", "--url", node.url]))).toMatchObject({
        code: 1,
        stderr: 'makhzen: key "missing" not found\n',
      });
      expect((await run(inDir(elsewhere, [makhzen, "serve", "-prot=1"]))).code).toBe(2);
      // The launcher passes SIGTERM on: the node drains, leaves and exits 0, and so does the launcher.
      expect(await node.stop("SIGTERM")).toBe(0);
      expect(await fetch(`${node.url}/healthz`).catch(() => "closed")).toBe("closed");
    } finally {
      await node.stop("SIGKILL");
    }
  });

  test("Ctrl-C through the launcher stops the node: it drains and exits 0, and so does the launcher", async () => {
    const port = freePort();
    await using group = spawnGroup(inDir(elsewhere, [makhzen, "serve", "--port", String(port)]));
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok, { what: "the node serving" });
    group.interrupt();
    expect(await group.proc.exited).toBe(0);
    expect(await group.output).toContain('"msg":"stopped"');
  });

  test("a second SIGINT during the drain (a Ctrl-C the launcher or npm passed on too) does not cut it short", async () => {
    const [pa, pb] = [freePort(), freePort()];
    // b runs without the launcher, so b.proc is the node itself and SIGSTOP reaches it.
    await using b = await startNode([process.execPath, join(ROOT, "src/cli/main.ts"), "serve", "--port", String(pb)], pb);
    await using a = await startNode(
      inDir(elsewhere, [makhzen, "serve", "--port", String(pa), "--peers", b.url, "--drain-timeout", "3s"]),
      pa,
    );
    await eventually(async () => ((await (await fetch(`${a.url}/cluster`)).json()) as { members: unknown[] }).members.length === 2, { what: "a knows b" });
    // b hangs but is not yet suspect (default timings): a waits on its queue to b, up to --drain-timeout.
    b.proc.kill("SIGSTOP");
    expect((await run(inDir(elsewhere, [makhzen, "put", "k", "v", "--url", a.url]))).code).toBe(0);
    a.proc.kill("SIGINT");
    await eventually(() => a.output().includes('"msg":"stopping: draining'), { what: "a draining" });
    a.proc.kill("SIGINT");
    expect(await a.proc.exited).toBe(0);
    expect(a.output()).toContain('"msg":"already stopping"');
    expect(a.output()).toContain('"msg":"stopped"');
  }, 30_000);

  test("npm start -- --port P serves from any directory of the checkout; Ctrl-C stops it", async () => {
    const port = freePort();
    await using group = spawnGroup(inDir(join(ROOT, "test"), [Bun.which("npm")!, "start", "--", "--port", String(port)]));
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok, {
      timeoutMs: 20_000,
      what: "npm start serving",
    });
    group.interrupt();
    await group.proc.exited;
    // The node itself stopped, not only npm.
    await eventually(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => "closed")) === "closed", { what: "the node stopped" });
    expect(await group.output).toContain('"msg":"stopped"');
  });
});

/**
 * `cmd` in a process group of its own, so a Ctrl-C can be sent the way a terminal
 * sends it: to every process of the group at once. Disposing kills the whole group
 * this test started (a node a wrapper left behind included).
 */
function spawnGroup(cmd: string[]) {
  const proc = Bun.spawn(cmd, { detached: true, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then((parts) => parts.join(""));
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-proc.pid, signal);
    } catch {
      // the group is gone: nothing was left
    }
  };
  return {
    proc,
    output,
    interrupt: () => signalGroup("SIGINT"),
    async [Symbol.asyncDispose]() {
      signalGroup("SIGKILL");
      await proc.exited;
    },
  };
}
