import { resolve } from "node:path";
import { defineCommand } from "citty";
import type { NodeConfig } from "../config.ts";
import { isJoinRefusal, MakhzenError } from "../errors.ts";
import { createLogger, type Logger, type LogLevel } from "../ops/log.ts";
import { createNode, type MakhzenNode } from "../node.ts";
import { VERSION } from "../meta.ts";
import { CliError } from "./_errors.ts";
import { checkFlagsTogether, jsonLogsAsked, namingFlags, serveArgs, serveLogOptions, serveOptions, typedKeys, variableKeys } from "./serve-flags.ts";

export { serveArgs, serveLogOptions, serveOptions } from "./serve-flags.ts";

export const serve = defineCommand({
  meta: { name: "serve", alias: "agent", description: "Start a node" },
  args: serveArgs,
  async run({ args }) {
    const options = serveOptions(args);
    checkFlagsTogether(options, typedKeys(args));
    const logOptions = serveLogOptions(args);
    const log = createLogger(logOptions);
    try {
      await serveNode(args, options, logOptions, log);
    } catch (e) {
      // Asked for --log-format json, the node's stderr is JSON lines for a log shipper or `jq`: why it could not
      // start (a port taken, a data dir, a join refused) or stopped is one of them, not a plain line among them.
      // A bad flag, refused before there is a log, stays a plain line for the person who typed it; so does this
      // when JSON is only the default on a pipe, where scripts read the one `makhzen:` line.
      if (!(e instanceof CliError) || !jsonLogsAsked(args)) throw e;
      log.error(e.message, { exitCode: e.exitCode });
      throw new CliError(e.message, e.exitCode, true);
    }
  },
});

async function serveNode(args: Parameters<typeof serveOptions>[0], options: ReturnType<typeof serveOptions>, logOptions: ReturnType<typeof serveLogOptions>, log: Logger): Promise<void> {
  // Settings from MAKHZEN_* variables are named by the variable in what the node refuses.
  const naming = (message: string) => namingFlags(message, variableKeys(args));
  // Signals are taken from before the start: a SIGTERM while the node joins its
  // seeds (each may take --request-timeout) must stop it with exit 0, not kill it.
  // During the start there is nothing to hand off and no one to say goodbye to:
  // it closes. Once serving, it leaves gracefully (node.leave). A second signal
  // while stopping is ignored, not fatal: `npm start` and the npm launcher forward
  // the terminal's Ctrl-C to a node that got it already, and the drain is bounded
  // by --drain-timeout anyway (SIGKILL is the way to not wait).
  let node: MakhzenNode | undefined;
  let serving = false;
  let stopping = false;
  const stopped = Promise.withResolvers<void>();
  const stop = (signal: string) => {
    if (stopping) return log.info("already stopping", { signal });
    stopping = true;
    const done = (e?: unknown) => {
      // Writes the data dir could not take at the close are lost: not a clean stop (exit 1, saying so).
      if (e instanceof MakhzenError && e.code === "PERSISTENCE_FAILED") return stopped.reject(new CliError(`stopped, but ${e.message}`));
      if (e !== undefined) log.error("leave failed; stopping anyway", { error: e });
      else log.info("stopped", { signal });
      stopped.resolve();
    };
    if (!serving) {
      log.info("stopping before the start finished: closing", { signal });
      if (node === undefined) return done(); // the start sees `stopping` once the node is made
      node.close().then(() => done(), done);
      return;
    }
    log.info("stopping: answering the requests in flight, draining the queues and leaving the cluster", { signal });
    node!.leave().then(() => done(), done);
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
  // A closed terminal (or the launcher passing it on): leave as gracefully as on SIGTERM, not die mid-write.
  process.on("SIGHUP", () => stop("SIGHUP"));

  try {
    // The node reads the TLS files once, here (a pipe, `--tls-key <(...)`, can be read only once):
    // what it refuses is a usage error, worded with the flags.
    node = createNode({ ...options, logger: log });
  } catch (e) {
    // A bad option is a usage error (2), worded with the flags; a data dir that cannot be used is a failure (1).
    if (e instanceof MakhzenError) throw new CliError(e.code === "INVALID_CONFIG" ? naming(e.message) : e.message, e.code === "DATA_DIR" ? 1 : 2);
    throw e;
  }
  if (stopping) {
    await node.close(); // a signal while the data dir loaded
    return stopped.promise;
  }
  let url: string;
  let respUrl: string | undefined;
  let maxClients: number;
  try {
    ({ url, respUrl, maxClients } = await node.listen());
  } catch (e) {
    // Stopped by a signal during the start: whatever the start then failed with is the stop's.
    if (stopping) return stopped.promise;
    // Configuration errors a seed found: no retry would mend them, so exit 1 with its reason.
    // The node words its refusals with option names; namingFlags makes them the flags
    // (not NAME_TAKEN's: its "node name" is plain words, and a node's name is no option).
    if (isJoinRefusal(e)) throw new CliError(`cannot join the cluster: ${e.code === "NAME_TAKEN" ? e.message : naming(e.message)}`);
    // PROTECTED_MODE, LISTEN (a port it cannot bind: ops/listen.ts), INVALID_CONFIG (TLS files), and any other the node words.
    if (e instanceof MakhzenError) throw new CliError(naming(e.message));
    throw e; // a bug: its stack is printed
  }
  if (stopping) return stopped.promise;
  serving = true;
  logStarted(log, node.config, { url, respUrl, maxClients }, logOptions.level);
  // Another process took this node's name, or a seed refused a later join (a node
  // that started alone): it has stopped writing and handed off; exit 1.
  const lost = node.fatal.then(async (e) => {
    // A close that loses pending writes logs so itself; the refusal is why this node stops.
    await node.close().catch(() => undefined);
    // Worded as the same refusal at start is: option names as the flags.
    const [message, fix] = e.code === "NAME_TAKEN" ? [e.message, " Give it another --name."] : [naming(e.message), ""];
    throw new CliError(`${e.code}: ${message}; this node stopped.${fix}`, 1);
  });
  await Promise.race([stopped.promise, lost]);
}

/** The start-up summary: one line with what an operator checks first. */
function logStarted(log: Logger, c: NodeConfig, listening: { url: string; respUrl?: string; maxClients: number }, level: LogLevel): void {
  const { url, respUrl, maxClients } = listening;
  log.info("started", {
    name: c.name,
    url,
    version: VERSION,
    advertise: c.advertise ?? url,
    // The Redis-protocol listener (--resp-port), or null when off.
    respUrl: respUrl ?? null,
    // Where it is, not as typed: a relative path is read from the working directory, which the log does not show.
    dataDir: c.dataDir === undefined ? null : resolve(c.dataDir),
    fsync: c.dataDir === undefined ? null : c.fsync,
    peers: c.peers,
    replicas: c.replicas,
    maxKeyBytes: c.maxKeyBytes,
    maxValueBytes: c.maxValueBytes,
    maxMemoryBytes: c.maxMemoryBytes,
    eviction: c.eviction,
    // In force: --max-clients, lowered to what the open-files limit holds (so it may be less than asked).
    maxClients,
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
