import { expect, test } from "bun:test";
import { renderStatus } from "../src/cli/status.ts";

test("makhzen status renders one aligned row per member, this node marked", () => {
  const out = renderStatus({
    self: "a",
    members: [
      { name: "a", url: "http://127.0.0.1:4001", state: "alive", queue: 0, lastSeenMs: 0 },
      { name: "bee", url: "http://127.0.0.1:4002", state: "suspect", queue: 1234, lastSeenMs: 2500 },
      { name: "c", url: "http://127.0.0.1:4003", state: "left", queue: 0, lastSeenMs: 30 },
    ],
  });
  expect(out.split("\n")).toEqual([
    "NAME  URL                    STATE    QUEUE  LAST SEEN",
    "a *   http://127.0.0.1:4001  alive    0      -",
    "bee   http://127.0.0.1:4002  suspect  1234   2.5s ago",
    "c     http://127.0.0.1:4003  left     0      30ms ago",
  ]);
});
