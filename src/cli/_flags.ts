import type { ArgsDef } from "citty";
import { usageError } from "./_errors.ts";

/**
 * Flag values: the command line first, then MAKHZEN_<FLAG> from the environment,
 * then the default. This is the only file that reads process.env.
 */
export function flag(
  args: Record<string, unknown>,
  name: string,
  env: NodeJS.ProcessEnv = process.env,
  variable = envName(name),
): string | undefined {
  const given = args[name];
  if (given !== undefined && given !== "") return String(given);
  const fromEnv = env[variable];
  return fromEnv === undefined || fromEnv === "" ? undefined : fromEnv;
}

export const envName = (flagName: string): string => `MAKHZEN_${flagName.toUpperCase().replaceAll("-", "_")}`;

/**
 * citty ignores flags it does not know; a typo like `--prot 4000` would then start a
 * node on the default port. Refuse anything not declared, and extra positionals.
 */
export function checkArgs(rawArgs: string[], def: ArgsDef): void {
  const known = new Map<string, string>(); // spelling -> arg type
  let positionals = 0;
  for (const [name, d] of Object.entries(def)) {
    if (d.type === "positional") {
      positionals++;
      continue;
    }
    for (const n of [name, ...toArray((d as { alias?: string | string[] }).alias)]) known.set(n, d.type ?? "string");
  }
  let seen = 0;
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") {
      seen += rawArgs.length - i - 1;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      seen++;
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const [name, inline] = splitOnce(body, "=");
    let type = known.get(name);
    if (type === undefined && name.startsWith("no-") && known.get(name.slice(3)) === "boolean") type = "boolean";
    if (type === undefined) throw usageError(`unknown flag ${arg.split("=")[0]}; see --help`);
    if (type !== "boolean" && inline === undefined) {
      if (i + 1 >= rawArgs.length) throw usageError(`flag --${name} needs a value`);
      i++;
    }
  }
  if (seen > positionals) throw usageError(`too many arguments; see --help`);
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const at = s.indexOf(sep);
  return at === -1 ? [s, undefined] : [s.slice(0, at), s.slice(at + 1)];
}

const toArray = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

const BYTE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1000,
  kb: 1024,
  m: 1000 ** 2,
  mb: 1024 ** 2,
  g: 1000 ** 3,
  gb: 1024 ** 3,
};

/** Sizes as Redis writes them: 1024, 1k (1000), 1kb (1024), 100mb, 2gb. */
export function parseBytes(name: string, value: string): number {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m ? BYTE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw usageError(`--${name} must be a size like 1048576, 512kb or 100mb, not "${value}"`);
  return Number(m[1]) * unit;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Durations like 500ms, 30s, 10m, 24h, 7d. A unit is required: a bare number is
 * refused rather than guessed, since `--heartbeat-interval 1000` could mean ms or s.
 */
export function parseDurationMs(name: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/i.exec(value.trim());
  if (!m) throw usageError(`--${name} must be a duration with a unit, like 500ms, 30s, 10m or 24h, not "${value}"`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2]!.toLowerCase()]!);
}

/** A duration (see parseDurationMs) from `min` to `max`, both written as the user would type them. */
export function parseDurationWithin(name: string, value: string, min: string, max: string): number {
  const ms = parseDurationMs(name, value);
  if (ms < parseDurationMs(name, min) || ms > parseDurationMs(name, max)) {
    throw usageError(`--${name} must be from ${min} to ${max}, not "${value}"`);
  }
  return ms;
}

export function parseInteger(name: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min || Number(value) > max) {
    throw usageError(`--${name} must be an integer from ${min} to ${max}, not "${value}"`);
  }
  return Number(value);
}

export function parseChoice<T extends string>(name: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) {
    throw usageError(`--${name} must be one of ${choices.join(", ")}, not "${value}"`);
  }
  return value as T;
}

export function parsePositiveNumber(name: string, value: string): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0) throw usageError(`--${name} must be a number > 0, not "${value}"`);
  return n;
}

function parseBoolean(name: string, value: string): boolean {
  if (["true", "1", "yes"].includes(value.toLowerCase())) return true;
  if (["false", "0", "no"].includes(value.toLowerCase())) return false;
  throw usageError(`--${name} must be true or false, not "${value}"`);
}

function parseUrl(name: string, value: string): string {
  try {
    const u = new URL(value);
    if (u.protocol === "http:" || u.protocol === "https:") return value;
  } catch {
    // reported below
  }
  throw usageError(`--${name} must be a URL like http://10.0.0.2:3000, not "${value}"`);
}

/** Comma-separated URLs; blanks between commas are skipped, but at least one URL is required. */
function parseUrlList(name: string, value: string): string[] {
  const urls = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (urls.length === 0) throw usageError(`--${name} must list at least one URL`);
  return urls.map((u) => parseUrl(name, u));
}

/**
 * One kind of flag value: citty's type for it, the parser (its errors name the flag
 * it is given), and how a value is written back in the units a user types (what
 * `--help` shows as a default). A flag table pairs each flag with one kind.
 */
export interface Kind<T> {
  /** What the value is: a duration needs a unit, a size may have one, a list is comma-separated. */
  readonly name: "text" | "file" | "boolean" | "integer" | "size" | "duration" | "enum" | "url" | "list";
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

/** The kinds of value a flag table draws from. */
export const kinds = {
  text: kind<string>("text", (_, v) => v),
  /** A path, opened (and its errors reported) by whoever uses it. */
  file: kind<string>("file", (_, v) => v),
  /** A switch: `--insecure`, `--no-insecure`, or true/false, 1/0, yes/no from the environment. */
  boolean: kind("boolean", parseBoolean, String, "boolean"),
  integer: (min: number, max: number): Kind<number> => kind("integer", (f, v) => parseInteger(f, v, min, max)),
  /** Bytes, written as Redis does (see parseBytes); shown as a byte count. */
  size: kind("size", parseBytes),
  /** Milliseconds, written with a unit (see parseDurationMs); `min` and `max` as a user would type them. */
  duration: (min?: string, max?: string): Kind<number> =>
    kind(
      "duration",
      (f, v) => (min === undefined || max === undefined ? parseDurationMs(f, v) : parseDurationWithin(f, v, min, max)),
      (ms) => `${ms}ms`,
    ),
  choice: <T extends string>(choices: readonly T[]): Kind<T> => kind("enum", (f, v) => parseChoice(f, v, choices)),
  url: kind("url", parseUrl),
  /** Comma-separated URLs. */
  urls: kind("list", parseUrlList, (v) => v.join(",")),
};
