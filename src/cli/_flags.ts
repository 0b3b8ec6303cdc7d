import { MAX_TTL_SECONDS } from "../core/items.ts";
import { BUCKET_PATTERN, isDotName } from "../core/record.ts";
import { beyondOrigin } from "../client/options.ts";
import { maskPassword } from "../ops/urls.ts";
import { closestNames } from "../ops/suggest.ts";
import { usageError } from "./_errors.ts";
import { homedir } from "node:os";
import { join } from "node:path";

/**
 * Flag values: the command line first, then MAKHZEN_<FLAG> from the environment,
 * then the default. This file reads process.env for values (serve-flags.ts's
 * variableKeys reads it only to tell which settings a variable gave).
 */
export function flag(
  args: Record<string, unknown>,
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  variable = envName(name),
): string | undefined {
  return flagFrom(args, name, env, variable)?.value;
}

/**
 * The fd of the pipe the npm launcher (launcher.mjs) holds open while it lives, or
 * undefined when not started by it. Taken out of the environment once read, so
 * nothing started from here would watch a pipe it does not have.
 */
export function launcherFd(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.MAKHZEN_LAUNCHER_FD;
  delete env.MAKHZEN_LAUNCHER_FD;
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/**
 * Whether this process is `npm start`'s own command: npm sets npm_lifecycle_event
 * for a script and every process under it, so the name of the script is checked
 * (a node a custom script puts in the background is no child of npm to watch).
 */
export const underNpmStart = (env: NodeJS.ProcessEnv = process.env): boolean => env.npm_lifecycle_event === "start";

/** NO_COLOR (https://no-color.org): any non-empty value turns colours off. */
export const noColor = (env: NodeJS.ProcessEnv = process.env): boolean => (env.NO_COLOR ?? "") !== "";

export const envName = (flagName: string): string => `MAKHZEN_${flagName.toUpperCase().replaceAll("-", "_")}`;

/**
 * `flag`, with where the value came from: `from` is the flag's name, or its variable
 * when the value came from the environment. The parsers below take that as their
 * `name`, so an error names what the user set: `--port` or `MAKHZEN_PORT`.
 */
export function flagFrom(
  args: Record<string, unknown>,
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  variable = envName(name),
): { value: string; from: string } | undefined {
  const given = args[name];
  if (given !== undefined && given !== "") return { value: String(given), from: name };
  const fromEnv = env[variable];
  return fromEnv === undefined || fromEnv === "" ? undefined : { value: fromEnv, from: variable };
}

/**
 * Refuses a MAKHZEN_* variable that nothing reads (exit 2, one line naming it).
 * A flag typed wrong is refused (issue 10: nothing silently ignored), and a
 * variable is the same setting written elsewhere: `MAKHZEN_PROT=3001` in a unit
 * file would otherwise start a node on :3000 with no word said. `known` is every
 * variable any command reads, so a shell that sets MAKHZEN_PORT for `serve` can
 * still run `makhzen get`. (etcd warns and goes on; a warning scrolls past in a
 * service's log, and the node would run with a setting its operator thinks it has.)
 */
export function checkVariables(known: ReadonlySet<string>, env: NodeJS.ProcessEnv = process.env): void {
  for (const name of Object.keys(env)) {
    if (!name.startsWith("MAKHZEN_") || known.has(name)) continue;
    const close = closestNames(name.slice("MAKHZEN_".length), [...known].map((k) => k.slice("MAKHZEN_".length)));
    const hint = close.length === 0 ? "" : ` (did you mean ${close.map((c) => `MAKHZEN_${c}`).join(" or ")}?)`;
    throw usageError(`${name} is not a makhzen setting${hint}; unset it, or see --help for the MAKHZEN_* variables`);
  }
}

/** A flag as an error names it: `--port`, or a variable (`MAKHZEN_PORT`) as it is. */
export const shownFlag = (name: string): string => (/^MAKHZEN_[A-Z0-9_]*$/.test(name) ? name : `--${name}`);


const KiB = 1024;
const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1000,
  kb: KiB,
  m: 1000 ** 2,
  mb: KiB ** 2,
  g: 1000 ** 3,
  gb: KiB ** 3,
};

/** Sizes as Redis writes them: 1024, 1k (1000), 1kb (1024), 100mb, 2gb. */
export function parseBytes(name: string, value: string): number {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(value.trim());
  // Own units only: `1constructor` must not find Object.prototype's.
  const unit = m && Object.hasOwn(BYTE_UNITS, m[2]!.toLowerCase()) ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw usageError(`${shownFlag(name)} must be a size like 1048576, 512kb or 100mb, not "${value}"`);
  return Number(m[1]) * unit;
}

