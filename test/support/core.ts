import type { WallClock } from "../../src/core/clock.ts";
import { Cluster } from "../../src/cluster/cluster.ts";
import { resolveConfig, FAST_TIMINGS, type NodeOptions } from "../../src/config.ts";
import { createCore } from "../../src/create-core.ts";
import type { Logger } from "../../src/ops/log.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { eventually } from "./proc.ts";
import type { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import type { DepartureMemory } from "../../src/cluster/stability.ts";

/**
 * A node's core (createCore: clock, store, digest) and its cluster without HTTP,
 * wired to an in-memory network. `wall` replaces its wall clock (a skewed or manual one); `peers` may be mem:// URLs.
 */
export function core(
  name: string,
  net: MemoryTransport,
  options: NodeOptions = {},
  extra: { wall?: WallClock; mono?: () => number; logger?: Logger; url?: string; durableThroughMs?: () => number; earlyPurge?: boolean; wasClustered?: boolean; departures?: DepartureMemory } = {},
) {
  // Seeds are mem:// URLs, which resolveConfig (http only) would refuse: set after it.
  const { peers = [], ...rest } = options;
  const config = { ...resolveConfig({ name, port: 1, ...FAST_TIMINGS, ...rest, ...(extra.wall ? { wallClock: extra.wall } : {}) }), peers };
  const { clock, store, digest, items } = createCore({
    config,
    // As node.ts wires them: writes through `items` replicate, and a fenced node refuses them.
    onWrite: (record) => cluster.replicator.enqueueWritten(record),
    mayWrite: () => cluster.checkWritable(),
    onChange: (id, removed) => cluster.replicator.storeChanged(id, removed),
    // With earlyPurge, as node.ts wires it: deletes every member holds may go early (nothing sweeps here unless a test does).
    isStable: (r): boolean => extra.earlyPurge === true && cluster.isStable(r),
  });
  const cluster: Cluster = new Cluster({ config, store, digest, clock, transport: net, logger: extra.logger, durableThroughMs: extra.durableThroughMs, monoMs: extra.mono, changesReported: true, wasClustered: extra.wasClustered, departures: extra.departures });
  const url = extra.url ?? `mem://${name}`;
  net.register(url, cluster.service);
  const write = (key: string, value: string | null, bucket = "default"): StoredRecord => {
    const r: StoredRecord = { bucket, key, value, version: clock.now() };
    store.apply(r);
    cluster.replicator.enqueue(r);
    return r;
  };
  return { name, url, config, clock, store, digest, items, cluster, write };
}

export type Core = ReturnType<typeof core>;

export const dump = (c: Core) => c.store.scan(undefined, 1_000_000);

/** Three-or-more cores that know each other (joined through the first, one heartbeat each). */
export async function joined(nodes: Core[]): Promise<void> {
  for (const n of nodes) await n.cluster.start(n.url);
  for (const n of nodes.slice(1)) await n.cluster.membership.join([nodes[0]!.url]);
  for (const n of nodes) n.cluster.membership.tick();
  await eventually(() => nodes.every((n) => n.cluster.membership.reachable().length === nodes.length - 1), { timeoutMs: 3000, what: "every core reaches every other" });
}

/** A logger that keeps every line, for tests that check what was said. */
export function memoryLogger(lines: { level: string; msg: string; fields?: Record<string, unknown> }[] = []): Logger & { lines: typeof lines } {
  const make = (): Logger => ({
    debug: (msg, fields) => void lines.push({ level: "debug", msg, fields }),
    info: (msg, fields) => void lines.push({ level: "info", msg, fields }),
    warn: (msg, fields) => void lines.push({ level: "warn", msg, fields }),
    error: (msg, fields) => void lines.push({ level: "error", msg, fields }),
    child: () => make(),
  });
  return Object.assign(make(), { lines });
}
