import { defineCommand } from "citty";
import { DEFAULTS, FAST_TIMINGS, type NodeConfig, type NodeOptions } from "../config.ts";
import { MakhzenError } from "../errors.ts";
import { createLogger, LOG_LEVELS, type Logger, type LogFormat, type LogLevel } from "../ops/log.ts";
import { createNode } from "../node.ts";
import { VERSION } from "../meta.ts";
import { CliError, usageError } from "./_errors.ts";
import { flag, parseBytes, parseChoice, parseDurationMs, parseDurationWithin, parseInteger } from "./_flags.ts";

export const serveArgs = {
  port: { type: "string", description: `Port to listen on (default ${DEFAULTS.port}; env MAKHZEN_PORT)` },
  host: { type: "string", description: `Interface to listen on (default ${DEFAULTS.host}; env MAKHZEN_HOST)` },
  name: { type: "string", description: "Node name, unique in the cluster (default host:port; env MAKHZEN_NAME)" },
  "max-key-bytes": { type: "string", description: `Longest key in bytes (default ${DEFAULTS.maxKeyBytes})` },
  "max-value-bytes": { type: "string", description: `Longest value in bytes, e.g. 1mb (default 1mb)` },
  "max-memory": { type: "string", description: "Data budget in bytes, e.g. 512mb; 0 = unlimited (default 0)" },
  eviction: { type: "string", description: "When --max-memory is reached: noeviction (507) or lru (default noeviction)" },
  "tombstone-ttl": { type: "string", description: "How long deletes are remembered, e.g. 24h (default 24h)" },
  "data-dir": { type: "string", description: "Keep a durable copy in this directory (default: in memory only)" },
  fsync: { type: "string", description: "With --data-dir: always, everysec or no, as Redis's appendfsync (default everysec)" },
  peers: {
    type: "string",
    alias: "cluster",
    description: "Seed URLs to join, comma-separated; any one live seed is enough (alias --cluster; env MAKHZEN_PEERS)",
  },
  advertise: { type: "string", description: "URL peers use to reach this node (default http://host:port)" },
  timings: { type: "string", description: "Cluster timing preset: default or fast (tests, local experiments)" },
  "heartbeat-interval": { type: "string", description: `Heartbeat period, e.g. 1s (default ${DEFAULTS.heartbeatIntervalMs}ms)` },
  "anti-entropy-interval": { type: "string", description: `Anti-entropy period, e.g. 30s (default ${DEFAULTS.antiEntropyIntervalMs}ms)` },
  "request-timeout": { type: "string", description: `Timeout of a peer request, e.g. 5s (default ${DEFAULTS.requestTimeoutMs}ms)` },
  "queue-max": { type: "string", description: `Records queued per peer before the queue is dropped for anti-entropy (default ${DEFAULTS.queueMaxRecords})` },
  "queue-max-bytes": { type: "string", description: `Bytes queued per peer before the queue is dropped for anti-entropy, e.g. 256mb (default ${DEFAULTS.queueMaxBytes})` },
  "reap-dead-after": { type: "string", description: `How long a dead member is kept before it is forgotten, e.g. 24h (default ${DEFAULTS.reapDeadAfterMs}ms)` },
  "log-level": { type: "string", description: "Least severe log lines written: debug, info, warn or error (default info; env MAKHZEN_LOG_LEVEL)" },
  "log-format": { type: "string", description: "json (one object per line) or text (default: text on a terminal, else json; env MAKHZEN_LOG_FORMAT)" },
  "max-clock-offset": {
    type: "string",
    description: `Furthest a node's clock may be from the cluster's median before it refuses writes, e.g. 500ms (default ${DEFAULTS.maxClockOffsetMs}ms)`,
  },
  "drain-timeout": { type: "string", description: `How long a leaving node drains its queues, e.g. 10s (default ${DEFAULTS.drainTimeoutMs}ms)` },
  token: { type: "string", description: "Bearer token every client route except /healthz and /readyz requires (env MAKHZEN_TOKEN: keeps it out of ps)" },
  "read-token": { type: "string", description: "A second token that may only read (env MAKHZEN_READ_TOKEN)" },
  "cluster-secret": { type: "string", description: "Shared secret signing every /internal/ request and answer; the same on every node, 16+ characters (env MAKHZEN_CLUSTER_SECRET)" },
  "tls-cert": { type: "string", description: "PEM certificate chain file: serve https (with --tls-key)" },
  "tls-key": { type: "string", description: "PEM private key file of --tls-cert" },
  "tls-ca": { type: "string", description: "PEM CA file trusted for peers' https certificates (default: the system's CAs)" },
  insecure: { type: "boolean", description: "Accept the risk: listen beyond loopback without --token, or with peers beyond it without --cluster-secret" },
  "body-timeout": { type: "string", description: `How long a request body may take to arrive, e.g. 30s (default ${DEFAULTS.bodyTimeoutMs}ms)` },
  "idle-timeout": { type: "string", description: `How long a keep-alive connection may stay silent, 1s to 255s (default ${DEFAULTS.idleTimeoutMs}ms)` },
} as const;

