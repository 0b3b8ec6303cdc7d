import type { ArgsDef } from "citty";
import { DEFAULTS, FAST_TIMINGS, type NodeConfig, type NodeOptions } from "../config.ts";
import { LOG_LEVELS, type LogFormat, type LogLevel } from "../ops/log.ts";
import { MAX_REPLICAS } from "../cluster/placement.ts";
import { usageError } from "./_errors.ts";
import { envName, flagFrom, kinds, showDuration, type Kind } from "./_flags.ts";

/**
 * The flags of `serve`, declared once. Each row gives a flag's name and aliases, its
 * MAKHZEN_* variable, the kind of value it takes (the parser, with its units and
 * bounds), its help, and the NodeConfig key it sets. citty's args, the environment
 * lookup, `serve --help` and the node options are all generated from this table, and
 * test/cli/serve-flags.test.ts walks it, so a flag added here is parsed, documented
 * and tested without being spelled anywhere else.
 *
 * Every error a user can get from a flag names the flag as typed, in the units they
 * type. A row's kind checks how a value is written (a unit, a URL, a choice) and the
 * config's range for it, restated in those units (`--idle-timeout must be from 1s to
 * 255s, not 300s`; serve-flags.test.ts checks the restated bounds against
 * resolveConfig). checkFlagsTogether checks the rules between flags. resolveConfig
 * checks it all again for embedders, naming fields; whatever only it can find is
 * reworded by namingFlags before the user sees it.
 */
export interface ServeFlag<T = unknown> {
  /** As typed after `--`; also the key citty parses it into. */
  readonly name: string;
  /** Other spellings of the flag, as typed after `--` (`cluster` for `peers`, from the old Go makhzen). */
  readonly aliases: readonly string[];
  /** The environment variable read when the flag is not given: MAKHZEN_ and the name in capitals. */
  readonly env: string;
  readonly kind: Kind<T>;
  /** The NodeConfig key the value sets; unset for flags `serve` reads itself (the preset, the logger). */
  readonly key?: keyof NodeConfig;
  /** The line of `serve --help`: the help text, then the default, the aliases and the variable in parentheses. */
  readonly description: string;
  /** The default as `--help` shows it, in the units a user types; checked against DEFAULTS by the tests. */
  readonly shownDefault?: string;
}

interface Row<T> {
  name: string;
  aliases?: readonly string[];
  kind: Kind<T>;
  help: string;
  /** Show the default in --help: `true` shows the node's default (DEFAULTS[key]) through the kind; a string is shown as is. */
  default?: true | string;
  /** A default that is not one value ("default: in memory only"), shown as is. */
  defaultNote?: string;
  /** Said after the variable's name in --help (every flag has one, and --help names each): why to use it. */
  envInHelp?: string;
}

/** A flag that sets a NodeConfig key; the kind must produce that key's type. */
function sets<K extends keyof NodeConfig>(key: K, row: Row<NonNullable<NodeConfig[K]>>): ServeFlag<NodeConfig[K]> {
  if (row.default !== true) return build(row, key, row.default);
  const defaults: Partial<NodeConfig> = DEFAULTS;
  const value = defaults[key];
  if (value === undefined || value === null) throw new Error(`--${row.name}: config.ts has no default ${key} to show`);
  return build(row, key, row.kind.show(value));
}

/** A flag `serve` reads itself rather than passing to the node. */
function reads<T>(row: Row<T> & { default?: string }): ServeFlag<T> {
  return build(row, undefined, row.default);
}

function build<T>(row: Row<T>, key: keyof NodeConfig | undefined, shownDefault: string | undefined): ServeFlag<T> {
  const env = envName(row.name);
  const aliases = row.aliases ?? [];
  const notes = [
    shownDefault === undefined ? row.defaultNote : `default ${shownDefault}`,
    ...aliases.map((a) => `alias --${a}`),
    // Every flag has its variable (README): --help named a few, as if the rest had none.
    row.envInHelp === undefined ? `env ${env}` : `env ${env}: ${row.envInHelp}`,
  ].filter((n) => n !== undefined);
  const description = notes.length === 0 ? row.help : `${row.help} (${notes.join("; ")})`;
  return { name: row.name, aliases, env, kind: row.kind, key, description, shownDefault };
}