/** A size as a user would write it: 1mb, 256mb, 2gb; anything not a whole number of megabytes stays a byte count (1024). */
export function showBytes(bytes: number): string {
  for (const [unit, n] of [["gb", KiB ** 3], ["mb", KiB ** 2]] as const) {
    if (bytes > 0 && bytes % n === 0) return `${bytes / n}${unit}`;
  }
  return String(bytes);
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Durations like 500ms, 30s, 10m, 24h, 7d. A unit is required: a bare number is
 * refused rather than guessed, since `--heartbeat-interval 1000` could mean ms or s.
 */
export function parseDurationMs(name: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/i.exec(value.trim());
  if (!m) throw usageError(`${shownFlag(name)} must be a duration with a unit, like 500ms, 30s, 10m or 24h, not "${value}"`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!);
}

/** A duration as a user would write it: the largest of h, m, s that divides it, else ms (24h, 30s, 1s, 500ms). */
export function showDuration(ms: number): string {
  for (const unit of ["h", "m", "s"] as const) {
    const n = DURATION_UNITS[unit]!;
    if (ms > 0 && ms % n === 0) return `${ms / n}${unit}`;
  }
  return ms === 0 ? "0s" : `${ms}ms`;
}

/**
 * A value from `min` to `max`, the bounds written as the user would type them. A value
 * that parsed is shown as typed, unquoted: `--idle-timeout must be from 1s to 255s, not 300s`.
 */
function within(
  name: string,
  value: string,
  parse: (name: string, v: string) => number,
  min: string | undefined,
  max: string | undefined,
): number {
  const parsed = parse(name, value);
  const low = min === undefined || parsed >= parse(name, min);
  const high = max === undefined || parsed <= parse(name, max);
  if (low && high) return parsed;
  const range = min === undefined ? `at most ${max}` : max === undefined ? `at least ${min}` : `from ${min} to ${max}`;
  throw usageError(`${shownFlag(name)} must be ${range}, not ${value.trim()}`);
}

export function parseInteger(name: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min || Number(value) > max) {
    throw usageError(`${shownFlag(name)} must be an integer from ${min} to ${max}, not "${value}"`);
  }
  return Number(value);
}

export function parseChoice<T extends string>(name: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) {
    throw usageError(`${shownFlag(name)} must be one of ${choices.join(", ")}, not "${value}"`);
  }
  return value as T;
}

/**
 * A TTL in seconds, as the HTTP API takes it: a bare number is seconds, as Redis's
 * `EX` is; a duration (500ms, 10s, 5m, 1h, 7d) is turned into seconds.
 */
export function parseTtlSeconds(name: string, value: string): number {
  const v = value.trim();
  const seconds = /^\d+(\.\d+)?$/.test(v) ? Number(v) : /^\d+(\.\d+)?\s*[a-z]+$/i.test(v) ? durationOrNaN(name, v) / 1000 : NaN;
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw usageError(`${shownFlag(name)} must be a number > 0 (seconds) or a duration like 500ms, 10s, 5m or 1h, not "${value}"`);
  }
  // The node's bound, checked here so the error names the flag rather than the request's field.
  if (seconds > MAX_TTL_SECONDS) throw usageError(`${shownFlag(name)} must be at most ${MAX_TTL_SECONDS} seconds (about 317 years), not ${v}`);
  return seconds;
}

/** A bucket name, checked before any request so the error names the flag. */
export function parseBucket(name: string, value: string): string {
  // A URL path cannot carry them: fetch resolves them as dot segments (the node refuses them too).
  if (isDotName(value)) throw usageError(`${shownFlag(name)} cannot be "${value}": a URL path cannot carry it`);
  if (!BUCKET_PATTERN.test(value)) throw usageError(`${shownFlag(name)} must be 1 to 64 characters of A-Z a-z 0-9 _ . -, not "${value}"`);
  return value;
}

function durationOrNaN(name: string, value: string): number {
  try {
    return parseDurationMs(name, value);
  } catch {
    return NaN;
  }
}

export function parseBoolean(name: string, value: string): boolean {
  if (["true", "1", "yes"].includes(value.toLowerCase())) return true;
  if (["false", "0", "no"].includes(value.toLowerCase())) return false;
  throw usageError(`${shownFlag(name)} must be true or false, not "${value}"`);
}

/**
 * An http(s) URL of a node: scheme, host and port, nothing more (a final `/` is
 * allowed). A bare `host:port` (huton's `-peers 127.0.0.1:8100`) means
 * `http://host:port`. A path, query, fragment or user name is refused rather than
 * dropped or misused: the client appends its routes to the URL, so
 * `http://h:3000?x=1` sent every request to `GET /` and `http://h:3000/prefix` to
 * routes no node serves (a node serves at the root; there is no prefix setting).
 */
export function parseUrl(name: string, value: string): string {
  const v = value.trim();
  const like = `${shownFlag(name)} must be a URL like http://10.0.0.2:3000`;
  const url = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d+$/i.test(v) ? `http://${v}` : v;
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    // reported below
  }
  const shown = maskPassword(value);
  if (u === undefined || (u.protocol !== "http:" && u.protocol !== "https:") || u.host === "") throw usageError(`${like}, not "${shown}"`);
  const extra = beyondOrigin(u, v, "--token");
  if (extra !== undefined) throw usageError(`${like}, scheme, host and port only; "${shown}" has ${extra}`);
  // The scheme in lower case (`HTTPS://` is https): what reads the URL after this looks for "https:".
  return url.replace(/^[a-z]+:/i, (scheme) => scheme.toLowerCase());
}