/** Turns `serve` flags (and MAKHZEN_* variables) into node options; throws a usage error on bad input. */
export function serveOptions(args: Record<string, unknown>, env?: NodeJS.ProcessEnv): NodeOptions {
  const get = (name: string) => flag(args, name, env);
  const opt = <T>(name: string, parse: (name: string, v: string) => T): T | undefined => {
    const v = get(name);
    return v === undefined ? undefined : parse(name, v);
  };
  // A preset supplies defaults; a flag given beside it still wins.
  const preset: NodeOptions =
    opt("timings", (n, v) => parseChoice(n, v, ["default", "fast"] as const)) === "fast" ? FAST_TIMINGS : {};
  const given: NodeOptions = {
    port: opt("port", (n, v) => parseInteger(n, v, 0, 65535)),
    host: get("host"),
    name: get("name"),
    maxKeyBytes: opt("max-key-bytes", parseBytes),
    maxValueBytes: opt("max-value-bytes", parseBytes),
    maxMemoryBytes: opt("max-memory", parseBytes),
    eviction: opt("eviction", (n, v) => parseChoice(n, v, ["noeviction", "lru"] as const)),
    tombstoneTtlMs: opt("tombstone-ttl", parseDurationMs),
    dataDir: get("data-dir"),
    fsync: opt("fsync", (n, v) => parseChoice(n, v, ["always", "everysec", "no"] as const)),
    peers: opt("peers", parseUrlList),
    advertise: opt("advertise", parseUrl),
    heartbeatIntervalMs: opt("heartbeat-interval", parseDurationMs),
    antiEntropyIntervalMs: opt("anti-entropy-interval", parseDurationMs),
    requestTimeoutMs: opt("request-timeout", parseDurationMs),
    queueMaxRecords: opt("queue-max", (n, v) => parseInteger(n, v, 1, 1e9)),
    queueMaxBytes: opt("queue-max-bytes", parseBytes),
    reapDeadAfterMs: opt("reap-dead-after", parseDurationMs),
    drainTimeoutMs: opt("drain-timeout", parseDurationMs),
    // The bounds of config.ts's maxClockOffsetMs, in the units a user types.
    maxClockOffsetMs: opt("max-clock-offset", (n, v) => parseDurationWithin(n, v, "10ms", "24h")),
    token: get("token"),
    readToken: get("read-token"),
    clusterSecret: get("cluster-secret"),
    tlsCertFile: get("tls-cert"),
    tlsKeyFile: get("tls-key"),
    tlsCaFile: get("tls-ca"),
    insecure: opt("insecure", parseBoolean),
    bodyTimeoutMs: opt("body-timeout", parseDurationMs),
    idleTimeoutMs: opt("idle-timeout", parseDurationMs),
  };
  const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  return { ...preset, ...defined };
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
  const level = flag(args, "log-level", env);
  const format = flag(args, "log-format", env);
  return {
    level: level === undefined ? "info" : parseChoice("log-level", level, LOG_LEVELS),
    format: format === undefined ? (stderrIsTTY ? "text" : "json") : parseChoice("log-format", format, ["json", "text"] as const),
  };
}

