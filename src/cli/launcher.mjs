#!/usr/bin/env node
/**
 * The `makhzen` command of the npm package (package.json's `bin`).
 *
 * makhzen runs on Bun, but npm runs a package's bin with whatever its shebang names,
 * and a machine set up by `npm install` has Bun only inside node_modules (the `bun`
 * package), not on the PATH: a bin that said `#!/usr/bin/env bun` failed with
 * "/usr/bin/env: 'bun': No such file or directory". So this file is plain
 * JavaScript for Node, which npm guarantees; it finds a Bun and runs src/cli/main.ts
 * with it, passing the arguments, stdin/stdout/stderr, signals and the exit status
 * through.
 *
 * Which Bun, first found: the one running this file; the `bun` package as Node
 * resolves it from here (the checkout's node_modules after `npm install`, which
 * `npm link` and `npm install -g <checkout>` point at); `bun` on the PATH.
 */
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { constants } from "node:os";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// Node resolves the symlinks npm puts on the PATH before setting import.meta.url.
const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, "main.ts");
const root = resolve(here, "../..");

function findBun() {
  if (process.versions.bun !== undefined) return process.execPath;
  try {
    const pkgJson = createRequire(import.meta.url).resolve("bun/package.json");
    const bin = JSON.parse(readFileSync(pkgJson, "utf8")).bin?.bun;
    const path = bin === undefined ? undefined : join(dirname(pkgJson), bin);
    if (path !== undefined && existsSync(path)) return path;
  } catch {
    // not installed next to makhzen: try the PATH
  }
  return "bun";
}

const bun = findBun();
// fd 3 is a pipe this process holds open and never writes: when it dies, even by
// SIGKILL, which it cannot pass on, the kernel closes it and the child sees EOF and
// stops (main.ts), rather than serving on with nobody to stop it. The variable tells
// the child which fd; it is not a flag.
const child = spawn(bun, [main, ...process.argv.slice(2)], {
  stdio: ["inherit", "inherit", "inherit", "pipe"],
  env: { ...process.env, MAKHZEN_LAUNCHER_FD: "3" },
});

// Pass signals on: a node stopped with SIGTERM drains and leaves. A Ctrl-C reaches
// both processes (one process group); `serve` ignores the second one.
const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"];
const forward = (signal) => child.kill(signal);
for (const s of SIGNALS) process.on(s, forward);

child.on("error", (e) => {
  if (e.code === "ENOENT") {
    process.stderr.write(
      `makhzen: Bun not found: run \`npm install\` in ${root} (it installs Bun), or put bun on the PATH (https://bun.sh)\n`,
    );
  } else {
    process.stderr.write(`makhzen: cannot run ${bun}: ${e.message}\n`);
  }
  process.exit(1);
});

child.on("exit", (code, signal) => {
  if (signal !== null) {
    // Die the way the child did, so a shell sees the same status.
    for (const s of SIGNALS) process.off(s, forward);
    process.kill(process.pid, signal);
    // A signal whose default in Node is not to die (SIGUSR1 starts the inspector)
    // would leave the launcher running: exit with the shell's status for it instead.
    setTimeout(() => process.exit(128 + (constants.signals[signal] ?? 0)), 100).unref();
    return;
  }
  process.exit(code ?? 1);
});
