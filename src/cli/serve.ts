import { defineCommand } from "citty";
import { DEFAULTS, type NodeOptions } from "../config.ts";
import { MakhzenError } from "../errors.ts";
import { createNode } from "../node.ts";
import { VERSION } from "../meta.ts";
import { CliError, usageError } from "./_errors.ts";
import { flag, parseBytes, parseChoice, parseDurationMs, parseInteger } from "./_flags.ts";

export const serveArgs = {
  port: { type: "string", description: `Port to listen on (default ${DEFAULTS.port}; env MAKHZEN_PORT)` },
  host: { type: "string", description: `Interface to listen on (default ${DEFAULTS.host}; env MAKHZEN_HOST)` },
  name: { type: "string", description: "Node name, unique in the cluster (default host:port; env MAKHZEN_NAME)" },
  "max-key-bytes": { type: "string", description: `Longest key in bytes (default ${DEFAULTS.maxKeyBytes})` },
  "max-value-bytes": { type: "string", description: `Longest value in bytes, e.g. 1mb (default 1mb)` },
  "max-memory": { type: "string", description: "Data budget in bytes, e.g. 512mb; 0 = unlimited (default 0)" },
  eviction: { type: "string", description: "When --max-memory is reached: noeviction (507) or lru (default noeviction)" },
  "tombstone-ttl": { type: "string", description: "How long deletes are remembered, e.g. 24h (default 24h)" },
} as const;

/** Turns `serve` flags (and MAKHZEN_* variables) into node options; throws a usage error on bad input. */
export function serveOptions(args: Record<string, unknown>, env?: NodeJS.ProcessEnv): NodeOptions {
  const get = (name: string) => flag(args, name, env);
  const opt = <T>(name: string, parse: (name: string, v: string) => T): T | undefined => {
    const v = get(name);
    return v === undefined ? undefined : parse(name, v);
  };
  return {
    port: opt("port", (n, v) => parseInteger(n, v, 0, 65535)),
    host: get("host"),
    name: get("name"),
    maxKeyBytes: opt("max-key-bytes", parseBytes),
    maxValueBytes: opt("max-value-bytes", parseBytes),
    maxMemoryBytes: opt("max-memory", parseBytes),
    eviction: opt("eviction", (n, v) => parseChoice(n, v, ["noeviction", "lru"] as const)),
    tombstoneTtlMs: opt("tombstone-ttl", parseDurationMs),
  };
}

export const serve = defineCommand({
  meta: { name: "serve", alias: "agent", description: "Start a node" },
  args: serveArgs,
  async run({ args }) {
    const options = serveOptions(args);
    let node;
    try {
      node = createNode(options);
    } catch (e) {
      if (e instanceof MakhzenError) throw usageError(e.message);
      throw e;
    }
    let url: string;
    try {
      ({ url } = await node.listen());
    } catch (e) {
      const why = (e as { code?: string }).code === "EADDRINUSE" ? "address in use" : (e as Error).message;
      throw new CliError(`cannot listen on ${node.config.host}:${node.config.port}: ${why}`);
    }
    console.log(`makhzen ${VERSION}: node ${node.name} listening on ${url}`);
    // Resolve only when a signal arrives, so the CLI runner does not exit under a live server.
    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        console.log(`makhzen: ${signal} received, stopping`);
        node.close().then(resolve, resolve);
      };
      process.once("SIGINT", () => stop("SIGINT"));
      process.once("SIGTERM", () => stop("SIGTERM"));
    });
  },
});
