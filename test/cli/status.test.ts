import { expect, test } from "bun:test";
import { renderStatus } from "../../src/cli/status.ts";
import { clusterStatus, type ClusterParts } from "../../src/cluster/reports.ts";

test("makhzen status renders one aligned row per member, this node marked", () => {
  const out = renderStatus({
    self: "a",
    clock: { offsetMs: 3, fenced: false, maxOffsetMs: 500 },
    members: [
      { name: "a", url: "http://127.0.0.1:4001", state: "alive", queue: 0, lastSeenMs: 0, clockOffsetMs: 0 },
      { name: "bee", url: "http://127.0.0.1:4002", state: "suspect", queue: 1234, lastSeenMs: 2500, clockOffsetMs: -2 },
      { name: "c", url: "http://127.0.0.1:4003", state: "left", queue: 0, lastSeenMs: 30, clockOffsetMs: null },
    ],
  });
  expect(out.split("\n")).toEqual([
    "NAME  URL                    STATE    QUEUE  CLOCK  LAST SEEN",
    "a *   http://127.0.0.1:4001  alive    0      -      -",
    "bee   http://127.0.0.1:4002  suspect  1234   -2ms   2.5s ago",
    "c     http://127.0.0.1:4003  left     0      ?      30ms ago",
  ]);
});

test("makhzen status says when this node is fenced for its clock", () => {
  const out = renderStatus({
    self: "c",
    clock: { offsetMs: 90_012, fenced: true, maxOffsetMs: 500, reason: "offset" },
    members: [
      { name: "a", url: "http://127.0.0.1:4001", state: "alive", queue: 0, lastSeenMs: 10, clockOffsetMs: -90_012 },
      { name: "c", url: "http://127.0.0.1:4003", state: "alive", queue: 0, lastSeenMs: 0, clockOffsetMs: 0 },
    ],
  });
  expect(out.split("\n")).toEqual([
    "NAME  URL                    STATE  QUEUE  CLOCK   LAST SEEN",
    "a     http://127.0.0.1:4001  alive  0      -90.0s  10ms ago",
    "c *   http://127.0.0.1:4003  alive  0      -       -",
    "this node's clock is 90012 ms from the cluster's median, past 400 ms, 80% of --max-clock-offset 500 ms (the margin keeps what it stamps inside the limit): it refuses writes until that is settled (see docs/replication.md)",
  ]);
});

test("times are whole ms: in the table, and in GET /cluster's lastSeenMs", () => {
  const out = renderStatus({
    self: "a",
    clock: { offsetMs: 0, fenced: false, maxOffsetMs: 500 },
    members: [
      { name: "a", url: "http://127.0.0.1:4001", state: "alive", queue: 0, lastSeenMs: 0, clockOffsetMs: 0 },
      { name: "b", url: "http://127.0.0.1:4002", state: "alive", queue: 0, lastSeenMs: 944.463021, clockOffsetMs: 2.71828 },
      { name: "c", url: "http://127.0.0.1:4003", state: "alive", queue: 0, lastSeenMs: 999.6, clockOffsetMs: -999.7 },
    ],
  });
  expect(out.split("\n").slice(2)).toEqual([
    "b     http://127.0.0.1:4002  alive  0      +3ms   944ms ago",
    "c     http://127.0.0.1:4003  alive  0      -1.0s  1.0s ago",
  ]);
  // The monotonic clock membership counts silence on has fractions.
  const parts = {
    membership: { silenceClock: () => 1944.463021, list: () => [{ name: "b", url: "http://127.0.0.1:4002", state: "alive", lastSeenMs: 1000 }] },
    replicator: { queueSize: () => 0 },
    clockGuard: { offsetOf: () => null, state: () => ({ offsetMs: 0, fenced: false, maxOffsetMs: 500 }) },
    placement: { replicas: 3, ownedCounts: () => new Map() },
    rebalancer: { heldCount: () => 0, fillingPartitions: () => [], settled: true },
    views: { has: () => false },
  } as unknown as ClusterParts;
  expect(clusterStatus(parts, { name: "a", url: "http://127.0.0.1:4001" }).members[1]!.lastSeenMs).toBe(944);
});

test("with partitions: what each member owns, the replication factor, and whether the node is settled", () => {
  const body = {
    self: "a",
    clock: { offsetMs: 0, fenced: false, maxOffsetMs: 500 },
    replicas: 2,
    partitions: 256,
    members: [
      { name: "a", url: "http://127.0.0.1:4001", state: "alive" as const, queue: 0, lastSeenMs: 0, clockOffsetMs: 0, partitions: 171 },
      { name: "b", url: "http://127.0.0.1:4002", state: "dead" as const, queue: 12, lastSeenMs: 5000, clockOffsetMs: 1, partitions: 170 },
      { name: "c", url: "http://127.0.0.1:4003", state: "left" as const, queue: 0, lastSeenMs: 30, clockOffsetMs: null, partitions: 0 },
    ],
  };
  const table = [
    "NAME  URL                    STATE  PARTITIONS  QUEUE  CLOCK  LAST SEEN",
    "a *   http://127.0.0.1:4001  alive  171         0      -      -",
    "b     http://127.0.0.1:4002  dead   170         12     +1ms   5.0s ago",
    "c     http://127.0.0.1:4003  left   0           0      ?      30ms ago",
  ];
  // `settled` comes from the rebalancer; a body without it says nothing of it.
  expect(renderStatus(body).split("\n")).toEqual([...table, "2 replicas of each key, 256 partitions"]);
  expect(renderStatus({ ...body, settled: true }).split("\n")).toEqual([...table, "2 replicas of each key, 256 partitions; settled"]);
  expect(renderStatus({ ...body, replicas: 1, settled: false }).split("\n").at(-1)).toBe(
    "1 replica of each key, 256 partitions; not settled: partitions are still being copied or dropped",
  );
});

test("GET /cluster's replicas, partitions and per-member owned counts come from placement", () => {
  const parts = {
    membership: { silenceClock: () => 0, list: () => [{ name: "b", url: "u", state: "alive", lastSeenMs: 0 }, { name: "c", url: "v", state: "left", lastSeenMs: 0 }] },
    replicator: { queueSize: () => 0 },
    clockGuard: { offsetOf: () => null, state: () => ({ offsetMs: 0, fenced: false, maxOffsetMs: 500 }) },
    placement: { replicas: 1, ownedCounts: () => new Map([["a", 100], ["b", 156]]) },
    rebalancer: { heldCount: () => 0, fillingPartitions: () => [], settled: true },
    views: { has: () => false },
  } as unknown as ClusterParts;
  const s = clusterStatus(parts, { name: "a", url: "w" });
  expect([s.replicas, s.partitions]).toEqual([1, 256]);
  expect(s.members.map((m) => [m.name, m.partitions])).toEqual([["a", 100], ["b", 156], ["c", 0]]);
});
