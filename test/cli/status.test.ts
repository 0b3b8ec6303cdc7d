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
    "this node's clock is 90012 ms from the cluster's median, past --max-clock-offset 500 ms: it refuses writes until that is settled (see docs/replication.md)",
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
    rebalancer: { heldCount: () => 0, fillingPartitions: () => [], settled: true },
    views: { has: () => false },
  } as unknown as ClusterParts;
  expect(clusterStatus(parts, { name: "a", url: "http://127.0.0.1:4001" }).members[1]!.lastSeenMs).toBe(944);
});
