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

test("createLogger refuses what it would ignore: an unknown option, a level or format it does not know, options that are not an object", () => {
  const refusal = (options: unknown) => {
    try {
      createLogger(options as Parameters<typeof createLogger>[0]);
      return undefined;
    } catch (e) {
      return `${(e as { code?: string }).code}: ${(e as Error).message}`;
    }
  };
  // "warning" had no rank, so every line passed, debug included.
  expect(refusal({ level: "warning" })).toBe('INVALID_CONFIG: createLogger option level must be one of debug, info, warn, error, not "warning"');
  expect(refusal({ format: "xml" })).toBe('INVALID_CONFIG: createLogger option format must be json or text, not "xml"');
  expect(refusal({ lvl: "warn" })).toStartWith('INVALID_CONFIG: createLogger has no option "lvl"');
  expect(refusal(null)).toStartWith("INVALID_CONFIG: createLogger options must be an object");
  expect(refusal({ write: "stderr" })).toBe("INVALID_CONFIG: createLogger option write must be a function, not string");
  expect(refusal(undefined)).toBeUndefined();
  expect(refusal({ level: "debug", format: "text", write: () => {}, wallClock: Date.now })).toBeUndefined();
});
