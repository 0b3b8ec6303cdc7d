import type { WallClock } from "./clock.ts";
import type { EvictionPolicy } from "./store-options.ts";

/**
 * What the one-node core is told, with units in the names and the reason for each
 * default. src/config.ts's NodeConfig extends this (and ClusterConfig), and checks
 * every field at start; the core never reads the node's config itself.
 */
export interface CoreConfig {
  /** Longest key, in UTF-8 bytes. 1024 as DESIGN.md says: long enough for paths, short enough to index. */
  maxKeyBytes: number;
  /**
   * Longest value, in UTF-8 bytes. 1 MiB keeps one record well under a replication
   * batch. Request body limits are derived from it (and from the key and batch
   * limits) in one place, src/http/limits.ts, so a value within it is accepted
   * however its JSON is escaped.
   */
  maxValueBytes: number;
  /** Budget for live records, in bytes (an estimate; tombstones excluded, see Store.reserve); 0 = unlimited. */
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

/** What Items checks writes against. */
export type ItemsOptions = Pick<CoreConfig, "maxKeyBytes" | "maxValueBytes">;

/** What the background sweep runs by (see sweeper.ts). */
export type SweepOptions = Pick<CoreConfig, "sweepIntervalMs" | "sweepBudget">;

export const MiB = 1024 * 1024;

export const CORE_DEFAULTS = {
  maxKeyBytes: 1024,
  maxValueBytes: MiB,
  maxMemoryBytes: 0,
  eviction: "noeviction",
  tombstoneTtlMs: 24 * 60 * 60 * 1000,
  sweepIntervalMs: 100,
  sweepBudget: 1000,
} as const satisfies Partial<CoreConfig>;
