import { describe, expect, test } from "bun:test";
import { HybridClock, ManualWallClock } from "../../src/core/clock.ts";
import { MAX_COUNTER, formatVersion, parseVersion } from "../../src/core/version.ts";

const T0 = 1_700_000_000_000;

describe("HybridClock", () => {
  test("stamps with the wall clock and this node's name", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("n1", wall.read);
    expect(clock.now()).toBe(formatVersion(T0, 0, "n1"));
    expect(clock.wallMs()).toBe(T0);
    wall.advance(5);
    expect(clock.now()).toBe(formatVersion(T0 + 5, 0, "n1"));
  });

  test("strictly increasing within one millisecond", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("n1", wall.read);
    let prev = clock.now();
    for (let i = 0; i < 1000; i++) {
      const v = clock.now();
      expect(v > prev).toBe(true);
      prev = v;
    }
    expect(parseVersion(prev)).toEqual({ wallMs: T0, counter: 1000, node: "n1" });
  });

  test("never goes backwards when the wall clock jumps back", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("n1", wall.read);
    const before = clock.now();
    wall.set(T0 - 60_000); // NTP step back by a minute
    const after = [clock.now(), clock.now(), clock.now()];
    expect(after[0]! > before).toBe(true);
    expect(after[1]! > after[0]!).toBe(true);
    expect(after[2]! > after[1]!).toBe(true);
    // It keeps the larger wall time it has seen and counts within it.
    expect(parseVersion(after[2]!)!.wallMs).toBe(T0);
    // wallMs() is physical time, used for expiry: it does follow the jump.
    expect(clock.wallMs()).toBe(T0 - 60_000);
    // Once the wall clock passes the old time again, stamps follow it.
    wall.set(T0 + 1);
    expect(clock.now()).toBe(formatVersion(T0 + 1, 0, "n1"));
  });

  test("random wall clock walk: every stamp is newer than the one before", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("n1", wall.read);
    let seed = 7;
    const next = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let prev = clock.now();
    for (let i = 0; i < 5000; i++) {
      wall.advance(Math.floor(next() * 21) - 10); // -10..+10 ms
      if (next() < 0.2) {
        // A peer's version, sometimes from up to 50 ms in the future.
        const peer = formatVersion(wall.ms + Math.floor(next() * 50), Math.floor(next() * 5), "peer");
        clock.observe(peer);
        const v = clock.now();
        expect(v > peer).toBe(true);
        expect(v > prev).toBe(true);
        prev = v;
        continue;
      }
      const v = clock.now();
      expect(v > prev).toBe(true);
      prev = v;
    }
  });

  test("observe() of a version from the future makes the next now() newer than it", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("a", wall.read);
    // "zzz" sorts after "a": a version with the same wall and counter would still lose.
    const future = formatVersion(T0 + 10_000, 42, "zzz");
    clock.observe(future);
    const v = clock.now();
    expect(v > future).toBe(true);
    expect(parseVersion(v)!.wallMs).toBe(T0 + 10_000);
    expect(parseVersion(v)!.counter).toBeGreaterThan(42);
  });

  test("observe() of a version with the same wall time moves the counter past it", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("a", wall.read);
    clock.now();
    const peer = formatVersion(T0, 500, "zzz");
    clock.observe(peer);
    expect(clock.now() > peer).toBe(true);
  });

  test("observe() of a same-ms version with a smaller counter never moves the counter back", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("a", wall.read);
    let last = "";
    for (let i = 0; i < 10; i++) last = clock.now(); // counter at 9
    clock.observe(formatVersion(T0, 3, "zzz"));
    const next = clock.now();
    expect(next > last).toBe(true);
    expect(parseVersion(next)!.counter).toBeGreaterThan(9);
  });

  test("observe() of an older or invalid version changes nothing", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("a", wall.read);
    const mine = clock.now();
    clock.observe(formatVersion(T0 - 5, 999, "zzz"));
    clock.observe("not a version");
    clock.observe(`${"9".repeat(15)}-000000-bad name`);
    expect(clock.now()).toBe(formatVersion(T0, 1, "a"));
    expect(mine).toBe(formatVersion(T0, 0, "a"));
  });

  test("observe() when the own wall clock is ahead adopts the wall clock", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("a", wall.read);
    clock.observe(formatVersion(T0 - 1000, 3, "b"));
    expect(clock.now() > formatVersion(T0 - 1000, 3, "b")).toBe(true);
  });

  test("counter overflow rolls into the next millisecond and stays ordered", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("a", wall.read);
    clock.observe(formatVersion(T0, MAX_COUNTER - 2, "a"));
    const stamps = [clock.now(), clock.now(), clock.now(), clock.now()];
    expect(stamps.map((v) => parseVersion(v))).toEqual([
      { wallMs: T0, counter: MAX_COUNTER, node: "a" },
      { wallMs: T0 + 1, counter: 0, node: "a" },
      { wallMs: T0 + 1, counter: 1, node: "a" },
      { wallMs: T0 + 1, counter: 2, node: "a" },
    ]);
    for (let i = 1; i < stamps.length; i++) expect(stamps[i]! > stamps[i - 1]!).toBe(true);
    // The wall clock reaching T0+1 must not reuse a stamp already given out.
    wall.set(T0 + 1);
    expect(clock.now() > stamps[3]!).toBe(true);
  });

  test("observing a version at the counter limit rolls over too", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("a", wall.read);
    const peer = formatVersion(T0 + 50, MAX_COUNTER, "zzz");
    clock.observe(peer);
    const v = clock.now();
    expect(v > peer).toBe(true);
    expect(parseVersion(v)!.wallMs).toBe(T0 + 51);
  });

  test("counting through a whole millisecond by now() alone rolls over", () => {
    const wall = new ManualWallClock(T0);
    const clock = new HybridClock("a", wall.read);
    let prev = clock.now();
    for (let i = 0; i < MAX_COUNTER + 5; i++) {
      const v = clock.now();
      if (!(v > prev)) throw new Error(`stamp ${i} not newer: ${v} after ${prev}`);
      prev = v;
    }
    expect(parseVersion(prev)).toEqual({ wallMs: T0 + 1, counter: 4, node: "a" });
  });
});

describe("ManualWallClock", () => {
  test("moves only when told", () => {
    const wall = new ManualWallClock(5);
    expect(wall.read()).toBe(5);
    wall.advance(10);
    expect(wall.read()).toBe(15);
    wall.set(3);
    expect(wall.read()).toBe(3);
  });
});

describe("HybridClock's version strings", () => {
  test("are formatVersion's, across counters of every width, new milliseconds and a counter rollover", () => {
    const wall = new ManualWallClock(1_700_000_000_000);
    const clock = new HybridClock("node-x", wall.read);
    const seen: string[] = [];
    for (let i = 0; i < 12_000; i++) {
      if (i % 5000 === 4999) wall.advance(1);
      seen.push(clock.now());
    }
    // Rolls past MAX_COUNTER into the next logical millisecond without the wall clock moving.
    clock.observe(formatVersion(wall.ms, MAX_COUNTER - 1, "other"));
    seen.push(clock.now(), clock.now(), clock.now());
    for (const v of seen) {
      const p = parseVersion(v)!;
      expect(v).toBe(formatVersion(p.wallMs, p.counter, p.node));
    }
    expect(seen.slice(-3)).toEqual([0, 1, 2].map((c) => formatVersion(wall.ms + 1, c, "node-x")));
    expect([...seen].sort()).toEqual(seen);
  });
});