/** Comma-separated URLs; blanks between commas are skipped, but at least one URL is required. */
function parseUrlList(name: string, value: string): string[] {
  const urls = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (urls.length === 0) throw usageError(`${shownFlag(name)} must list at least one URL`);
  return urls.map((u) => parseUrl(name, u));
}

/**
 * A token or secret: sent in a header, so visible ASCII without spaces (nothing is
 * trimmed or re-encoded on the way). Errors never echo the value: it is a secret.
 */
function parseSecret(name: string, value: string, minLength: number, hint: string): string {
  if (!/^[\x21-\x7e]+$/.test(value)) throw usageError(`${shownFlag(name)} must be visible ASCII characters without spaces`);
  if (value.length < minLength) throw usageError(`${shownFlag(name)} must be at least ${minLength} characters${hint}; it has ${value.length}`);
  return value;
}

/**
 * A path as a shell would have read it. `--data-dir=~/d` and `MAKHZEN_DATA_DIR=~/d`
 * reach the process with the `~` unexpanded (a shell expands it only at the start of
 * a word), and a node made a directory named `~` in the working directory: the data
 * was not where the user looked, and `rm -rf ~` was one step away. `~user/` is
 * refused rather than guessed.
 */
function parsePath(name: string, value: string): string {
  if (value === "~") return homedir();
  if (value.startsWith("~/")) return join(homedir(), value.slice(2));
  if (value.startsWith("~")) throw usageError(`${shownFlag(name)} "${value}": only ~ and ~/ are read as the home directory; give the path in full`);
  return value;
}

/**
 * One kind of flag value: citty's type for it, the parser (its errors name the flag
 * it is given), and how a value is written back in the units a user types (what
 * `--help` shows as a default). A flag table pairs each flag with one kind.
 */
export interface Kind<T> {
  /** What the value is: a duration needs a unit, a size may have one, a list is comma-separated. */
  readonly name: "text" | "secret" | "file" | "boolean" | "integer" | "size" | "duration" | "enum" | "url" | "list";
  readonly type: "string" | "boolean";
  parse(flag: string, value: string): T;
  show(value: T): string;
}

const kind = <T>(
  name: Kind<T>["name"],
  parse: (flag: string, value: string) => T,
  show: (value: T) => string = String,
  type: Kind<T>["type"] = "string",
): Kind<T> => ({ name, type, parse, show });

/**
 * The largest size and duration any flag takes, in the units a user types: the
 * whole gigabytes and days below 2^53 (config.ts's bound, Number.MAX_SAFE_INTEGER
 * bytes or ms), so a value past it is refused as typed.
 */
const MOST_BYTES = "8388607gb";
const MOST_DURATION = "104249991d";

/**
 * The kinds of value a flag table draws from. Bounds are written as a user would
 * type them ("1s", "64kb"), so the error names them that way too.
 */
export const kinds = {
  text: kind<string>("text", (_, v) => v),
  /** A token or secret (see parseSecret), at least `minLength` characters; `hint` follows that rule in the error. */
  secret: (minLength = 1, hint = ""): Kind<string> => kind("secret", (f, v) => parseSecret(f, v, minLength, hint)),
  /** A path, opened (and its errors reported) by whoever uses it; `~` and `~/` are the home directory (see parsePath). */
  file: kind<string>("file", parsePath),
  /** A switch: `--insecure`, `--no-insecure`, `--insecure=false`, or true/false, 1/0, yes/no from the environment. */
  boolean: kind("boolean", parseBoolean, String, "boolean"),
  integer: (min: number, max: number): Kind<number> => kind("integer", (f, v) => parseInteger(f, v, min, max)),
  /**
   * Bytes, written as Redis does (see parseBytes), optionally bounded; shown as 1mb or as a byte count.
   * Never above MOST_BYTES: past it the node's own check said "not 1.0737418239999893e+23".
   */
  size: (min?: string, max = MOST_BYTES): Kind<number> => kind("size", (f, v) => within(f, v, parseBytes, min, max), showBytes),
  /** Milliseconds, written with a unit (see parseDurationMs), optionally bounded (never above MOST_DURATION); shown as 30s, 24h, 500ms. */
  duration: (min?: string, max = MOST_DURATION): Kind<number> => kind("duration", (f, v) => within(f, v, parseDurationMs, min, max), showDuration),
  choice: <T extends string>(choices: readonly T[]): Kind<T> => kind("enum", (f, v) => parseChoice(f, v, choices)),
  /** An http(s) URL, or `host:port` for http. */
  url: kind("url", parseUrl),
  /** Comma-separated URLs (each as `url`). */
  urls: kind("list", parseUrlList, (v) => v.join(",")),
};