const TIMINGS = reads({
  name: "timings",
  kind: kinds.choice(["default", "fast"] as const),
  help: "Cluster timing preset: default or fast (tests, local experiments)",
});
const DEFAULT_LOG_LEVEL: LogLevel = "info";
const LOG_LEVEL = reads({
  name: "log-level",
  kind: kinds.choice(LOG_LEVELS),
  help: "Least severe log lines written: debug, info, warn or error",
  default: DEFAULT_LOG_LEVEL,
});
const LOG_FORMAT = reads({
  name: "log-format",
  kind: kinds.choice<LogFormat>(["json", "text"]),
  help: "json (one object per line) or text",
  defaultNote: "default: text on a terminal, else json",
});

/** Every flag of `serve`, in the order of its --help. */
export const SERVE_FLAGS: readonly ServeFlag[] = [
  // bindPort is huton's spelling (`makhzen agent -name agent1 -bindPort 8100`).
  sets("port", { name: "port", aliases: ["bindPort"], kind: kinds.integer(0, 65535), help: "Port to listen on", default: true }),
  sets("respPort", {
    name: "resp-port",
    kind: kinds.integer(0, 65535),
    help: "Also speak the Redis protocol (RESP2/RESP3) on this port, e.g. 6379",
    defaultNote: "default: off",
  }),
  sets("host", { name: "host", kind: kinds.text, help: "Interface to listen on", default: true }),
  sets("name", { name: "name", kind: kinds.text, help: "Node name, unique in the cluster", defaultNote: "default host:port" }),
  // Bounds below are config.ts's, in the units a user types; test/cli/serve-flags.test.ts checks they agree.
  sets("maxKeyBytes", { name: "max-key-bytes", kind: kinds.size("1", "64kb"), help: "Longest key in bytes", default: true }),
  sets("maxValueBytes", { name: "max-value-bytes", kind: kinds.size("0", "512mb"), help: "Longest value in bytes, e.g. 1mb", default: true }),
  sets("maxMemoryBytes", { name: "max-memory", kind: kinds.size(), help: "Data budget in bytes, e.g. 512mb; 0 = unlimited", default: true }),
  sets("eviction", {
    name: "eviction",
    kind: kinds.choice(["noeviction", "lru"] as const),
    help: "When --max-memory is reached: noeviction (507) or lru",
    default: true,
  }),
  sets("tombstoneTtlMs", { name: "tombstone-ttl", kind: kinds.duration(), help: "How long deletes are remembered, e.g. 24h", default: true }),
  sets("dataDir", { name: "data-dir", kind: kinds.file, help: "Keep a durable copy in this directory", defaultNote: "default: in memory only" }),
  sets("fsync", {
    name: "fsync",
    kind: kinds.choice(["always", "everysec", "no"] as const),
    help: "With --data-dir: always, everysec or no, as Redis's appendfsync",
    default: true,
  }),
  sets("peers", {
    name: "peers",
    aliases: ["cluster"],
    kind: kinds.urls,
    help: "Seed URLs to join, comma-separated; any one live seed is enough",
  }),
  sets("replicas", {
    name: "replicas",
    kind: kinds.integer(1, MAX_REPLICAS),
    help: "Owners of each key; the same on every node (at least the member count: every node holds every key)",
    default: true,
  }),
  sets("advertise", { name: "advertise", kind: kinds.url, help: "URL peers use to reach this node", defaultNote: "default http://host:port" }),
  TIMINGS,
  sets("heartbeatIntervalMs", { name: "heartbeat-interval", kind: kinds.duration("10ms", "1h"), help: "Heartbeat period, e.g. 1s", default: true }),
  sets("antiEntropyIntervalMs", { name: "anti-entropy-interval", kind: kinds.duration("10ms", "24h"), help: "Anti-entropy period, e.g. 30s", default: true }),
  sets("requestTimeoutMs", { name: "request-timeout", kind: kinds.duration("10ms", "1h"), help: "Timeout of a peer request, e.g. 5s", default: true }),
  sets("queueMaxRecords", {
    name: "queue-max",
    kind: kinds.integer(1, 1e9),
    help: "Records queued per peer before the queue is dropped for anti-entropy",
    default: true,
  }),
  sets("queueMaxBytes", {
    name: "queue-max-bytes",
    kind: kinds.size("1kb"),
    help: "Bytes queued per peer before the queue is dropped for anti-entropy, e.g. 256mb",
    default: true,
  }),
  sets("reapDeadAfterMs", {
    name: "reap-dead-after",
    kind: kinds.duration(undefined, "365d"),
    help: "How long a dead member is kept before it is forgotten, e.g. 24h",
    default: true,
  }),
  LOG_LEVEL,
  LOG_FORMAT,
  sets("maxClockOffsetMs", {
    name: "max-clock-offset",
    kind: kinds.duration("10ms", "24h"),
    help: "Furthest a record may be stamped ahead of a receiver's clock; a node whose clock is past 80% of it from the cluster's median refuses writes, e.g. 500ms",
    default: true,
  }),
  sets("drainTimeoutMs", { name: "drain-timeout", kind: kinds.duration("0s", "1h"), help: "How long a stopping node waits for the requests in flight, then for its queues to drain, e.g. 10s", default: true }),
  sets("token", {
    name: "token",
    kind: kinds.secret(),
    help: "Bearer token every client route except /healthz and /readyz requires",
    envInHelp: "keeps it out of ps",
  }),
  sets("readToken", { name: "read-token", kind: kinds.secret(), help: "A second token that may only read" }),
  sets("clusterSecret", {
    name: "cluster-secret",
    // HMACs captured on the wire allow an offline guess of the secret; 16 random characters put that out of reach.
    kind: kinds.secret(16, " (try: openssl rand -hex 32)"),
    help: "Shared secret signing every /internal/ request and answer; the same on every node, 16+ characters",
  }),
  sets("tlsCertFile", { name: "tls-cert", kind: kinds.file, help: "PEM certificate chain file: serve https (with --tls-key)" }),
  sets("tlsKeyFile", { name: "tls-key", kind: kinds.file, help: "PEM private key file of --tls-cert" }),
  sets("tlsCaFile", {
    name: "tls-ca",
    kind: kinds.file,
    help: "PEM CA file trusted for peers' https certificates",
    defaultNote: "default: the system's CAs",
  }),
  sets("insecure", {
    name: "insecure",
    kind: kinds.boolean,
    help: "Accept the risk: listen beyond loopback without --token, or with peers beyond it without --cluster-secret",
  }),
  sets("bodyTimeoutMs", { name: "body-timeout", kind: kinds.duration("100ms", "1h"), help: "How long a request body may take to arrive, e.g. 30s", default: true }),
  sets("idleTimeoutMs", {
    name: "idle-timeout",
    kind: kinds.duration("1s", "255s"),
    help: "How long a keep-alive connection may stay silent, 1s to 255s",
    default: true,
  }),
  sets("maxClients", {
    name: "max-clients",
    kind: kinds.integer(1, 1_000_000),
    help: "Client connections open at once, HTTP (peers' included) and RESP together, as Redis's maxclients",
    default: true,
  }),
];

