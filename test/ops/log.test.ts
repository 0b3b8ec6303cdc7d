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

test("a value with control characters cannot forge a line: quoted and escaped in text, C1 and separators escaped in JSON too", () => {
  // A client's key reaches some lines (an early purge, a record refused). Written raw, ESC sequences erased the
  // real line on a terminal and drew "2026-11-27T00:00:00.000Z ERROR [cluster] forged" in its place.
  const forged = "e\x1b[2K\x1b[G2026-11-27T00:00:00.000Z\x1b[CERROR\x1b[C[cluster]\x1b[Cforged";
  const lines: string[] = [];
  createLogger({ format: "text", write: (l) => lines.push(l), wallClock: at }).warn("purged", { key: forged, c1: "a\u009b2Kb", sep: "x\u2028y", del: "z\x7f" });
  expect(lines).toHaveLength(1);
  expect(lines[0]).not.toMatch(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/);
  expect(lines[0]).toBe(
    '2026-01-02T03:04:05.006Z WARN  purged key="e\\u001b[2K\\u001b[G2026-11-27T00:00:00.000Z\\u001b[CERROR\\u001b[C[cluster]\\u001b[Cforged" c1="a\\u009b2Kb" sep="x\\u2028y" del="z\\u007f"',
  );
  const json: string[] = [];
  createLogger({ format: "json", write: (l) => json.push(l), wallClock: at }).warn("purged", { c1: "a\u009b2Kb", sep: "x\u2028y" });
  expect(json[0]).not.toMatch(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/);
  expect(JSON.parse(json[0]!)).toMatchObject({ c1: "a\u009b2Kb", sep: "x\u2028y" });
});
