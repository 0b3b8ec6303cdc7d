import { expect, test } from "bun:test";
import { createLogger } from "../../src/ops/log.ts";

const at = () => Date.UTC(2026, 0, 2, 3, 4, 5, 6);

test("json lines carry level, component, message and fields", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "json", write: (l) => lines.push(l), wallClock: at }).child("replicator");
  log.warn("queue overflow", { peer: "b", dropped: 3, cause: new Error("boom") });
  expect(lines.map((l) => JSON.parse(l))).toEqual([
    { ts: "2026-01-02T03:04:05.006Z", level: "warn", component: "replicator", msg: "queue overflow", peer: "b", dropped: 3, cause: "boom" },
  ]);
});

test("text lines are readable and quote only what needs quoting", () => {
  const lines: string[] = [];
  const log = createLogger({ format: "text", write: (l) => lines.push(l), wallClock: at });
  log.info("member up", { name: "node-b", url: "http://127.0.0.1:3001", note: "two words" });
  expect(lines).toEqual(['2026-01-02T03:04:05.006Z INFO  member up name=node-b url=http://127.0.0.1:3001 note="two words"']);
});

test("lines below the level are dropped", () => {
  const lines: string[] = [];
  const log = createLogger({ level: "warn", write: (l) => lines.push(l), wallClock: at });
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["w", "e"]);
});
