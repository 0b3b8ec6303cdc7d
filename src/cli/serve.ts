import { defineCommand } from "citty";
import type { NodeConfig } from "../config.ts";
import { isJoinRefusal, MakhzenError } from "../errors.ts";
import { createLogger, type Logger, type LogLevel } from "../ops/log.ts";
import { createNode } from "../node.ts";
import { VERSION } from "../meta.ts";
import { CliError } from "./_errors.ts";
import { checkServeTls } from "./_pem.ts";
import { checkFlagsTogether, namingFlags, serveArgs, serveLogOptions, serveOptions, typedKeys } from "./serve-flags.ts";

export { serveArgs, serveLogOptions, serveOptions } from "./serve-flags.ts";

export const serve = defineCommand({
  meta: { name: "serve", alias: "agent", description: "Start a node" },
  args: serveArgs,
  async run({ args }) {
    const options = serveOptions(args);
    checkFlagsTogether(options, typedKeys(args));
    const logOptions = serveLogOptions(args);
    checkServeTls({ cert: options.tlsCertFile, key: options.tlsKeyFile, ca: options.tlsCaFile });
    const log = createLogger(logOptions);
    let node;
    try {
      node = createNode({ ...options, logger: log });
    } catch (e) {
      // A bad option is a usage error (2), worded with the flags; a data dir that cannot be used is a failure (1).
      if (e instanceof MakhzenError) throw new CliError(e.code === "INVALID_CONFIG" ? namingFlags(e.message) : e.message, e.code === "DATA_DIR" ? 1 : 2);
      throw e;
    }
    let url: string;
    let respUrl: string | undefined;
    try {
      ({ url, respUrl } = await node.listen());
    } catch (e) {
      // Configuration errors a seed found: no retry would mend them, so exit 1 with its reason.
      if (isJoinRefusal(e)) throw new CliError(`cannot join the cluster: ${e.message}`);
      if (e instanceof MakhzenError && e.code === "PROTECTED_MODE") throw new CliError(e.message);
      const why = (e as { code?: string }).code === "EADDRINUSE" ? "address in use" : (e as Error).message;
      // Bun.listen's error (the RESP listener) carries its port; Bun.serve's (HTTP) does not.
      const { port, respPort } = node.config;
      const resp = respPort !== undefined && respPort !== port && (e as { port?: unknown }).port === respPort;
      throw new CliError(`cannot listen on ${node.config.host}:${resp ? respPort : port}: ${why} (${resp ? "--resp-port" : "--port"})`);
    }
    logStarted(log, node.config, url, respUrl, logOptions.level);
    // Resolve only when a signal arrives, so the CLI runner does not exit under a live server.
    // A second signal while stopping is ignored, not fatal: `npm start` and the npm
    // launcher forward the terminal's Ctrl-C to a node that got it already, and the
    // drain is bounded by --drain-timeout anyway (SIGKILL is the way to not wait).
    let stopping = false;
    const stopped = new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        if (stopping) return log.info("already stopping", { signal });
        stopping = true;
        log.info("stopping: answering the requests in flight, draining the queues and leaving the cluster", { signal });
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
      process.on("SIGINT", () => stop("SIGINT"));
      process.on("SIGTERM", () => stop("SIGTERM"));
      // A closed terminal (or the launcher passing it on): leave as gracefully as on SIGTERM, not die mid-write.
      process.on("SIGHUP", () => stop("SIGHUP"));
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
function logStarted(log: Logger, c: NodeConfig, url: string, respUrl: string | undefined, level: LogLevel): void {
  log.info("started", {
    name: c.name,
    url,
    version: VERSION,
    advertise: c.advertise ?? url,
    // The Redis-protocol listener (--resp-port), or null when off.
    respUrl: respUrl ?? null,
    dataDir: c.dataDir ?? null,
    fsync: c.dataDir === undefined ? null : c.fsync,
    peers: c.peers,
    replicas: c.replicas,
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
