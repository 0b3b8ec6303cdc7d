/**
 * Shared pieces of the benchmarks: wrk runs with Lua scripts that spread requests
 * over many keys, medians, and writing one section of docs/benchmarks.md.
 * Benchmarks are run by hand and never by `bun test`.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dir, "..");
export const MAIN = join(ROOT, "src/cli/main.ts");
export const KEYS = 1000;
export const VALUE = "x".repeat(100);

export function requireWrk(): void {
  if (!Bun.which("wrk")) {
    console.error("wrk is not installed: apt-get update && apt-get install -y wrk");
    process.exit(2);
  }
}

/** `--name value` from argv, or the default. */
export function option(name: string, dflt: string): string {
  const args = process.argv.slice(2);
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1]! : dflt;
}

const scripts = mkdtempSync(join(tmpdir(), "makhzen-bench-"));

/**
 * A wrk Lua script that GETs, or PUTs (with an optional `?query`), keys key-0..key-999
 * in turn; `fresh` PUTs keys never written before (fresh-<run>-1, -2, ...: each run
 * of the script its own prefix).
 */
export function luaScript(kind: "get" | "put" | "fresh", query = ""): string {
  const file = join(scripts, `${kind}${query ? "-q" : ""}.lua`);
  const request =
    kind === "get"
      ? `wrk.format("GET", "/items/key-" .. i)`
      : kind === "fresh"
        ? `wrk.format("PUT", "/items/fresh-" .. run .. "-" .. i .. "${query}", {["Content-Type"] = "application/json"}, '{"value":"${VALUE}"}')`
        : `wrk.format("PUT", "/items/key-" .. i .. "${query}", {["Content-Type"] = "application/json"}, '{"value":"${VALUE}"}')`;
  const step = kind === "fresh" ? "i = i + 1" : `i = (i + 1) % ${KEYS}`;
  writeFileSync(file, `local i = 0\nlocal run = tostring(os.time()) .. tostring(math.random(1e6))\nrequest = function()\n  ${step}\n  return ${request}\nend\n`);
  return file;
}

/**
 * A wrk Lua script of PUTs over `keys` distinct keys `prefix-N` (with VALUE): queues
 * coalesce rewrites of a key, so a small key set would flatter a cluster's figure.
 */
export function distinctPutScript(prefix: string, keys = 100_000): string {
  const file = join(scripts, `put-${prefix}.lua`);
  writeFileSync(
    file,
    `local i = 0
local body = '{"value":"${VALUE}"}'
request = function()
  i = i + 1
  return wrk.format("PUT", "/items/${prefix}-" .. (i % ${keys}), {["Content-Type"] = "application/json"}, body)
end
`,
  );
  return file;
}

/** Requests per second of one wrk run (-t1 -c32); throws on any non-2xx answer. */
export async function wrk(url: string, script: string, seconds: number, connections = 32): Promise<number> {
  const proc = Bun.spawn(["wrk", "-t1", `-c${connections}`, `-d${seconds}s`, "-s", script, url], { stdout: "pipe", stderr: "pipe" });
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (!m) throw new Error(`wrk printed no rate:\n${out}`);
  if (errors) throw new Error(`wrk saw ${errors[1]} error responses from ${url}`);
  return Number(m[1]);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export const fmt = (n: number): string => Math.round(n).toLocaleString("en-US");

export function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model ?? "unknown CPU"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}, ${new Date().toISOString().slice(0, 10)}`;
}

/** Replaces the section headed `## <title>` of a markdown file (or appends it), leaving the others alone. */
export function writeSection(path: string, section: string): void {
  const head = section.slice(0, section.indexOf("\n"));
  let doc = existsSync(path)
    ? readFileSync(path, "utf8")
    : "# Benchmarks\n\nRun by hand, never in `bun test`. Each section names the command that produced it.\n";
  const start = doc.indexOf(head + "\n");
  if (start === -1) doc = doc.trimEnd() + "\n\n" + section;
  else {
    const next = doc.indexOf("\n## ", start + head.length);
    doc = doc.slice(0, start) + section.trimEnd() + "\n" + (next === -1 ? "" : doc.slice(next));
  }
  writeFileSync(path, doc.trimEnd() + "\n");
}

/** Fills key-0..key-999 so GETs hit and PUTs replace. */
export async function preload(url: string): Promise<void> {
  for (let i = 0; i < KEYS; i += 100) {
    await Promise.all(
      Array.from({ length: 100 }, (_, j) =>
        fetch(`${url}/items/key-${i + j}`, { method: "PUT", body: JSON.stringify({ value: VALUE }) }),
      ),
    );
  }
}