/** citty's args for `serve`, one per row. */
export const serveArgs: ArgsDef = Object.fromEntries(
  SERVE_FLAGS.map((f) => [
    f.name,
    { type: f.kind.type, description: f.description, ...(f.aliases.length > 0 ? { alias: [...f.aliases] } : {}) },
  ]),
);

/**
 * A flag's value: the command line (where citty has already folded aliases into the
 * name), else its MAKHZEN_* variable, parsed by its kind; undefined when neither is set.
 * Throws a usage error (exit 2) naming the flag, or the variable when the value came from there.
 */
export function readFlag<T>(f: ServeFlag<T>, args: Record<string, unknown>, env?: NodeJS.ProcessEnv): T | undefined {
  // Parsed under the name of where it came from, so an error names MAKHZEN_PORT for a bad variable.
  const raw = flagFrom(args, f.name, env, f.env);
  return raw === undefined ? undefined : f.kind.parse(raw.from, raw.value);
}

/**
 * Turns `serve` flags (and MAKHZEN_* variables) into node options: only what was
 * given, so createNode fills in the rest. Pure: reads nothing but its arguments
 * (`env` defaults to process.env). Throws a usage error naming the flag on bad input.
 */
export function serveOptions(args: Record<string, unknown>, env?: NodeJS.ProcessEnv): NodeOptions {
  // A preset supplies defaults; a flag given beside it still wins.
  const preset: NodeOptions = readFlag(TIMINGS, args, env) === "fast" ? FAST_TIMINGS : {};
  const given: Record<string, unknown> = {};
  for (const f of SERVE_FLAGS) {
    if (f.key === undefined) continue;
    const value = readFlag(f, args, env);
    if (value !== undefined) given[f.key] = value;
  }
  return { ...preset, ...given };
}

