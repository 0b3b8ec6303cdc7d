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
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { cleanEnv, eventually, run, startNode, type StartOptions } from "../support/proc.ts";

const ROOT = resolve(import.meta.dir, "../..");
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;

let dir: string;
let makhzen: string;
/** A directory that is not the checkout, to run from. */
let elsewhere: string;
/** PATH with node and sh only: no bun. */
let path: string;

/** How run() and startNode() start a command: in `cwd`, with the bun-less PATH. */
const runIn = (cwd: string) => ({ cwd, env: { PATH: path } });
const spawnIn = (cwd: string, more: StartOptions = {}): StartOptions => ({ cwd, env: { ...cleanEnv(), PATH: path }, ...more });

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
    expect(await run([makhzen, "--version"], runIn(elsewhere))).toMatchObject({ code: 0, stdout: `${VERSION}\n`, stderr: "" });
  });

  test("serves, takes stdin, passes exit codes through, and stops on SIGTERM with exit 0", async () => {
    await using node = await startNode([makhzen, "serve", "--port", "0"], spawnIn(elsewhere, { name: "launched" }));
    writeFileSync(join(dir, "value.txt"), "from stdin\n");
    const put = await run([makhzen, "put", "k", "-", "--url", node.url], { ...runIn(elsewhere), stdin: Bun.file(join(dir, "value.txt")) });
    expect(put).toMatchObject({ code: 0, stdout: "OK\n" });
    expect(await run([makhzen, "get", "k", "--url", node.url], runIn(elsewhere))).toMatchObject({ code: 0, stdout: "from stdin\n\n" });
    expect(await run([makhzen, "get", "missing", "--url", node.url], runIn(elsewhere))).toMatchObject({
      code: 1,
      stderr: 'makhzen: key "missing" not found\n',
    });
    expect((await run([makhzen, "serve", "-prot=1"], runIn(elsewhere))).code).toBe(2);
    // The launcher passes SIGTERM on: the node drains, leaves and exits 0, and so does the launcher.
    expect(await node.stop("SIGTERM")).toBe(0);
    expect(await fetch(`${node.url}/healthz`).catch(() => "closed")).toBe("closed");
  });

  test("Ctrl-C through the launcher stops the node: it drains and exits 0, and so does the launcher", async () => {
    // A process group of its own, so the Ctrl-C goes as a terminal sends it: to the launcher and the node at once.
    await using node = await startNode([makhzen, "serve", "--port", "0"], spawnIn(elsewhere, { name: "launched", group: true }));
    expect(await node.stop("SIGINT")).toBe(0);
    await eventually(() => node.log().includes('"msg":"stopped"'), { what: "the node's last line, stopped" });
  });

  test("kill -9 of the launcher stops the node too: it drains and leaves rather than holding the port", async () => {
    // A group of its own, so that cleanup reaches a node left behind; the SIGKILL goes to the launcher alone.
    await using node = await startNode([makhzen, "serve", "--port", "0"], spawnIn(elsewhere, { name: "launched", group: true }));
    process.kill(node.pid, "SIGKILL");
    expect(await node.exited).not.toBe(0);
    await eventually(async () => (await fetch(`${node.url}/healthz`).catch(() => "closed")) === "closed", { timeoutMs: 10_000, what: "the node stopped" });
    await eventually(() => node.log().includes('"msg":"stopped"'), { what: "the node's last line, stopped" });
  }, 20_000);

  test("a second SIGINT during the drain (a Ctrl-C the launcher or npm passed on too) does not cut it short", async () => {
    // b runs without the launcher, so b.proc is the node itself and SIGSTOP reaches it.
    await using b = await startNode([process.execPath, join(ROOT, "src/cli/main.ts"), "serve", "--port", "0"], { name: "b" });
    await using a = await startNode([makhzen, "serve", "--port", "0", "--peers", b.url, "--drain-timeout", "3s"], spawnIn(elsewhere, { name: "a" }));
    await eventually(async () => ((await (await fetch(`${a.url}/cluster`)).json()) as { members: unknown[] }).members.length === 2, { what: "a knows b" });
    // b hangs but is not yet suspect (default timings): a waits on its queue to b, up to --drain-timeout.
    b.signal("SIGSTOP");
    expect((await run([makhzen, "put", "k", "v", "--url", a.url], runIn(elsewhere))).code).toBe(0);
    a.signal("SIGINT");
    await eventually(() => a.log().includes('"msg":"stopping: '), { what: "a draining" });
    a.signal("SIGINT");
    expect(await a.exited).toBe(0);
    // Its output may still be on its way through the pipe when it has exited.
    await eventually(() => a.log().includes('"msg":"stopped"'), { what: "a's last line, stopped" });
    expect(a.log()).toContain('"msg":"already stopping"');
  }, 30_000);

  test("npm start -- --port P serves from any directory of the checkout, relative paths from there; Ctrl-C stops it", async () => {
    // A relative --data-dir is the user's directory's, not the package root's, where npm runs scripts.
    const sub = mkdtempSync(join(ROOT, "test", "npm-start-"));
    try {
      // npm runs the node through a shell: a process group, so the Ctrl-C reaches all three.
      await using node = await startNode(
        [Bun.which("npm")!, "start", "--", "--port", "0", "--name", "npm-start", "--data-dir", "./dd"],
        spawnIn(sub, { name: "npm start", group: true, timeoutMs: 20_000 }),
      );
      expect(existsSync(join(sub, "dd", "makhzen.db"))).toBe(true);
      expect(existsSync(join(ROOT, "dd"))).toBe(false);
      await node.stop("SIGINT");
      // The node itself stopped, not only npm.
      await eventually(async () => (await fetch(`${node.url}/healthz`).catch(() => "closed")) === "closed", { what: "the node stopped" });
      await eventually(() => node.log().includes('"msg":"stopped"'), { what: "the node's last line, stopped" });
    } finally {
      rmSync(sub, { recursive: true, force: true });
    }
  });

  test("another project's npm start that runs makhzen keeps its paths relative to that project's root, where npm runs scripts", async () => {
    const proj = mkdtempSync(join(tmpdir(), "makhzen-other-project-"));
    try {
      mkdirSync(join(proj, "sub"));
      const script = `${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, "src/cli/main.ts"))} serve --port 0 --name other-project --data-dir ./data`;
      writeFileSync(join(proj, "package.json"), JSON.stringify({ name: "other-project", private: true, scripts: { start: script } }));
      await using node = await startNode([Bun.which("npm")!, "start"], spawnIn(join(proj, "sub"), { name: "other project", group: true, timeoutMs: 20_000 }));
      expect(existsSync(join(proj, "data", "makhzen.db"))).toBe(true);
      expect(existsSync(join(proj, "sub", "data"))).toBe(false);
      await node.stop("SIGINT");
    } finally {
      rmSync(proj, { recursive: true, force: true });
    }
  });

  test("npm start: a SIGTERM to npm alone (a supervisor, docker stop) stops the node too", async () => {
    // npm passes it to its shell, which dies of it without passing it on: the node was left serving, its parent gone.
    await using node = await startNode(
      [Bun.which("npm")!, "start", "--", "--port", "0"],
      spawnIn(join(ROOT, "test"), { name: "npm start", group: true, timeoutMs: 20_000 }),
    );
    process.kill(node.pid, "SIGTERM"); // npm's PID only, not the group
    await eventually(async () => (await fetch(`${node.url}/healthz`).catch(() => "closed")) === "closed", { what: "the node stopped" });
    await eventually(() => node.log().includes('"msg":"stopped"'), { what: "the node's last line, stopped" });
  });
});
