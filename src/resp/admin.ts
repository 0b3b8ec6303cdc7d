import { arch, platform, release } from "node:os";
import { bucketOf, DATABASES, text, rows, type CommandSpec, type Ctx } from "./command.ts";
import { REDIS_COMPAT_VERSION } from "./connection.ts";
import { RespError } from "./errors.ts";
import { globMatch } from "./glob.ts";
import { liveKeys } from "./walk.ts";
import { bulks, map, OK, verbatim, type Reply } from "./reply.ts";

/**
 * Server commands tools probe: INFO (ioredis waits for `loading:0` before it calls
 * itself ready), CONFIG GET (redis-benchmark asks for `save` and `appendonly`),
 * TIME. The values describe makhzen in Redis's terms where there is one; CONFIG
 * SET is refused, since a node is configured by its flags.
 */
const v = rows({ group: "server" });

export const ADMIN_COMMANDS: CommandSpec[] = [
  v({ name: "info", arity: -1, flags: ["loading", "stale"], keys: [0, 0, 0], since: "1.0.0", summary: "Returns information and statistics about the server.", run: info }),
  v({
    name: "time",
    arity: 1,
    flags: ["loading", "stale", "fast"],
    keys: [0, 0, 0],
    since: "2.6.0",
    summary: "Returns the server time.",
    run: (ctx) => {
      const ms = ctx.service.wallMs();
      return bulks([String(Math.floor(ms / 1000)), String((ms % 1000) * 1000)]);
    },
  }),
  v({
    name: "config",
    arity: -2,
    flags: [],
    keys: [0, 0, 0],
    since: "2.0.0",
    summary: "A container for server configuration commands.",
    subcommands: [
      v({
        name: "config|get",
        arity: -3,
        flags: ["admin", "loading", "stale"],
        keys: [0, 0, 0],
        since: "2.0.0",
        summary: "Returns the effective values of configuration parameters.",
        run: (ctx, a) => {
      const params = configParams(ctx);
          const patterns = a.slice(2).map((p) => text(p).toLowerCase());
          const hits = Object.entries(params).filter(([name]) => patterns.some((p) => globMatch(p, name)));
          return ctx.session.proto === 3 ? map(hits) : bulks(hits.flat());
        },
      }),
      v({
        name: "config|set",
        arity: -4,
        flags: ["admin", "loading", "stale"],
        keys: [0, 0, 0],
        since: "2.0.0",
        summary: "Sets configuration parameters in-flight.",
        run: (ctx, a) => {
          throw new RespError(`ERR CONFIG SET is not supported: makhzen is configured by its serve flags (parameter '${a[2]!.toString()}')`);
        },
      }),
      v({ name: "config|resetstat", arity: 2, flags: ["admin", "loading", "stale"], keys: [0, 0, 0], since: "2.0.0", summary: "Resets the server's statistics.", run: resetStats }),
    ],
  }),
];

/** What CONFIG GET answers: the parameters clients and tools read, as this node has them. */
function configParams(ctx: Ctx): Record<string, string> {
  const c = ctx.shared.config;
  return {
    databases: String(DATABASES),
    save: "",
    appendonly: c.dataDir === undefined ? "no" : "yes",
    appendfsync: c.fsync,
    maxmemory: String(c.maxMemoryBytes),
    "maxmemory-policy": c.eviction === "lru" ? "allkeys-lru" : "noeviction",
    "proto-max-bulk-len": String(c.maxValueBytes),
    port: String(ctx.shared.port),
    bind: c.host,
    timeout: "0",
    "cluster-enabled": "no",
  };
}

const SECTIONS = ["server", "clients", "memory", "persistence", "stats", "replication", "keyspace"] as const;

/** INFO [section ...]: `all`, `everything` and `default` (or none) give every section. */
function info(ctx: Ctx, a: Buffer[]): Reply {
  const asked = a.slice(1).map((s) => s.toString().toLowerCase());
  const every = asked.length === 0 || asked.some((s) => s === "all" || s === "everything" || s === "default");
  const chosen = SECTIONS.filter((s) => every || asked.includes(s));
  return verbatim(chosen.map((s) => `# ${s[0]!.toUpperCase()}${s.slice(1)}\r\n${lines(section(ctx, s))}`).join("\r\n"));
}

/** CONFIG RESETSTAT: INFO stats counts from now, as Redis's do (/metrics keeps its totals, which only go up). */
function resetStats(ctx: Ctx): Reply {
  const { stats } = ctx.shared;
  stats.connections = 0;
  stats.commands = 0;
  stats.rejected = 0;
  stats.removedBefore = { ...ctx.service.removals };
  return OK;
}

const lines = (fields: Record<string, string | number>): string =>
  Object.entries(fields)
    .map(([k, v]) => `${k}:${v}\r\n`)
    .join("");

function section(ctx: Ctx, name: (typeof SECTIONS)[number]): Record<string, string | number> {
  const { shared } = ctx;
  const uptime = Math.max(0, Math.floor((ctx.service.wallMs() - shared.startedMs) / 1000));
  switch (name) {
    case "server":
      return {
        redis_version: REDIS_COMPAT_VERSION,
        redis_mode: "standalone",
        makhzen_version: shared.version,
        makhzen_node: shared.config.name,
        os: `${platform()} ${release()} ${arch()}`,
        arch_bits: 64,
        process_id: process.pid,
        tcp_port: shared.port,
        uptime_in_seconds: uptime,
        uptime_in_days: Math.floor(uptime / 86400),
      };
    case "clients":
      return { connected_clients: shared.sessions.size, maxclients: shared.slots.max, blocked_clients: 0 };
    case "memory": {
      const used = ctx.service.bucketsHere().reduce((sum, b) => sum + b.bytes, 0);
      const c = shared.config;
      return { used_memory: used, mem_clients_normal: shared.stats.outputBytes, maxmemory: c.maxMemoryBytes, maxmemory_policy: c.eviction === "lru" ? "allkeys-lru" : "noeviction" };
    }
    case "persistence":
      return { loading: 0, async_loading: 0, rdb_changes_since_last_save: 0, aof_enabled: shared.config.dataDir === undefined ? 0 : 1 };
    case "stats":
      return {
        total_connections_received: shared.stats.connections,
        total_commands_processed: shared.stats.commands,
        rejected_connections: shared.stats.rejected,
        // This node's own: a key evicted or expired here (each replicates as a delete to the others).
        expired_keys: ctx.service.removals.expired - shared.stats.removedBefore.expired,
        evicted_keys: ctx.service.removals.evicted - shared.stats.removedBefore.evicted,
      };
    case "replication":
      return { role: "master", connected_slaves: 0 };
    case "keyspace": {
      const out: Record<string, string> = {};
      for (let db = 0; db < DATABASES; db++) {
        const keys = liveKeys(ctx, bucketOf(db), true);
        // makhzen does not count keys with an expiry apart: `expires` is always 0.
        if (keys > 0) out[`db${db}`] = `keys=${keys},expires=0,avg_ttl=0`;
      }
      return out;
    }
  }
}
