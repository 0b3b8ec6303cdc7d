/**
 * Builds one self-contained executable per platform with `bun build --compile`.
 *
 *   bun scripts/build.ts                 # every target into dist/
 *   bun scripts/build.ts linux-x64       # only the named targets
 *   bun scripts/build.ts --outdir DIR linux-x64
 *
 * Cross-compiling fetches the target's Bun runtime from the npm registry once
 * (then it is cached); building for the host needs nothing.
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";

export const TARGETS = {
  "linux-x64": { bunTarget: "bun-linux-x64", file: "makhzen-linux-x64" },
  "linux-arm64": { bunTarget: "bun-linux-arm64", file: "makhzen-linux-arm64" },
  "darwin-x64": { bunTarget: "bun-darwin-x64", file: "makhzen-darwin-x64" },
  "darwin-arm64": { bunTarget: "bun-darwin-arm64", file: "makhzen-darwin-arm64" },
  "windows-x64": { bunTarget: "bun-windows-x64", file: "makhzen-windows-x64.exe" },
} as const;

export type TargetName = keyof typeof TARGETS;

const ROOT = resolve(import.meta.dir, "..");

/** Compiles src/cli/main.ts for one target; resolves to the executable's path. */
export async function build(target: TargetName, outdir = join(ROOT, "dist")): Promise<string> {
  const { bunTarget, file } = TARGETS[target];
  mkdirSync(outdir, { recursive: true });
  const outfile = join(outdir, file);
  const proc = Bun.spawn(
    [process.execPath, "build", "--compile", "--minify", `--target=${bunTarget}`, "src/cli/main.ts", "--outfile", outfile],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new Error(`build for ${target} failed (exit ${code}): ${stderr.trim()}`);
  return outfile;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  let outdir: string | undefined;
  const names: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--outdir") {
      outdir = args[++i];
      if (!outdir) {
        console.error("--outdir needs a directory");
        process.exit(2);
      }
      outdir = resolve(outdir); // relative to where the command runs, not to the repo
    }
    else names.push(args[i]!);
  }
  const unknown = names.filter((n) => !(n in TARGETS));
  if (unknown.length) {
    console.error(`unknown target ${unknown.join(", ")}; targets: ${Object.keys(TARGETS).join(", ")}`);
    process.exit(2);
  }
  const targets = (names.length ? names : Object.keys(TARGETS)) as TargetName[];
  for (const t of targets) {
    const out = await build(t, outdir);
    console.log(`built ${out}`);
  }
}
