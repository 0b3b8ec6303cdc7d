import type { WallClock } from "./clock.ts";
import { MakhzenError } from "./errors.ts";
import type { EvictionPolicy } from "./store.ts";
import { NODE_NAME_PATTERN } from "./version.ts";

/**
 * Everything a node can be told, in one place, with units in the names. The CLI
 * maps flags onto this; `createNode` takes a partial and fills in the defaults.
 */
export interface NodeConfig {
  /** Unique name in the cluster; stamped into every version this node writes. Default: host:port. */
  name: string;
  /** Interface to listen on. Loopback by default: nothing is exposed unless asked. */
  host: string;
  /** TCP port; 0 picks a free one (see `listen()`'s answer). */
  port: number;
  /** Longest key, in UTF-8 bytes. 1024 as DESIGN.md says: long enough for paths, short enough to index. */
  maxKeyBytes: number;
  /** Longest value, in UTF-8 bytes. 1 MiB keeps one record well under a replication batch. */
  maxValueBytes: number;
  /**
   * Largest request body, in bytes, checked before the body is read. Default: twice
   * the value limit plus 64 KiB, room for JSON escaping of a value at its limit.
   */
  maxBodyBytes: number;
  /** Budget for stored data, in bytes (an estimate, see store.ts); 0 = unlimited. */
  maxMemoryBytes: number;
  /** What a write does when the budget is full: `noeviction` answers 507, `lru` evicts. */
  eviction: EvictionPolicy;
  /**
   * How long deletes are remembered, in ms. A replica cut off for longer than this
   * may bring a deleted key back when it returns (Cassandra's gc_grace contract).
   */
  tombstoneTtlMs: number;
  /** Period of the expiry and tombstone sweep, in ms (Redis runs its active expiry 10 times a second). */
  sweepIntervalMs: number;
  /** Entries the sweep examines per tick: bounds the pause a tick can cause. */
  sweepBudget: number;
  /** Physical time source; tests inject a manual one. */
  wallClock: WallClock;
}

export type NodeOptions = Partial<NodeConfig>;

export const MiB = 1024 * 1024;
export const DEFAULT_PORT = 3000;
export const DEFAULT_HOST = "127.0.0.1";

export const DEFAULTS = {
  host: DEFAULT_HOST,
  port: DEFAULT_PORT,
  maxKeyBytes: 1024,
  maxValueBytes: MiB,
  maxMemoryBytes: 0,
  eviction: "noeviction",
  tombstoneTtlMs: 24 * 60 * 60 * 1000,
  sweepIntervalMs: 100,
  sweepBudget: 1000,
} as const satisfies Partial<NodeConfig>;

/** Fills defaults and checks every field; throws INVALID_CONFIG naming the bad one. */
export function resolveConfig(options: NodeOptions = {}): NodeConfig {
  const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  const merged = { ...DEFAULTS, wallClock: Date.now, ...defined } as Omit<NodeConfig, "name" | "maxBodyBytes"> &
    Partial<NodeConfig>;
  const c: NodeConfig = {
    ...merged,
    name: merged.name ?? defaultName(merged.host, merged.port),
    maxBodyBytes: merged.maxBodyBytes ?? 2 * merged.maxValueBytes + 64 * 1024,
  };
  if (!NODE_NAME_PATTERN.test(c.name)) {
    bad("name", `"${c.name}" must be 1-128 characters of A-Z a-z 0-9 _ . : @ [ ] -`);
  }
  if (typeof c.host !== "string" || c.host.length === 0) bad("host", "must not be empty");
  integer("port", c.port, 0, 65535);
  integer("maxKeyBytes", c.maxKeyBytes, 1, 64 * 1024);
  integer("maxValueBytes", c.maxValueBytes, 0, 512 * MiB);
  integer("maxBodyBytes", c.maxBodyBytes, 1, 2 * 1024 * MiB);
  integer("maxMemoryBytes", c.maxMemoryBytes, 0, Number.MAX_SAFE_INTEGER);
  if (c.eviction !== "noeviction" && c.eviction !== "lru") bad("eviction", `must be noeviction or lru, not "${c.eviction}"`);
  integer("tombstoneTtlMs", c.tombstoneTtlMs, 0, Number.MAX_SAFE_INTEGER);
  integer("sweepIntervalMs", c.sweepIntervalMs, 1, 60 * 60 * 1000);
  integer("sweepBudget", c.sweepBudget, 1, 10_000_000);
  return c;
}

function defaultName(host: string, port: number): string {
  // With port 0 the real port is only known after listen(); a random name stays unique.
  if (port === 0) return `node-${crypto.randomUUID().slice(0, 8)}`;
  return `${host}:${port}`;
}

function integer(field: string, v: unknown, min: number, max: number): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    bad(field, `must be an integer from ${min} to ${max}, not ${String(v)}`);
  }
}

function bad(field: string, why: string): never {
  throw new MakhzenError("INVALID_CONFIG", `${field} ${why}`);
}
