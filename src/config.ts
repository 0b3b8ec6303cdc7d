import { CLUSTER_DEFAULTS, type ClusterConfig } from "./cluster/options.ts";
import { CORE_DEFAULTS, MiB, type CoreConfig } from "./core/options.ts";
import { isIPv6 } from "node:net";
import { MakhzenError } from "./errors.ts";
import type { FsyncPolicy } from "./storage/persistence.ts";
import { MAX_BATCH_RECORDS } from "./cluster/protocol/messages.ts";
import { NODE_NAME_MAX, NODE_NAME_PATTERN } from "./core/version.ts";
import { KEY_BYTES_CEILING } from "./core/record.ts";
import { didYouMean } from "./ops/suggest.ts";
import { maskPassword } from "./ops/urls.ts";
import { MAX_REPLICAS } from "./cluster/placement.ts";

/**
 * Everything a node can be told, with units in the names. The CLI maps flags onto
 * this; `createNode` takes a partial, fills in the defaults and checks every field
 * (resolveConfig). The core's fields (sizes, memory, tombstones, the sweep) are documented in
 * src/core/options.ts, the cluster's (name, seeds, timings, queues, clocks) in
 * src/cluster/options.ts: each part is given its own type, so the core and the
 * cluster never import this file.
 */
export interface NodeConfig extends CoreConfig, ClusterConfig {
  /** Interface to listen on. Loopback by default: nothing is exposed unless asked. */
  host: string;
  /** TCP port; 0 picks a free one (see `listen()`'s answer). */
  port: number;
  /**
   * TCP port of the Redis-protocol front end (RESP2/RESP3, see docs/resp.md), on
   * `host` beside HTTP; 0 picks a free one. Unset: off, since a second listener is
   * a second thing exposed.
   */
  respPort?: number;

  // ---- durability (see docs/durability.md) ----
  /** Directory of the durable copy (bun:sqlite); unset: purely in memory, refilled from peers after a restart. */
  dataDir?: string;
  /** What a crash may lose, as Redis's appendfsync: `always` nothing acknowledged, `everysec` about a second, `no` what the OS had not written. */
  fsync: FsyncPolicy;

  // ---- security (see docs/security.md) ----
  /** Bearer token every client route except /healthz and /readyz requires. Unset: no client auth (loopback only, see `insecure`). */
  token?: string;
  /** A second token that may only read (GET routes, /dump and /cluster included); never writes or /load. */
  readToken?: string;
  /** Shared secret that signs every /internal/ request and answer (HMAC-SHA256); the same on every node. At least 16 characters. */
  clusterSecret?: string;
  /** Accept the risks protected mode refuses: listening beyond loopback without `token`, peers beyond loopback without `clusterSecret`. */
  insecure: boolean;
  /** PEM certificate chain file: with `tlsKeyFile`, the node serves https. */
  tlsCertFile?: string;
  /** PEM private key file of `tlsCertFile`. */
  tlsKeyFile?: string;
  /** PEM CA bundle file trusted for peers' https certificates. Unset: the system's CAs. */
  tlsCaFile?: string;
  /**
   * How long a request body may take to arrive, in ms, once its headers are in.
   * Bun's idle timeout closes silent connections; this bounds one that trickles a
   * byte at a time (slowloris). 30 s carries a 4 MiB body over a slow 1 Mbit/s link.
   */
  bodyTimeoutMs: number;
  /**
   * How long a keep-alive connection may stay silent between requests, in ms
   * (Bun counts whole seconds, in steps of about 4 s, up to 255 s). A connection
   * that never sends a complete request head is closed by Bun after about 10 s.
   */
  idleTimeoutMs: number;
  /**
   * Client connections open at once, HTTP (peers' included: they share the port)
   * and RESP together, as Redis's maxclients. One past it is answered (HTTP 503
   * TOO_MANY_CLIENTS, RESP `-ERR max number of clients reached`) and closed: without
   * a bound, idle connections used up the process's file descriptors and the node
   * stopped answering anyone. Lowered at start to what the open-files limit allows.
   */
  maxClients: number;
}

