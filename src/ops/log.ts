import type { WallClock } from "../core/clock.ts";
import { MakhzenError } from "../errors.ts";
import { checkCallOptions } from "./options.ts";

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFormat = "json" | "text";
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that tags every line with `component` (e.g. "replicator"). */
  child(component: string): Logger;
}

export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

export interface LoggerOptions {
  /** Lines below this level are dropped. Default: info. */
  level?: LogLevel;
  /** `json`: one JSON object per line (for machines); `text`: readable (for a terminal). */
  format?: LogFormat;
  /** Where lines go. Default: stderr. */
  write?: (line: string) => void;
  /** Timestamps come from the node's clock, like everything else. */
  wallClock?: WallClock;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/**
 * Structured logs: one line per event that matters (member up/down, queue
 * overflow, repair, refusal, start-up), never one per request. Fields are data,
 * not interpolated text, so a JSON line can be filtered by `component` or `peer`.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  checkLoggerOptions(options);
  const min = RANK[options.level ?? "info"];
  const format = options.format ?? "json";
  const write = options.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const now = options.wallClock ?? Date.now;

  const make = (component?: string): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
      if (RANK[level] < min) return;
      const ts = new Date(now()).toISOString();
      if (format === "json") {
        write(inert(JSON.stringify({ ts, level, ...(component ? { component } : {}), msg, ...normalize(fields) })));
      } else {
        const tail = fields ? Object.entries(normalize(fields)).map(([k, v]) => ` ${k}=${text(v)}`).join("") : "";
        write(`${ts} ${level.toUpperCase().padEnd(5)} ${component ? `[${component}] ` : ""}${msg}${tail}`);
      }
    };
    return {
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      child: (c) => make(component ? `${component}.${c}` : c),
    };
  };
  return make();
}

const LOGGER_OPTIONS = { level: "string", format: "string", write: "function", wallClock: "function" } as const;

/**
 * Refuses what a plain JavaScript caller could pass and have ignored: an unknown
 * option, a level or format not listed (a `level: "warning"` logged everything,
 * debug included, since it had no rank). INVALID_CONFIG, as createNode's options.
 */
function checkLoggerOptions(options: LoggerOptions): void {
  const fail = (message: string) => new MakhzenError("INVALID_CONFIG", message);
  checkCallOptions("createLogger", options, LOGGER_OPTIONS, fail);
  const { level, format } = options;
  if (level !== undefined && !Object.hasOwn(RANK, level)) throw fail(`createLogger option level must be one of ${Object.keys(RANK).join(", ")}, not ${JSON.stringify(level)}`);
  if (format !== undefined && format !== "json" && format !== "text") throw fail(`createLogger option format must be json or text, not ${JSON.stringify(format)}`);
}

/** A logger that drops everything: the default for embedded nodes and unit tests. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => silentLogger,
};

/** Errors become their message: a stack in a log line helps nobody at 3 a.m. */
function normalize(fields: LogFields | undefined): LogFields {
  if (!fields) return {};
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) out[k] = v instanceof Error ? v.message : v;
  return out;
}

/**
 * A field's value in a text line: bare when it is one plain word, else quoted and
 * escaped as JSON (inert). A client's key reaches some lines: written raw, its ESC
 * sequences rewrote the terminal's line into a forged one ("...ERROR [cluster]
 * forged"); a control character of any kind now makes it quoted and escaped.
 */
const text = (v: unknown): string => (typeof v === "string" && !/[\s"=\x00-\x1f\x7f-\x9f\u2028\u2029]/.test(v) ? v : inert(JSON.stringify(v)));

/**
 * JSON text with the characters JSON.stringify leaves raw but a terminal or a log
 * viewer acts on (DEL, the C1 controls such as the 8-bit CSI U+009B, the line and
 * paragraph separators) written as \u escapes: they can only stand inside strings.
 */
const inert = (json: string): string =>
  /[\x7f-\x9f\u2028\u2029]/.test(json) ? json.replace(/[\x7f-\x9f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`) : json;
