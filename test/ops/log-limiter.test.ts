/**
 * The log limiter on a manual wall clock: one line per subject per budget
 * interval, the overall cap of budgets whose subjects come from the network, the
 * count of what was held back, bounded memory, and a clock that steps back; and
 * one call site, the replicator, counting on the node's wall clock.
 */
import { describe, expect, test } from "bun:test";
import { LOG_BUDGETS, LogLimiter, SUBJECTS_MAX, type LogBudgetName } from "../../src/ops/log-limiter.ts";
import { createLogger } from "../../src/ops/log.ts";
import { Replicator } from "../../src/cluster/replicator.ts";
import type { PeerTransport } from "../../src/cluster/protocol/peer-ops.ts";
import { eventually } from "../support/proc.ts";

function setup() {
  const clock = { now: 1_800_000_000_000 };
  const limiter = new LogLimiter(() => clock.now);
  const lines: [string, number][] = [];
  const hit = (budget: LogBudgetName, subject: string) => limiter.line(budget, subject, (held) => lines.push([subject, held]));
  return { clock, limiter, lines, hit };
}

describe("log limiter", () => {
  test("one line per subject per 10 s, counting what it held back", () => {
    const { clock, lines, hit } = setup();
    hit("peer.auth-refused", "a");
    hit("peer.auth-refused", "a");
    hit("peer.auth-refused", "a");
    expect(lines).toEqual([["a", 0]]);
    clock.now += 9_999;
    hit("peer.auth-refused", "a");
    expect(lines).toEqual([["a", 0]]);
    clock.now += 1;
    hit("peer.auth-refused", "a");
    expect(lines).toEqual([["a", 0], ["a", 3]]);
    // The count starts over with each line that goes out.
    clock.now += 10_000;
    hit("peer.auth-refused", "a");
    expect(lines.at(-1)).toEqual(["a", 0]);
  });

  test("subjects and budgets are counted apart", () => {
    const { clock, lines, hit } = setup();
    hit("replicator.send-failed", "b");
    hit("replicator.send-failed", "c");
    hit("antientropy.record-refused", "b"); // another budget: its own line
    hit("replicator.send-failed", "b");
    expect(lines).toEqual([["b", 0], ["c", 0], ["b", 0]]);
    // A minute for this budget: 10 s is not enough.
    clock.now += 10_000;
    hit("replicator.send-failed", "b");
    expect(lines).toHaveLength(3);
    clock.now += LOG_BUDGETS["replicator.send-failed"].everyMs;
    hit("replicator.send-failed", "b");
    expect(lines.at(-1)).toEqual(["b", 2]);
  });

  test("a line held back is never built: emit runs only for lines that go out", () => {
    const { limiter } = setup();
    let built = 0;
    for (let i = 0; i < 100; i++) limiter.line("clock.fenced", "", () => built++);
    expect(built).toBe(1);
  });

  test("a client cycling through addresses (a new subject each time) gets at most 20 lines per 10 s", () => {
    const { clock, lines, limiter } = setup();
    for (let i = 0; i < 5000; i++) limiter.line("http.auth-refused", `addr-${i}`, (held) => lines.push([`addr-${i}`, held]));
    expect(lines).toHaveLength(20);
    clock.now += 10_000;
    limiter.line("http.auth-refused", "next", (held) => lines.push(["next", held]));
    // The next line that goes out says how many were held back in all.
    expect(lines.at(-1)).toEqual(["next", 4980]);
  });

  test("a budget without a cap lets every subject speak", () => {
    const { lines, hit } = setup();
    for (let i = 0; i < 50; i++) hit("seeds.no-answer", `http://seed-${i}`);
    expect(lines).toHaveLength(50);
  });

  test(`memory is bounded: past ${SUBJECTS_MAX} subjects the one that spoke longest ago is forgotten`, () => {
    const { lines, hit } = setup();
    for (let i = 0; i <= SUBJECTS_MAX; i++) hit("seeds.no-answer", `s-${i}`);
    expect(lines).toHaveLength(SUBJECTS_MAX + 1);
    hit("seeds.no-answer", "s-1"); // still remembered: held back
    expect(lines).toHaveLength(SUBJECTS_MAX + 1);
    hit("seeds.no-answer", "s-0"); // forgotten to make room for s-1000: speaks again early
    expect(lines.at(-1)).toEqual(["s-0", 0]);
  });

  test("a wall clock that steps back makes the subject due at once, not silent until it catches up", () => {
    const { clock, lines, hit } = setup();
    hit("persistence.commit-failed", "");
    hit("persistence.commit-failed", "");
    clock.now -= 3_600_000;
    hit("persistence.commit-failed", "");
    expect(lines).toEqual([["", 0], ["", 1]]);
    hit("persistence.commit-failed", ""); // and counted from the new time on
    expect(lines).toHaveLength(2);
  });

  test("every budget has a positive interval in ms, and a cap only where one is set", () => {
    for (const [name, b] of Object.entries(LOG_BUDGETS)) {
      expect({ name, ok: Number.isInteger(b.everyMs) && b.everyMs >= 1000 }).toEqual({ name, ok: true });
      if (b.linesMax !== undefined) expect(b.linesMax).toBeGreaterThan(0);
    }
  });
});

describe("at a call site", () => {
  test("a peer that keeps failing: one line per minute, by the wall clock, however many retries; the next says how many were held back", async () => {
    let now = 1_800_000_000_000;
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)), wallClock: () => now });
    const calls: ((e: Error) => void)[] = [];
    const transport: PeerTransport = { call: () => new Promise((_resolve, reject) => calls.push(reject)) };
    const r = new Replicator({
      transport,
      wallMs: () => now,
      onOverflow: () => {},
      logger,
      config: { requestTimeoutMs: 1000, backoffBaseMs: 1, backoffMaxMs: 1, queueMaxRecords: 100, queueMaxBytes: 1 << 30, batchMaxRecords: 100, batchMaxBytes: 1 << 20, maxInflightBatches: 1 },
    });
    try {
      r.addPeer("p", "mem://p");
      r.enqueue({ bucket: "default", key: "a", value: "1", version: "v1" });
      const fail = async (n: number) => {
        await eventually(() => calls.length === n, { what: `send ${n}` });
        calls[n - 1]!(new Error("peer down"));
        await eventually(() => r.stats()[0]!.failed === n, { what: `failure ${n}` });
      };
      for (let n = 1; n <= 4; n++) await fail(n);
      const failed = () => lines.filter((l) => l.msg === "send failed; retrying with backoff");
      expect(failed().map((l) => [l.failures, l.suppressed])).toEqual([[1, 0]]);
      now += LOG_BUDGETS["replicator.send-failed"].everyMs;
      await fail(5);
      expect(failed().map((l) => [l.failures, l.suppressed])).toEqual([[1, 0], [5, 3]]);
      expect(failed()[1]).toMatchObject({ level: "warn", peer: "p", error: "peer down" });
    } finally {
      r.close();
    }
  });
});