export type NodeOptions = Partial<NodeConfig>;

export { MiB } from "./core/options.ts";
export const DEFAULT_PORT = 3000;
export const DEFAULT_HOST = "127.0.0.1";

export const DEFAULTS = {
  host: DEFAULT_HOST,
  port: DEFAULT_PORT,
  ...CORE_DEFAULTS,
  fsync: "everysec",
  ...CLUSTER_DEFAULTS,
  insecure: false,
  bodyTimeoutMs: 30_000,
  idleTimeoutMs: 30_000,
  maxClients: 10_000,
} as const satisfies Partial<NodeConfig>;

/**
 * Every option name of NodeConfig: those with a default (DEFAULTS) and those
 * without. createNode is called from plain JavaScript too, where no type stops a
 * misspelt option, so resolveConfig refuses a name not listed here. The check under
 * the list fails to compile when NodeConfig and the list disagree.
 */
const UNDEFAULTED = ["name", "respPort", "peers", "advertise", "wallClock", "dataDir", "token", "readToken", "clusterSecret", "tlsCertFile", "tlsKeyFile", "tlsCaFile"] as const;
export const OPTION_NAMES: readonly (keyof NodeConfig)[] = [...(Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]), ...UNDEFAULTED];
type Listed = keyof typeof DEFAULTS | (typeof UNDEFAULTED)[number];
true satisfies [Exclude<keyof NodeConfig, Listed>, Exclude<Listed, keyof NodeConfig>] extends [never, never] ? true : false;

/**
 * Names users bring from the projects makhzen grew from (the old makhzen's
 * `-cluster`, huton's `-bindPort`) and from the stores it is compared with
 * (Cassandra's `replication_factor`), answered with the option they mean; compared
 * without case or separators.
 */
const OPTION_ALIASES: ReadonlyMap<string, keyof NodeConfig> = new Map([["cluster", "peers"], ["seeds", "peers"], ["bindport", "port"], ["hostname", "host"], ["replicationfactor", "replicas"]]);

/**
 * Refuses options that are not an object, and any name that is not an option
 * (INVALID_CONFIG), suggesting the name it most likely stands for. `extra` are
 * names the caller takes itself (createNode's `logger`).
 */
export function checkOptionNames(options: unknown, extra: readonly string[] = []): void {
  if (options === null || typeof options !== "object" || Array.isArray(options)) {
    throw new MakhzenError("INVALID_CONFIG", `options must be an object of named options, not ${Array.isArray(options) ? "an array" : String(options)}`);
  }
  const names: readonly string[] = [...OPTION_NAMES, ...extra];
  for (const key of Object.keys(options)) {
    if (names.includes(key)) continue;
    // A Map, not an object: `constructor` or `toString` must not find Object.prototype's.
    const alias = OPTION_ALIASES.get(key.toLowerCase().replace(/[-_\s]/g, ""));
    const hint = alias ? `; did you mean "${alias}"?` : didYouMean(key, names);
    throw new MakhzenError("INVALID_CONFIG", `unknown option "${key}"${hint || `; the options are ${names.join(", ")}`}`);
  }
}

/**
 * Cluster timings for tests and local experiments: failures are noticed within a
 * second and repaired within another. Too eager for a real network.
 */
export const FAST_TIMINGS = {
  heartbeatIntervalMs: 100,
  suspectAfterMs: 600,
  deadAfterMs: 1500,
  reapDeadAfterMs: 5000,
  antiEntropyIntervalMs: 500,
  requestTimeoutMs: 1000,
  backoffBaseMs: 20,
  backoffMaxMs: 300,
  startSyncTimeoutMs: 5000,
  drainTimeoutMs: 2000,
  handoffGraceMs: 300,
} as const satisfies Partial<NodeConfig>;