/** The NodeConfig keys set by a flag on the command line, not by a MAKHZEN_* variable. */
export function typedKeys(args: Record<string, unknown>): Set<keyof NodeConfig> {
  const keys = new Set<keyof NodeConfig>();
  for (const f of SERVE_FLAGS) if (f.key !== undefined && args[f.name] !== undefined && args[f.name] !== "") keys.add(f.key);
  return keys;
}

/**
 * Rules between flags, over serveOptions' result, checked before the node is created
 * so the error names the flags as typed; resolveConfig checks the same for embedders,
 * naming the fields. Throws a usage error (exit 2).
 *
 * A flag that would have no effect (`--fsync` without `--data-dir`) is refused when
 * it was typed on the command line (`typed`, from typedKeys; every key of `o` when
 * not given): the user asked for something they would not get. The same value from
 * a MAKHZEN_* variable is a standing default, shared by every node started in that
 * environment, so one that has nothing to apply it to simply does not use it: it is
 * dropped from `o` here.
 */
export function checkFlagsTogether(o: NodeOptions, typed: ReadonlySet<keyof NodeConfig> = new Set(Object.keys(o) as (keyof NodeConfig)[])): void {
  if (o.fsync !== undefined && o.dataDir === undefined) {
    if (typed.has("fsync")) throw usageError("--fsync needs --data-dir: without one nothing is written to disk, so there is nothing to fsync");
    delete o.fsync; // MAKHZEN_FSYNC, unused here (resolveConfig refuses a given fsync without a data dir)
  }
  if (o.eviction !== undefined && !(o.maxMemoryBytes !== undefined && o.maxMemoryBytes > 0)) {
    if (typed.has("eviction")) throw usageError("--eviction needs --max-memory above 0: without a memory budget nothing is ever evicted");
    delete o.eviction; // MAKHZEN_EVICTION, likewise
  }
  // Named as set: `--read-token` typed, or MAKHZEN_READ_TOKEN from the environment. One not set at all is named as the flag to add.
  const said = (key: keyof NodeConfig): string => {
    const f = SERVE_FLAGS.find((row) => row.key === key)!;
    return typed.has(key) || o[key] === undefined ? `--${f.name}` : f.env;
  };
  if (o.readToken !== undefined && o.token === undefined) throw usageError(`${said("readToken")} needs --token: without it every client may write anyway`);
  if (o.readToken !== undefined && o.readToken === o.token) throw usageError(`${said("readToken")} must differ from ${said("token")}`);
  for (const token of ["token", "readToken"] as const) {
    if (o.clusterSecret !== undefined && o[token] === o.clusterSecret) {
      throw usageError(`${said(token)} must differ from ${said("clusterSecret")}: a client holding the secret can act as a peer${token === "readToken" ? ", and write" : ""}`);
    }
  }
  if ((o.tlsCertFile === undefined) !== (o.tlsKeyFile === undefined)) {
    throw usageError(`${said("tlsCertFile")} and ${said("tlsKeyFile")} go together: give both or neither`);
  }
  // The timings without flags of their own come from the preset (--timings) or the defaults.
  // Named neutrally: the preset may come from --timings or MAKHZEN_TIMINGS.
  const preset = o.suspectAfterMs === undefined ? "" : " under the fast timings";
  const suspect = o.suspectAfterMs ?? DEFAULTS.suspectAfterMs;
  if (o.heartbeatIntervalMs !== undefined && o.heartbeatIntervalMs > suspect) {
    throw usageError(
      `${said("heartbeatIntervalMs")} must be at most ${showDuration(suspect)} (the silence after which a member is suspect${preset}), not ${showDuration(o.heartbeatIntervalMs)}`,
    );
  }
  const dead = o.deadAfterMs ?? DEFAULTS.deadAfterMs;
  if (o.reapDeadAfterMs !== undefined && o.reapDeadAfterMs < dead) {
    throw usageError(
      `${said("reapDeadAfterMs")} must be at least ${showDuration(dead)} (the silence after which a member is dead${preset}), not ${showDuration(o.reapDeadAfterMs)}`,
    );
  }
}