export const serve = defineCommand({
  meta: { name: "serve", alias: "agent", description: "Start a node" },
  args: serveArgs,
  async run({ args }) {
    const options = serveOptions(args);
    const logOptions = serveLogOptions(args);
    const log = createLogger(logOptions);
    let node;
    try {
      node = createNode({ ...options, logger: log });
    } catch (e) {
      // A bad option is a usage error (2); a data dir that cannot be used is a failure (1).
      if (e instanceof MakhzenError) throw new CliError(e.message, e.code === "DATA_DIR" ? 1 : 2);
      throw e;
    }
    let url: string;
    try {
      ({ url } = await node.listen());
    } catch (e) {
      if (e instanceof MakhzenError && e.code === "NAME_TAKEN") throw new CliError(`cannot join the cluster: ${e.message}`);
      if (e instanceof MakhzenError && e.code === "PROTECTED_MODE") throw new CliError(e.message);
      const why = (e as { code?: string }).code === "EADDRINUSE" ? "address in use" : (e as Error).message;
      throw new CliError(`cannot listen on ${node.config.host}:${node.config.port}: ${why}`);
    }
    logStarted(log, node.config, url, logOptions.level);
    // Resolve only when a signal arrives, so the CLI runner does not exit under a live server.
    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log.info("stopping: draining the queues and leaving the cluster", { signal });
        node.leave().then(
          () => {
            log.info("stopped", { signal });
            resolve();
          },
          (e) => {
            log.error("leave failed; stopping anyway", { error: e });
            resolve();
          },
        );
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
    // Another process took this node's name: it has stopped writing and handed off; exit 1.
    const lost = node.fatal.then(async (e) => {
      await node.close();
      throw new CliError(`${e.code}: ${e.message}; this node stopped. Give it another --name.`, 1);
    });
    await Promise.race([stopped, lost]);
  },
});

/** The start-up summary: one line with what an operator checks first. */
function logStarted(log: Logger, c: NodeConfig, url: string, level: LogLevel): void {
  log.info("started", {
    name: c.name,
    url,
    version: VERSION,
    advertise: c.advertise ?? url,
    dataDir: c.dataDir ?? null,
    fsync: c.dataDir === undefined ? null : c.fsync,
    peers: c.peers,
    maxKeyBytes: c.maxKeyBytes,
    maxValueBytes: c.maxValueBytes,
    maxMemoryBytes: c.maxMemoryBytes,
    eviction: c.eviction,
    queueMaxRecords: c.queueMaxRecords,
    queueMaxBytes: c.queueMaxBytes,
    heartbeatIntervalMs: c.heartbeatIntervalMs,
    antiEntropyIntervalMs: c.antiEntropyIntervalMs,
    // What protects this node, never the secrets themselves.
    tls: c.tlsCertFile !== undefined,
    clientAuth: c.token === undefined ? "none" : c.readToken === undefined ? "token" : "token and read token",
    clusterSecret: c.clusterSecret !== undefined,
    insecure: c.insecure,
    logLevel: level,
  });
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

function parseBoolean(name: string, value: string): boolean {
  if (["true", "1", "yes"].includes(value.toLowerCase())) return true;
  if (["false", "0", "no"].includes(value.toLowerCase())) return false;
  throw usageError(`--${name} must be true or false, not "${value}"`);
}

function parseUrlList(name: string, value: string): string[] {
  const urls = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (urls.length === 0) throw usageError(`--${name} must list at least one URL`);
  return urls.map((u) => parseUrl(name, u));
}