/**
 * Fills defaults and checks every field, names and types included (a plain
 * JavaScript caller gets the checks TypeScript would make); throws INVALID_CONFIG
 * naming the bad one. `extra`: option names the caller takes itself (see checkOptionNames).
 * An option given as undefined is absent; null is a value, and refused.
 */
export function resolveConfig(options: NodeOptions = {}, extra: readonly string[] = []): NodeConfig {
  checkOptionNames(options, extra);
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const merged = { ...DEFAULTS, wallClock: Date.now, peers: [], ...defined } as Omit<NodeConfig, "name"> & Partial<NodeConfig>;
  // Host and port first: the default name is made of them.
  if (typeof merged.host !== "string" || merged.host.length === 0) bad("host", "must be a non-empty string");
  if (!isListenAddress(merged.host)) {
    // Worded without other fields' names: the CLI turns each into its flag (namingFlags).
    bad("host", `${shown(merged.host)} is not an address to listen on: an IPv4 address (four numbers from 0 to 255), an IPv6 address without brackets (::1) or a hostname`);
  }
  integer("port", merged.port, 0, 65535);
  const c: NodeConfig = { ...merged, name: merged.name === undefined ? defaultName(merged.host, merged.port) : merged.name };
  if (typeof c.name !== "string") bad("name", `must be a string, not ${String(c.name)}`);
  if (!NODE_NAME_PATTERN.test(c.name)) {
    bad("name", `${JSON.stringify(c.name)} must be 1-${NODE_NAME_MAX} characters of A-Z a-z 0-9 _ . : @ [ ] -`);
  }
  if (typeof c.wallClock !== "function") bad("wallClock", "must be a function answering epoch ms (Date.now is the default)");
  if (c.respPort !== undefined) {
    integer("respPort", c.respPort, 0, 65535);
    if (c.respPort !== 0 && c.respPort === c.port) bad("respPort", "must differ from port");
  }
  integer("maxKeyBytes", c.maxKeyBytes, 1, KEY_BYTES_CEILING);
  integer("maxValueBytes", c.maxValueBytes, 0, 512 * MiB);
  integer("maxMemoryBytes", c.maxMemoryBytes, 0, Number.MAX_SAFE_INTEGER);
  if (c.eviction !== "noeviction" && c.eviction !== "lru") bad("eviction", `must be noeviction or lru, not ${shown(c.eviction)}`);
  integer("tombstoneTtlMs", c.tombstoneTtlMs, 0, Number.MAX_SAFE_INTEGER);
  integer("sweepIntervalMs", c.sweepIntervalMs, 1, 60 * 60 * 1000);
  integer("sweepBudget", c.sweepBudget, 1, 10_000_000);
  if (c.dataDir !== undefined && (typeof c.dataDir !== "string" || c.dataDir === "")) bad("dataDir", "must be a path");
  // Only a shell (and the CLI's flags) read ~ as the home directory: here it made a directory named "~".
  if (typeof c.dataDir === "string" && c.dataDir.startsWith("~")) bad("dataDir", `${JSON.stringify(c.dataDir)} starts with ~, which is not the home directory here: give the path in full (os.homedir())`);
  // A data dir belongs to one name; with port 0 the default name is random, so the
  // next start could never open the dir again.
  if (c.dataDir !== undefined && merged.name === undefined && c.port === 0) bad("name", "must be given with dataDir when port is 0");
  if (!["always", "everysec", "no"].includes(c.fsync)) bad("fsync", `must be always, everysec or no, not ${shown(c.fsync)}`);
  // Given, they would do nothing: refused, as the CLI refuses the flags (checkFlagsTogether).
  if (defined.fsync !== undefined && c.dataDir === undefined) bad("fsync", "needs dataDir: without one nothing is written to disk, so there is nothing to fsync");
  if (defined.eviction !== undefined && !(c.maxMemoryBytes > 0)) bad("eviction", "needs maxMemoryBytes above 0: without a memory budget nothing is ever evicted");
  // Every write goes to up to this many owners, and placement ranks this many per partition: 100 bounds both.
  integer("replicas", c.replicas, 1, MAX_REPLICAS);
  if (!Array.isArray(c.peers)) bad("peers", "must be a list of URLs");
  c.peers = c.peers.map((u) => normalizeUrl("peers", u));
  if (c.advertise !== undefined) c.advertise = normalizeUrl("advertise", c.advertise);
  const HOUR = 3_600_000;
  integer("heartbeatIntervalMs", c.heartbeatIntervalMs, 10, HOUR);
  integer("suspectAfterMs", c.suspectAfterMs, c.heartbeatIntervalMs, HOUR);
  integer("deadAfterMs", c.deadAfterMs, c.suspectAfterMs, 24 * HOUR);
  integer("reapDeadAfterMs", c.reapDeadAfterMs, c.deadAfterMs, 365 * 24 * HOUR);
  integer("antiEntropyIntervalMs", c.antiEntropyIntervalMs, 10, 24 * HOUR);
  integer("antiEntropyMaxKeys", c.antiEntropyMaxKeys, 1, 100_000_000);
  integer("requestTimeoutMs", c.requestTimeoutMs, 10, HOUR);
  integer("backoffBaseMs", c.backoffBaseMs, 1, HOUR);
  integer("backoffMaxMs", c.backoffMaxMs, c.backoffBaseMs, HOUR);
  integer("queueMaxRecords", c.queueMaxRecords, 1, 1e9);
  integer("queueMaxBytes", c.queueMaxBytes, 1024, Number.MAX_SAFE_INTEGER);
  integer("batchMaxRecords", c.batchMaxRecords, 1, MAX_BATCH_RECORDS);
  integer("batchMaxBytes", c.batchMaxBytes, 1024, 512 * MiB);
  integer("maxInflightBatches", c.maxInflightBatches, 1, 16);
  integer("startSyncTimeoutMs", c.startSyncTimeoutMs, 0, 24 * HOUR);
  integer("drainTimeoutMs", c.drainTimeoutMs, 0, HOUR);
  integer("handoffGraceMs", c.handoffGraceMs, 0, 24 * HOUR);
  // Below ~10 ms the jitter of measuring over a loaded network would fence healthy nodes.
  integer("maxClockOffsetMs", c.maxClockOffsetMs, 10, 24 * HOUR);
  checkSecurity(c);
  return c;
}