/**
 * A config error (resolveConfig's INVALID_CONFIG, which names fields) reworded with
 * the flags that set those fields: `tlsCertFile "x" cannot be read` becomes
 * `--tls-cert "x" cannot be read`. The flag kinds and checkTogether catch what they
 * can first; this is for what only the node can find. A quoted value is the user's
 * own, and kept as typed: `name "bad name"` must not become `--name "bad --name"`.
 */
export function namingFlags(message: string, fromVariables: ReadonlySet<keyof NodeConfig> = new Set()): string {
  return message
    .split(QUOTED)
    .map((part, i) => (i % 2 === 1 ? part : fieldsAsFlags(part, fromVariables)))
    .join("");
}

/** The NodeConfig keys a MAKHZEN_* variable set and no flag did: what namingFlags names by the variable. */
export function variableKeys(args: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Set<keyof NodeConfig> {
  const keys = new Set<keyof NodeConfig>();
  const typed = typedKeys(args);
  for (const f of SERVE_FLAGS) if (f.key !== undefined && !typed.has(f.key) && env[f.env] !== undefined && env[f.env] !== "") keys.add(f.key);
  return keys;
}

/** A double-quoted value (JSON.stringify's form), captured so split keeps it. */
const QUOTED = /("(?:[^"\\]|\\.)*")/;

function fieldsAsFlags(text: string, fromVariables: ReadonlySet<keyof NodeConfig>): string {
  let out = text;
  for (const f of SERVE_FLAGS) {
    if (f.key === undefined) continue;
    // A setting from the environment is named as the variable the user set (MAKHZEN_HOST), also where a check named the flag.
    const said = fromVariables.has(f.key) ? f.env : `--${f.name}`;
    // Not after a dash: a message that names the flag already (a peer of an older version) stays as it is.
    out = out.replace(new RegExp(`(?<!-)\\b${f.key}\\b`, "g"), said);
    if (fromVariables.has(f.key)) out = out.replace(new RegExp(`(?<![\\w-])--${f.name}(?![\\w-])`, "g"), said);
  }
  return out;
}

/**
 * Whether --log-format json (or MAKHZEN_LOG_FORMAT=json) was asked for, not only the
 * default on a pipe: then why `serve` could not start or stopped is a JSON log line
 * too (serve.ts), where by default it is the one plain `makhzen:` line scripts read.
 */
export function jsonLogsAsked(args: Record<string, unknown>, env?: NodeJS.ProcessEnv): boolean {
  return readFlag(LOG_FORMAT, args, env) === "json";
}

/**
 * The logger of `serve`, on stderr: --log-level (default info), --log-format
 * (default text when stderr is a terminal, json otherwise: what log shippers read).
 */
export function serveLogOptions(
  args: Record<string, unknown>,
  env?: NodeJS.ProcessEnv,
  stderrIsTTY = process.stderr.isTTY === true,
): { level: LogLevel; format: LogFormat } {
  return {
    level: readFlag(LOG_LEVEL, args, env) ?? DEFAULT_LOG_LEVEL,
    format: readFlag(LOG_FORMAT, args, env) ?? (stderrIsTTY ? "text" : "json"),
  };
}