function checkSecurity(c: NodeConfig): void {
  // Headers carry tokens: visible ASCII only, so nothing is trimmed or re-encoded on the way.
  for (const field of ["token", "readToken", "clusterSecret"] as const) {
    const v = c[field];
    if (v !== undefined && typeof v !== "string") bad(field, `must be a string, not ${v === null ? "null" : typeof v}`);
    if (v !== undefined && !/^[\x21-\x7e]+$/.test(v)) bad(field, "must be visible ASCII characters without spaces");
  }
  if (c.readToken !== undefined && c.token === undefined) bad("readToken", "needs token: without it every client may write anyway");
  if (c.readToken !== undefined && c.readToken === c.token) bad("readToken", "must differ from token");
  // A client holding the secret can sign peer requests: a read token that is the secret writes (as a peer,
  // any version), and a write token that is it makes every client a member.
  if (c.clusterSecret !== undefined && c.token === c.clusterSecret) bad("token", "must differ from clusterSecret: a client holding the secret can act as a peer");
  if (c.clusterSecret !== undefined && c.readToken === c.clusterSecret) bad("readToken", "must differ from clusterSecret: a client holding the secret can act as a peer, and write");
  // HMACs captured on the wire allow an offline guess of the secret; 16 random characters put that out of reach.
  if (c.clusterSecret !== undefined && c.clusterSecret.length < 16) bad("clusterSecret", "must be at least 16 characters (try: openssl rand -hex 32)");
  if (typeof c.insecure !== "boolean") bad("insecure", "must be true or false");
  for (const field of ["tlsCertFile", "tlsKeyFile", "tlsCaFile"] as const) {
    const v = c[field];
    if (v !== undefined && (typeof v !== "string" || v === "")) bad(field, "must be the path of a PEM file");
  }
  if ((c.tlsCertFile === undefined) !== (c.tlsKeyFile === undefined)) bad("tlsCertFile", "and tlsKeyFile go together");
  // A node serving https that advertises http is reached by no peer (each gets a reset, then calls it dead).
  // The other way round is a TLS proxy in front of a plain node, and is left alone.
  if (c.tlsCertFile !== undefined && c.advertise?.startsWith("http:")) {
    bad("advertise", `is ${JSON.stringify(c.advertise)}, plain http, but this node serves https (tlsCertFile): peers could not reach it; advertise its https:// URL`);
  }
  integer("bodyTimeoutMs", c.bodyTimeoutMs, 100, 3_600_000);
  integer("idleTimeoutMs", c.idleTimeoutMs, 1000, 255_000);
  integer("maxClients", c.maxClients, 1, 1_000_000);
}

/**
 * Whether `host` can be listened on: an IPv4 address in dotted-quad form, an IPv6
 * address, or a DNS hostname (labels of letters, digits, `-` and `_`, up to 63
 * characters each, 253 in all). Checked here because a bad one was refused later
 * for the wrong reason: `999.1.1.1` is not loopback, so protected mode asked for
 * --token, and with one the listener failed on getaddrinfo. Text of digits and dots
 * is an IPv4 address or nothing (`127.1` is refused, not left to inet_aton's
 * reading); `[::1]` is refused too (a URL's brackets: getaddrinfo does not take them).
 */
function isListenAddress(host: string): boolean {
  if (/^[0-9.]+$/.test(host)) return /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/.test(host);
  if (host.includes(":")) return isIPv6(host);
  return host.length <= 253 && /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/.test(host);
}

function defaultName(host: string, port: number): string {
  // With port 0 the real port is only known after listen(); a random name stays unique.
  if (port === 0) return `node-${crypto.randomUUID().slice(0, 8)}`;
  return `${host}:${port}`;
}

/**
 * A node's URL as peers compare it: scheme, host and port, without a trailing slash.
 * A bare `host:port` (huton's `-peers 127.0.0.1:8100`) means `http://host:port`, as
 * on the command line. A path, query, fragment or user name is refused rather than
 * dropped: a node serves at the root, and nothing would send them.
 */
function normalizeUrl(field: string, u: unknown): string {
  if (typeof u !== "string") bad(field, `must be a URL like http://10.0.0.2:3000 (a string), not ${shown(u)}`);
  const given = u.trim();
  const masked = maskPassword(u); // a password is not repeated in the error
  let url: URL;
  try {
    url = new URL(/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d+$/i.test(given) ? `http://${given}` : given);
  } catch {
    bad(field, `${JSON.stringify(masked)} is not a URL like http://10.0.0.2:3000`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") bad(field, `${JSON.stringify(masked)} must be http:// or https://`);
  const extra = url.search !== "" || given.includes("?") || url.hash !== "" || given.includes("#") || url.username !== "" || url.password !== "" || url.pathname !== "/";
  if (extra) bad(field, `${JSON.stringify(masked)} must be scheme, host and port only, like http://10.0.0.2:3000 (no path, query, fragment or user name)`);
  return url.origin;
}

function integer(field: string, v: unknown, min: number, max: number): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    bad(field, `must be an integer from ${min} to ${max}, not ${shown(v)}`);
  }
}

/**
 * A value as an error message shows it: strings quoted, a BigInt marked as one (`1n`
 * shown as `1` read as a valid number), anything else as String() has it (never throws).
 */
const shown = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : typeof v === "bigint" ? `${v}n (a BigInt)` : String(v));

function bad(field: string, why: string): never {
  throw new MakhzenError("INVALID_CONFIG", `${field} ${why}`);
}
