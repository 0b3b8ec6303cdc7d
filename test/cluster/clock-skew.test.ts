import { describe, expect, test } from "bun:test";
import { HybridClock, ManualWallClock } from "../../src/core/clock.ts";
import { ClockGuard } from "../../src/cluster/clock-guard.ts";
import { clockOffsetError } from "../../src/cluster/clock-error.ts";
import { ClockOffsets, median, offsetSample, selfOffsetMs } from "../../src/cluster/clock-offset.ts";
import { MakhzenError } from "../../src/errors.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { formatVersion, versionWallMs } from "../../src/core/version.ts";
import { core as newCore, joined, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { closedAfterEach } from "../support/cleanup.ts";

/** Every core a test makes is closed after it, passed or failed (its timers would run on into the next test). */
const core = closedAfterEach(newCore, (c) => c.cluster.close());

/** A core whose wall clock runs `skewMs` off real time. */
const skewed = (name: string, net: MemoryTransport, skewMs: number) => core(name, net, {}, { wall: () => Date.now() + skewMs });

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (e) {
    return (e as MakhzenError).code;
  }
  return undefined;
};

describe("clock offsets, pure", () => {
  test("a sample assumes the peer read its clock half way through the round trip", () => {
    expect(offsetSample(1000, 91_010, 1020)).toEqual({ offsetMs: 90_000, rttMs: 20, atMs: 1020 });
    expect(offsetSample(1000, 990, 1000)).toEqual({ offsetMs: -10, rttMs: 0, atMs: 1000 });
  });

  test("of the last samples, the one of least error counting its age: a drifting clock is followed, a slow answer still loses", () => {
    // A peer whose clock gains 10 ms a second (faketime x1.01), one sample a heartbeat; the oldest had the
    // shortest round trip by 0.1 ms, and was the estimate, 70 ms behind: that node was fenced late.
    const drift = new ClockOffsets();
    for (let i = 0; i < 8; i++) drift.record("c", { offsetMs: 300 + 10 * i, rttMs: i === 0 ? 0.4 : 0.5, atMs: 1000 * i });
    expect(drift.offsetOf("c")).toBe(370);
    // A fresh answer that waited out a GC pause (50 ms round trip) says less than a quick one a heartbeat older.
    const pause = new ClockOffsets();
    pause.record("b", { offsetMs: 5, rttMs: 0.5, atMs: 0 });
    pause.record("b", { offsetMs: 30, rttMs: 50, atMs: 1000 });
    expect(pause.offsetOf("b")).toBe(5);
  });

  test("the median counts this node as 0: one bad clock of three is outvoted, two disagreeing clocks fence both", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    // a's view: b agrees, c is 90 s ahead -> a is at the median.
    expect(selfOffsetMs([0, 90_000])).toBe(0);
    // c's view: both others are 90 s behind -> c is 90 s ahead of the median.
    expect(selfOffsetMs([-90_000, -90_000])).toBe(90_000);
    // Two nodes 1 s apart: each is 500 ms from their median.
    expect(Math.abs(selfOffsetMs([1000]))).toBe(500);
    expect(Math.abs(selfOffsetMs([-1000]))).toBe(500);
  });
});

describe("ClockGuard", () => {
  const guard = (wall: ManualWallClock, offsets: Record<string, number> = {}, maxOffsetMs = 500, mono = wall.read, hasSeeds = false) => {
    const clock = new HybridClock("a", wall.read);
    const g = new ClockGuard({ clock, maxOffsetMs, peers: () => Object.keys(offsets), hasSeeds: () => hasSeeds, unmeasuredGraceMs: 60_000, freshMs: 3000, monoMs: mono });
    g.started();
    for (const [peer, o] of Object.entries(offsets)) g.record(peer, offsetSample(wall.ms, wall.ms + o, wall.ms));
    return { g, clock };
  };

  test("fenced past the max offset from the median, not within it; a lone node never", () => {
    const wall = new ManualWallClock();
    expect(guard(wall, { b: -90_000, c: -90_000 }).g.state()).toMatchObject({ offsetMs: 90_000, fenced: true });
    expect(guard(wall, { b: 0, c: 90_000 }).g.state()).toMatchObject({ offsetMs: 0, fenced: false });
    expect(guard(wall, { b: -400, c: -300 }).g.state()).toMatchObject({ offsetMs: 300, fenced: false });
    expect(guard(wall, { b: 1200 }).g.state().fenced).toBe(true);
    // Alone: no clock to disagree with, whatever its versions say.
    const lone = guard(wall);
    lone.clock.observe(formatVersion(wall.ms + 3_600_000, 0, "x"));
    expect(lone.g.state()).toMatchObject({ offsetMs: 0, fenced: false });
  });

  test("a clock set right stays fenced while its hybrid clock still stamps ahead of the median", () => {
    const wall = new ManualWallClock();
    const { g, clock } = guard(wall, { b: 0, c: 0 });
    clock.observe(formatVersion(wall.ms + 10_000, 0, "a")); // what it stamped while 10 s fast
    expect(g.state().fenced).toBe(true);
    wall.advance(10_001);
    g.record("b", offsetSample(wall.ms, wall.ms, wall.ms)); // a new sample: recomputed at once
    expect(g.state().fenced).toBe(false);
  });

  test("a lead taken from a peer's records (a drifting clock) fences a healthy node only past 90% of the max; its own clock's lead does at 80%, an earlier life's stamps too", () => {
    const wall = new ManualWallClock();
    const { g, clock } = guard(wall, { b: 0, c: 0 });
    clock.observe(formatVersion(wall.ms + 440, 0, "c")); // c runs 440 ms ahead: over the share (400), under 90% (450)
    expect(g.state()).toMatchObject({ fenced: false });
    clock.now(); // and this node stamps at that lead, as c does
    expect(g.state()).toMatchObject({ fenced: false });
    clock.observe(formatVersion(wall.ms + 470, 0, "c")); // past 90%: receivers' margin for their error would be gone
    expect(g.state()).toMatchObject({ fenced: true, reason: "stamps", share: 0.9 });
    // And its refusal names the fence that stands (it said "past 400 ms, 80%").
    expect(clockOffsetError(g.state()).message).toContain("past 450 ms, 90% of --max-clock-offset 500 ms");
    // Read back from its data dir, its own stamps of an earlier life count as its own clock's lead.
    const restarted = guard(new ManualWallClock(wall.ms), { b: 0, c: 0 });
    restarted.clock.restored(formatVersion(wall.ms + 420, 0, "a"));
    expect(restarted.g.state()).toMatchObject({ fenced: true, reason: "stamps" });
    const others = guard(new ManualWallClock(wall.ms), { b: 0, c: 0 });
    others.clock.restored(formatVersion(wall.ms + 420, 0, "c")); // another node's: taken, not its own
    expect(others.g.state()).toMatchObject({ fenced: false });
    // Its own clock 450 ms fast, then set right: its own lead fences at the share.
    const own = new ManualWallClock();
    const mine = guard(own, { b: 0, c: 0 });
    own.advance(450);
    mine.clock.now();
    own.advance(-450);
    expect(mine.g.state()).toMatchObject({ fenced: true, reason: "stamps", share: 0.8 });
    expect(clockOffsetError(mine.g.state()).message).toContain("past 400 ms, 80% of --max-clock-offset 500 ms");
  });

  test("a step of the wall clock fences at once, before the next heartbeat measures it: every offset moves with it", () => {
    const wall = new ManualWallClock();
    const mono = new ManualWallClock(0);
    const { g } = guard(wall, { b: 0, c: 0 }, 500, mono.read);
    wall.advance(1000);
    mono.advance(1000); // time passing: no step
    expect(g.state().fenced).toBe(false);
    wall.advance(90_000); // NTP step, a resumed VM, libfaketime: the monotonic clock moved as time did
    mono.advance(1);
    wall.advance(1); // the millisecond that passed
    expect(g.state()).toMatchObject({ fenced: true, reason: "offset", offsetMs: 90_000 });
    expect(g.offsetOf("b")).toBe(-90_000);
    // The next heartbeats measure what the shift said.
    g.record("b", offsetSample(wall.ms, wall.ms - 90_000, wall.ms));
    expect(g.state()).toMatchObject({ fenced: true, reason: "offset", offsetMs: 90_000 });
    // A step of 0.7 s (under twice the fence) with one peer dead: the dead one's offset
    // moves too, so two of three clocks still say this one is off.
    const w2 = new ManualWallClock();
    const m2 = new ManualWallClock(0);
    const two = guard(w2, { b: 0, c: 0 }, 500, m2.read).g;
    w2.advance(700);
    m2.advance(1);
    w2.advance(1);
    two.record("b", offsetSample(w2.ms, w2.ms - 700, w2.ms)); // b answers; c is dead
    expect(two.state()).toMatchObject({ fenced: true, offsetMs: 700 });
  });

  test("a sample that took a long round trip (an answer that waited out a stopped peer) is not a measurement", () => {
    const wall = new ManualWallClock();
    const { g } = guard(wall, { b: 0, c: 0 });
    // b's answer waited 900 ms in b's socket: it looks 450 ms ahead, but the error is as large.
    g.record("b", { offsetMs: 450, rttMs: 900, atMs: wall.ms });
    expect(g.offsetOf("b")).toBe(0);
    expect(g.state()).toMatchObject({ fenced: false, offsetMs: 0 });
  });

  test("two clocks that disagree past the fence threshold are both fenced (neither can tell which is right)", () => {
    const wall = new ManualWallClock();
    expect(guard(wall, { b: 450 }).g.state()).toMatchObject({ fenced: true, reason: "offset" });
    expect(guard(wall, { b: -450 }).g.state()).toMatchObject({ fenced: true, reason: "offset" });
    expect(guard(wall, { b: 300 }).g.state().fenced).toBe(false);
  });

  test("a step seen first by a heartbeat sample, not a write, still drops the stale offsets (a dead peer's included)", () => {
    const wall = new ManualWallClock();
    const mono = new ManualWallClock(0);
    // b answers, c is dead: its last offset (0) would still count.
    const { g } = guard(wall, { b: 0, c: 0 }, 500, mono.read);
    wall.advance(3000); // a +3 s step while idle: no write looks at the clock
    mono.advance(1);
    g.record("b", offsetSample(wall.ms, wall.ms - 3000, wall.ms)); // b's next heartbeat sees it first
    expect(g.state()).toMatchObject({ fenced: true, reason: "offset" });
  });

  test("a jump of the wall and monotonic clocks together, one peer dead: the live peer's fresh sample fences, the dead one's stale offset cannot keep it open", () => {
    const wall = new ManualWallClock();
    const mono = new ManualWallClock(0);
    const { g } = guard(wall, { b: 0, c: 0 }, 500, mono.read);
    // c dies; b is sampled at every heartbeat. Ten seconds on, both clocks move alike.
    for (let i = 0; i < 10; i++) {
      wall.advance(1000);
      mono.advance(1000);
      g.record("b", offsetSample(wall.ms, wall.ms, wall.ms));
    }
    expect(g.state().fenced).toBe(false);
    // This node's wall and monotonic clocks jump 3 s together (a VM snapshot, libfaketime): no step is seen.
    wall.advance(3000);
    mono.advance(3000);
    g.record("b", offsetSample(wall.ms, wall.ms - 3000, wall.ms));
    // Of c's stale ~0, b's -3 s and our own 0, the median is 0: it stayed open before. b alone says 3 s apart.
    expect(g.state()).toMatchObject({ fenced: true, reason: "offset", offsetMs: 1500 });
    // Records are judged by the earlier of the two medians: a write stamped by our clock now is too far ahead.
    expect(g.tooFarAhead(formatVersion(wall.ms, 0, "a"))).toBe(true);
    // The honest peer b sees the same as two clocks apart, c's stale offset aside: it cannot tell either, and is fenced too.
    const bWall = new ManualWallClock();
    const honest = guard(bWall, { a: 0, c: 0 }, 500, bWall.read).g;
    bWall.advance(10_000);
    honest.record("a", offsetSample(bWall.ms, bWall.ms + 3000, bWall.ms));
    expect(honest.state()).toMatchObject({ fenced: true, reason: "offset" });
    // A third live clock that agrees with b keeps b open and outvotes a, as always.
    honest.record("c", offsetSample(bWall.ms, bWall.ms, bWall.ms));
    expect(honest.state().fenced).toBe(false);
  });

  // A recheck: libfaketime set wall and monotonic clocks 20 s back. The dead member's last sample then sat in
  // the node's future, passed for fresh, and the median of its 0, the live peer's +20 s and that stale ~0 kept
  // it open, stamping writes 20 s in the past. Bun's performance.now may instead stay where it was (clamped).
  test.each([
    ["goes back with it", false],
    ["stays where it was (clamped)", true],
  ])("a jump back of the wall clock while the monotonic clock %s, one peer dead: the live peer's fresh sample fences", (_, clamped) => {
    const wall = new ManualWallClock();
    const raw = new ManualWallClock(0);
    let highest = 0;
    const mono = clamped ? () => (highest = Math.max(highest, raw.ms)) : raw.read;
    const { g } = guard(wall, { b: 0, c: 0 }, 500, mono);
    for (let i = 0; i < 9; i++) {
      wall.advance(1000);
      raw.advance(1000);
      for (const p of ["b", "c"]) g.record(p, offsetSample(wall.ms, wall.ms, wall.ms));
    }
    // c is killed, and at once the clocks jump.
    wall.advance(-20_000);
    raw.advance(-20_000);
    // Writes look at the clock while real time catches up (Bun's timers wait for the monotonic clock: no heartbeat).
    for (let i = 0; i < 40; i++) {
      wall.advance(500);
      raw.advance(500);
      g.state();
    }
    for (let i = 0; i < 4; i++) {
      wall.advance(1000);
      raw.advance(1000);
      g.record("b", offsetSample(wall.ms, wall.ms + 20_000, wall.ms));
      expect(g.state()).toMatchObject({ fenced: true, reason: "offset" });
    }
  });

  test("stale offsets may keep a node fenced, never open it: a node fenced and then cut off from every peer stays fenced", () => {
    const wall = new ManualWallClock();
    const { g } = guard(wall, { b: -3000, c: -3000 });
    expect(g.state()).toMatchObject({ fenced: true, reason: "offset", offsetMs: 3000 });
    wall.advance(60_000); // no peer answers for a minute: no fresh sample at all
    expect(g.state()).toMatchObject({ fenced: true, reason: "offset", offsetMs: 3000 });
    // And one fresh peer that agrees with this node's clock does not open it against the others' last word.
    const w2 = new ManualWallClock();
    const two = guard(w2, { b: -3000, c: -3000, d: -3000, e: 0 }).g;
    w2.advance(60_000);
    two.record("e", offsetSample(w2.ms, w2.ms, w2.ms));
    expect(two.state()).toMatchObject({ fenced: true, reason: "offset" });
  });

  test("a node given seeds is fenced until it has measured one peer's clock; a lone node never is", () => {
    const wall = new ManualWallClock();
    expect(guard(wall, {}, 500, wall.read, true).g.state()).toMatchObject({ fenced: true, reason: "unmeasured" });
    expect(guard(wall, {}, 500, wall.read, false).g.state().fenced).toBe(false);
    expect(guard(wall, { b: 3 }, 500, wall.read, true).g.state().fenced).toBe(false);
  });

  test("a far-future record is refused against the median clock, and stays refused once time has caught up", () => {
    const wall = new ManualWallClock();
    const { g } = guard(wall, { b: 0, c: 0 });
    const v = formatVersion(wall.ms + 3000, 0, "c");
    expect(g.tooFarAhead(v)).toBe(true);
    g.refuse("default\u0000k", v);
    g.refuse("default\u0000k", v); // offered again: counted once
    wall.advance(5000);
    expect(g.tooFarAhead(v)).toBe(false);
    expect(g.wasRefused("default\u0000k", v)).toBe(true);
    expect(g.wasRefused("default\u0000other", v)).toBe(false);
    expect(g.refusedTooNew).toBe(1);
  });

  test("a node whose own clock is not checked (no peer measured yet) refuses a far-ahead record for now, and remembers nothing", () => {
    const wall = new ManualWallClock();
    const clock = new HybridClock("c", wall.read);
    let deferred = 0;
    const peers: string[] = [];
    const g = new ClockGuard({ clock, maxOffsetMs: 500, peers: () => peers, hasSeeds: () => true, unmeasuredGraceMs: 60_000, freshMs: 3000, monoMs: wall.read, onDeferred: () => deferred++ });
    g.started();
    // This node restarted 2 s slow: an honest record looks 2 s ahead of its own clock.
    const honest = formatVersion(wall.ms + 2000, 0, "a");
    expect(g.state()).toMatchObject({ fenced: true, reason: "unmeasured" });
    expect(g.tooFarAhead(honest)).toBe(true);
    g.refuse("default\u0000k", honest);
    expect([g.wasRefused("default\u0000k", honest), g.refusedTooNew, g.deferredTooNew, deferred]).toEqual([false, 0, 1, 1]);
    // Measured: both peers are 2 s ahead, so this node's clock is the one that is off, and the record is honest.
    peers.push("a", "b");
    g.record("a", offsetSample(wall.ms, wall.ms + 2000, wall.ms));
    g.record("b", offsetSample(wall.ms, wall.ms + 2000, wall.ms));
    expect(g.tooFarAhead(honest)).toBe(false);
    // With its clock checked and within bounds, a record really that far ahead is refused for good.
    const clockRight = new ManualWallClock();
    const checked = new ClockGuard({ clock: new HybridClock("c", clockRight.read), maxOffsetMs: 500, peers: () => ["a"], hasSeeds: () => true, unmeasuredGraceMs: 60_000, freshMs: 3000, monoMs: clockRight.read });
    checked.started();
    checked.record("a", offsetSample(clockRight.ms, clockRight.ms, clockRight.ms));
    const ahead = formatVersion(clockRight.ms + 2000, 0, "a");
    checked.refuse("default\u0000k", ahead);
    expect([checked.wasRefused("default\u0000k", ahead), checked.refusedTooNew, checked.deferredTooNew]).toEqual([true, 1, 0]);
  });

  test("a refusal made while this node's clocks had jumped back unseen (with its monotonic clock) is taken back at a sample once the record's stamp has passed on its writer's clock, within bounds", () => {
    // Wall and monotonic clocks move together (a VM restored from a snapshot): no step is seen.
    const wall = new ManualWallClock();
    let deferred = 0;
    const peers = ["b", "c"];
    const g = new ClockGuard({ clock: new HybridClock("a", wall.read), maxOffsetMs: 500, peers: () => peers, hasSeeds: () => true, unmeasuredGraceMs: 60_000, freshMs: 3000, monoMs: wall.read, onDeferred: () => deferred++ });
    g.started();
    for (const p of peers) g.record(p, offsetSample(wall.ms, wall.ms, wall.ms));
    wall.advance(-1000); // from here on this node's clocks run 1 s behind
    expect(g.state().fenced).toBe(false); // nothing has measured it yet
    const realMs = () => wall.ms + 1000;
    // An honest delete b stamped 200 ms ago looks 800 ms ahead: refused.
    const honest = formatVersion(realMs() - 200, 0, "b");
    // A record really 3 s ahead, from c (whose clock is right), and one from a writer this node does not measure.
    const ahead = formatVersion(realMs() + 3000, 0, "c");
    const stranger = formatVersion(realMs() - 200, 0, "x");
    for (const [k, v] of [["k", honest], ["f", ahead], ["s", stranger]] as const) g.refuse(`default\u0000${k}`, v);
    expect([g.wasRefused("default\u0000k", honest), g.wasRefused("default\u0000f", ahead), g.refusedTooNew]).toEqual([true, true, 3]);
    // The clock is set right again before any sample (the jump never measured): the next sample still takes back the honest one.
    wall.advance(1000);
    g.record("b", offsetSample(wall.ms, wall.ms, wall.ms));
    expect(g.wasRefused("default\u0000k", honest)).toBe(false);
    expect([g.deferredTooNew, deferred]).toEqual([1, 1]);
    // The one 3 s ahead waits for its stamp to pass on c's clock; then c's clock is within bounds, and it is taken too (it lands late).
    expect(g.wasRefused("default\u0000f", ahead)).toBe(true);
    wall.advance(3100);
    g.record("c", offsetSample(wall.ms, wall.ms, wall.ms));
    expect(g.wasRefused("default\u0000f", ahead)).toBe(false);
    // The stranger's stays refused: nothing tells whether its writer's clock is sane.
    expect(g.wasRefused("default\u0000s", stranger)).toBe(true);
  });

  test("a record from a writer measured off when it came stays refused for good, though that clock is set right and its stamp has passed", () => {
    const wall = new ManualWallClock();
    const g = new ClockGuard({ clock: new HybridClock("a", wall.read), maxOffsetMs: 500, peers: () => ["b", "c"], hasSeeds: () => false, unmeasuredGraceMs: 60_000, freshMs: 3000, monoMs: wall.read });
    g.record("b", offsetSample(wall.ms, wall.ms, wall.ms));
    // c runs 3 s fast (open all the same: its own --max-clock-offset is larger).
    g.record("c", offsetSample(wall.ms, wall.ms + 3000, wall.ms));
    const fromC = formatVersion(wall.ms + 3000, 0, "c");
    g.refuse("default\u0000k", fromC);
    wall.advance(5000);
    g.record("b", offsetSample(wall.ms, wall.ms, wall.ms));
    g.record("c", offsetSample(wall.ms, wall.ms + 3000, wall.ms));
    expect([g.wasRefused("default\u0000k", fromC), g.deferredTooNew]).toEqual([true, 0]);
    // c's clock is set right: what it stamped 3 s ahead still must not win over what others wrote since.
    g.record("c", offsetSample(wall.ms, wall.ms, wall.ms));
    wall.advance(1000);
    g.record("b", offsetSample(wall.ms, wall.ms, wall.ms));
    expect([g.wasRefused("default\u0000k", fromC), g.deferredTooNew]).toEqual([true, 0]);
  });

  test("a refusal far ahead does not hold back a writer's later ones: each is taken back once its own stamp has passed", () => {
    const wall = new ManualWallClock();
    const peers = ["b", "c"];
    const g = new ClockGuard({ clock: new HybridClock("a", wall.read), maxOffsetMs: 500, peers: () => peers, hasSeeds: () => false, unmeasuredGraceMs: 60_000, freshMs: 3000, monoMs: wall.read });
    for (const p of peers) g.record(p, offsetSample(wall.ms, wall.ms, wall.ms));
    // b jumped 120 s ahead for a moment (unseen, within bounds as measured) and wrote once.
    const far = formatVersion(wall.ms + 120_000, 0, "b");
    g.refuse("default\u0000far", far);
    // Later this node's clocks jump back 1 s unseen, and an honest delete from b looks ahead.
    wall.advance(-1000);
    const honest = formatVersion(wall.ms + 1000 - 100, 0, "b");
    g.refuse("default\u0000k", honest);
    wall.advance(1000); // set right before any sample
    g.record("b", offsetSample(wall.ms, wall.ms, wall.ms));
    expect([g.wasRefused("default\u0000k", honest), g.wasRefused("default\u0000far", far)]).toEqual([false, true]);
  });

  test("a node with a slow clock judges records by the median clock, not its own", () => {
    const wall = new ManualWallClock();
    // This node is 20 s behind both others: their honest records are 20 s ahead of its own clock.
    const { g } = guard(wall, { b: 20_000, c: 20_000 });
    expect(g.state().fenced).toBe(true);
    expect(g.tooFarAhead(formatVersion(wall.ms + 20_000, 0, "b"))).toBe(false);
    expect(g.tooFarAhead(formatVersion(wall.ms + 20_600, 0, "b"))).toBe(true);
  });
});

describe("clock skew in a cluster (in process)", () => {
  const started: Core[] = [];
  const cluster = async (nodes: Core[]) => {
    started.push(...nodes);
    await joined(nodes);
    // One more heartbeat each, so every node has measured every other.
    for (const n of nodes) n.cluster.membership.tick();
    await eventually(() => nodes.every((n) => n.cluster.status().members.every((m) => m.clockOffsetMs !== null)));
  };
  const closeAll = () => {
    for (const n of started.splice(0)) n.cluster.close();
  };

  test("a node 90 s fast is fenced and not ready; the others are not; /cluster shows the offsets", async () => {
    const net = new MemoryTransport();
    const [a, b, c] = [core("a", net), core("b", net), skewed("c", net, 90_000)];
    try {
      await cluster([a, b, c]);
      expect(codeOf(() => c.cluster.checkWritable())).toBe("CLOCK_OFFSET");
      expect(c.cluster.ready).toBe(false);
      expect(c.cluster.notReadyReason()?.code).toBe("CLOCK_OFFSET");
      expect(codeOf(() => a.cluster.checkWritable())).toBeUndefined();
      expect(codeOf(() => b.cluster.checkWritable())).toBeUndefined();
      const seenByA = a.cluster.status();
      expect(seenByA.clock.fenced).toBe(false);
      expect(Math.abs(seenByA.clock.offsetMs)).toBeLessThan(100);
      expect(Math.abs(seenByA.members.find((m) => m.name === "c")!.clockOffsetMs! - 90_000)).toBeLessThan(100);
      expect(c.cluster.status().clock).toMatchObject({ fenced: true, maxOffsetMs: 500 });
      expect(Math.abs(c.cluster.status().clock.offsetMs - 90_000)).toBeLessThan(100);
      // It keeps applying replicated records (a's write reaches it).
      const r = a.write("k", "from-a");
      await eventually(() => c.store.getRecord("default", "k")?.version === r.version);
    } finally {
      closeAll();
    }
  });

  test("+45 s and -20 s: both skewed nodes are fenced; the slow one takes honest writes; the honest clock is not dragged", async () => {
    const net = new MemoryTransport();
    const [a, fast, slow] = [core("a", net), skewed("fast", net, 45_000), skewed("slow", net, -20_000)];
    try {
      await cluster([a, fast, slow]);
      expect(fast.cluster.checkWritable.bind(fast.cluster)).toThrow(MakhzenError);
      expect(codeOf(() => slow.cluster.checkWritable())).toBe("CLOCK_OFFSET");
      expect(codeOf(() => a.cluster.checkWritable())).toBeUndefined();
      const r = a.write("k", "honest");
      await eventually(() => slow.store.getRecord("default", "k")?.version === r.version);
      // a never observed a version from the fast node's future.
      expect(a.clock.highWaterMs() - Date.now()).toBeLessThan(1000);
      expect(versionWallMs(a.clock.now()) - Date.now()).toBeLessThan(1000);
    } finally {
      closeAll();
    }
  });

  test("a record stamped ahead is refused; w=all does not count a replica whose copy is such a record; it is taken once its stamp has passed on its writer's clock", async () => {
    const net = new MemoryTransport();
    const [a, b, c] = [core("a", net), core("b", net), core("c", net)];
    try {
      await cluster([a, b, c]);
      // c wrote k in the moment before its fence went up, its clock 1.5 s fast.
      const ahead: StoredRecord = { bucket: "default", key: "k", value: "from-c", version: formatVersion(Date.now() + 1500, 0, "c") };
      c.store.apply(ahead);
      const answer = a.cluster.applyRemote([ahead]);
      expect(answer).toEqual({ applied: 0, tooNew: [0] });
      expect(versionWallMs(a.clock.now()) - Date.now()).toBeLessThan(1000); // never observed

      // a writes k and asks every replica: c holds a newer version, but one out of bounds.
      const r = a.write("k", "from-a");
      const err = await a.cluster.consistency
        .awaitWrite("default", "k", r.version, { level: "all", raw: "all", timeoutMs: 300 })
        .then(() => undefined, (e: MakhzenError) => e);
      expect(err?.code).toBe("REPLICATION_TIMEOUT");
      expect(b.store.getRecord("default", "k")?.version).toBe(r.version);

      // Offered again before its stamp has passed: still refused, counted once.
      expect(a.cluster.applyRemote([ahead]).tooNew).toEqual([0]);
      expect(a.cluster.refusedForDrift).toBe(1);
      // c's own clock is within bounds (its jump was over before anything measured it),
      // so c keeps the record (retraction.ts): once its stamp has passed on c's clock,
      // a takes the refusal back at its next sample and the record lands, late, as a
      // write within the clocks' bounds would, rather than leave a and c apart for good.
      await eventually(() => a.cluster.clockGuard.deferredTooNew > 0, { timeoutMs: 5000, what: "a takes its refusal back" });
      expect(a.cluster.applyRemote([ahead]).tooNew).toEqual([]);
      expect(a.store.getRecord("default", "k")?.value).toBe("from-c");
    } finally {
      closeAll();
    }
  });

  test("a batch that throws part way moves the clock past what it applied: no later local write is stamped below it", async () => {
    const net = new MemoryTransport();
    const [a, b] = [core("a", net), core("b", net)];
    try {
      await cluster([a, b]);
      // A record 300 ms ahead (within --max-clock-offset), then one the store throws on.
      const ahead: StoredRecord = { bucket: "default", key: "k1", value: "from-b", version: formatVersion(Date.now() + 300, 0, "b") };
      const bad: StoredRecord = { bucket: "default", key: "k2", value: "x", version: formatVersion(Date.now(), 0, "b") };
      const apply = a.store.apply.bind(a.store);
      a.store.apply = (r) => {
        if (r.key === "k2") throw new Error("injected");
        return apply(r);
      };
      expect(() => a.cluster.applyRemote([ahead, bad])).toThrow("injected");
      a.store.apply = apply;
      expect(a.store.getRecord("default", "k1")?.version).toBe(ahead.version);
      // The local write that follows wins over the record it replaces.
      const r = a.write("k1", "from-a");
      expect(r.version > ahead.version).toBe(true);
      expect(a.store.getRecord("default", "k1")?.value).toBe("from-a");
    } finally {
      closeAll();
    }
  });

  test("two nodes whose clocks disagree are both fenced: neither can tell which is right", async () => {
    const net = new MemoryTransport();
    const [a, b] = [core("a", net), skewed("b", net, 5000)];
    try {
      await cluster([a, b]);
      expect(codeOf(() => a.cluster.checkWritable())).toBe("CLOCK_OFFSET");
      expect(codeOf(() => b.cluster.checkWritable())).toBe("CLOCK_OFFSET");
    } finally {
      closeAll();
    }
  });
});

describe("a write stamped in a clock jump does not outlive it", () => {
  /** a, b and c joined, each with every clock measured; c's wall clock runs `jump.ms` ahead of real time. */
  async function jumpingC(net: MemoryTransport) {
    const jump = { ms: 0 };
    const [a, b, c] = [core("a", net), core("b", net), core("c", net, {}, { wall: () => Date.now() + jump.ms })];
    const nodes = [a, b, c];
    await joined(nodes);
    for (const n of nodes) n.cluster.membership.tick();
    await eventually(() => nodes.every((n) => n.cluster.status().members.every((m) => m.clockOffsetMs !== null)));
    return { a, b, c, nodes, jump };
  }
  /** A round of anti-entropy from every node with every other. */
  const syncAll = async (nodes: Core[]) => {
    for (const n of nodes) for (const p of nodes) if (p !== n) await n.cluster.antiEntropy.syncWith({ name: p.name, url: p.url }).catch(() => {});
  };

  test("a write a peer refused as too far ahead is retracted by the node that stamped it, so it never lands later", async () => {
    const net = new MemoryTransport();
    const { a, b, c, nodes, jump } = await jumpingC(net);
    try {
      jump.ms = 1500; // c's wall clock steps ahead; it stamps one write before anything notices
      const ahead = c.write("k", "from-c");
      // The first peer to refuse it makes c give it up; the other may never even be sent it.
      await eventually(() => a.cluster.refusedForDrift + b.cluster.refusedForDrift > 0);
      await eventually(() => c.store.getRecord("default", "k") === undefined);
      expect(c.cluster.retraction.retracted).toBe(1);
      const honest = a.write("k", "from-a"); // acknowledged by a and b, as w=quorum would
      await eventually(() => b.store.get("default", "k")?.version === honest.version);
      // Real time passes c's stamp: nobody holds it to offer any more, and a node that never saw it cannot get it.
      await eventually(() => Date.now() > versionWallMs(ahead.version) + 100, { timeoutMs: 5000 });
      jump.ms = 0;
      await syncAll(nodes);
      expect(nodes.map((n) => n.store.get("default", "k")?.value)).toEqual(["from-a", "from-a", "from-a"]);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });

  test("a delete retracted while a peer was cut off never reaches it: a queued delete of a purged key still goes, but not a retracted one", async () => {
    const net = new MemoryTransport();
    const { a, b, c, nodes, jump } = await jumpingC(net);
    try {
      a.write("k", "v0");
      await eventually(() => nodes.every((n) => n.store.get("default", "k")?.value === "v0"));
      net.cut(b.url); // c's delete waits in its queue for b
      jump.ms = 1500;
      const ahead = c.write("k", null);
      await eventually(() => a.cluster.refusedForDrift > 0);
      await eventually(() => c.cluster.retraction.retracted === 1);
      jump.ms = 0;
      const honest = a.write("k", "from-a");
      // Past c's stamp: b would now take the delete, and it would win over a's write everywhere.
      await eventually(() => Date.now() > versionWallMs(ahead.version) + 100, { timeoutMs: 5000 });
      net.heal(b.url);
      await eventually(() => b.store.get("default", "k")?.version === honest.version, { what: "b takes a's write" });
      await eventually(() => c.cluster.replicator.drained(["a", "b"]), { what: "c's queues drained" });
      await syncAll(nodes);
      expect(nodes.map((n) => n.store.get("default", "k")?.value)).toEqual(["from-a", "from-a", "from-a"]);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });
});

describe("a write stamped while the wall and monotonic clocks jumped together", () => {
  /**
   * a, b and c joined, every clock measured; c's wall and monotonic clocks run `jump.ms`
   * ahead together (a VM snapshot, libfaketime), so no step is seen. c's own heartbeats
   * are stopped: the samples that measure its clock are the test's, one peer at a time.
   * No periodic anti-entropy within a test: what repairs c is what it asks for.
   */
  async function jumpingTogether(net: MemoryTransport) {
    const jump = { ms: 0 };
    const slow = { antiEntropyIntervalMs: 600_000 };
    const [a, b] = [core("a", net, slow), core("b", net, slow)];
    const c = core("c", net, slow, { wall: () => Date.now() + jump.ms, mono: () => performance.now() + jump.ms });
    const nodes = [a, b, c];
    await joined(nodes);
    for (const n of nodes) n.cluster.membership.tick();
    await eventually(() => nodes.every((n) => n.cluster.status().members.every((m) => m.clockOffsetMs !== null)));
    c.cluster.membership.stop();
    /** One heartbeat's sample of `peer`'s clock, as c would take it now. */
    const sample = (peer: Core) => c.cluster.clockGuard.record(peer.name, { offsetMs: Date.now() - c.clock.wallMs(), rttMs: 1, atMs: c.clock.wallMs() });
    return { a, b, c, nodes, jump, sample };
  }
  const syncAll = async (nodes: Core[]) => {
    for (const n of nodes) for (const p of nodes) if (p !== n) await n.cluster.antiEntropy.syncWith({ name: p.name, url: p.url }).catch(() => {});
  };

  test("is retracted at the first fresh sample: the jump makes every older sample stale, and the fresh clocks are judged alone too", async () => {
    const net = new MemoryTransport();
    const { a, b, c, nodes, jump, sample } = await jumpingTogether(net);
    try {
      const before = a.write("k", "before");
      await eventually(() => nodes.every((n) => n.store.getRecord("default", "k")?.version === before.version), { what: "every node takes a's first write" });
      jump.ms = 3000;
      const ahead = c.write("k", "from-c");
      await eventually(() => a.cluster.refusedForDrift > 0 && b.cluster.refusedForDrift > 0, { what: "a and b refuse c's write" });
      await eventually(() => c.cluster.replicator.drained(["a", "b"]), { what: "c hears the refusals" });
      expect(c.cluster.clockGuard.state().fenced).toBe(false); // nothing has measured the jump yet
      // a's sample shows the jump. The median of c's 0, a's -3 s and b's last ~0 is still ~0, but b's
      // sample is 3 s old by c's jumped clock: of the fresh ones, a's alone says 3 s apart. c is fenced,
      // and by the earlier median its write is too far ahead: it gives it up.
      sample(a);
      expect(c.cluster.clockGuard.state()).toMatchObject({ fenced: true, reason: "offset" });
      expect(c.cluster.retraction.retracted).toBe(1);
      // b's sample moves the median over every clock: c is 3 s ahead.
      sample(b);
      expect(c.cluster.clockGuard.state()).toMatchObject({ fenced: true, reason: "offset", offsetMs: 3000 });
      expect(c.cluster.retraction.retracted).toBe(1);
      expect(c.store.getRecord("default", "k")?.version).not.toBe(ahead.version);
      // c asks its peers at once for what they hold, not at the next periodic round.
      await eventually(() => c.store.getRecord("default", "k")?.version === before.version, { timeoutMs: 3000, what: "c takes back a's first write" });

      const honest = a.write("k", "from-a");
      await eventually(() => nodes.every((n) => n.store.getRecord("default", "k")?.version === honest.version), { what: "every node takes a's write" });
      // Real time passes c's stamp, and c's clock is set right: the retracted write comes back nowhere.
      await eventually(() => Date.now() > versionWallMs(ahead.version) + 100, { timeoutMs: 5000 });
      jump.ms = 0;
      sample(a);
      sample(b);
      await syncAll(nodes);
      expect(nodes.map((n) => n.store.get("default", "k")?.value)).toEqual(["from-a", "from-a", "from-a"]);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });

  test("an honest write a peer refused (its clock the wrong one) waits for every peer's fresh sample, then is kept", async () => {
    const net = new MemoryTransport();
    const { a, b, c, nodes, sample } = await jumpingTogether(net);
    try {
      const honest = c.write("k", "from-c");
      // As if a peer whose clock had jumped back refused it.
      c.cluster.retraction.notHeld([c.store.getRecord("default", "k")!]);
      sample(a);
      expect(c.cluster.retraction.waiting).toBe(1);
      sample(b);
      expect(c.cluster.retraction.waiting).toBe(0);
      expect(c.cluster.retraction.retracted).toBe(0);
      expect(c.store.getRecord("default", "k")?.version).toBe(honest.version);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  });
});

describe("a receiver whose clocks jumped back together", () => {
  test("a delete it refused while its wall and monotonic clocks ran 1 s behind (no step seen) is taken back, and repaired once its clock is right", async () => {
    const net = new MemoryTransport();
    let behind = 0;
    // c's wall and monotonic clocks move together, as in a VM restored from a snapshot.
    const [a, b, c] = [core("a", net), core("b", net), core("c", net, {}, { wall: () => Date.now() - behind, mono: () => performance.now() - behind })];
    const nodes = [a, b, c];
    try {
      await joined(nodes);
      for (const n of nodes) n.cluster.membership.tick();
      await eventually(() => nodes.every((n) => n.cluster.status().members.every((m) => m.clockOffsetMs !== null)));
      const old = b.write("k", "old");
      await eventually(() => c.store.getRecord("default", "k")?.version === old.version);
      // Past c's last stamp by more than the jump, so its hybrid clock does not run ahead of its wall clock after it.
      await eventually(() => Date.now() > versionWallMs(old.version) + 1200, { timeoutMs: 5000 });
      behind = 1000;
      expect(c.cluster.clockGuard.state().fenced).toBe(false); // nothing has seen it yet
      // b deletes k at once: c, judging by clocks not measured since, finds the tombstone ~1 s ahead and refuses it.
      const gone = b.write("k", null);
      await eventually(() => c.cluster.refusedForDrift > 0, { what: "c refuses the delete" });
      // The next heartbeats measure c 1 s behind: the refusal is taken back (c is fenced meanwhile, and not ready).
      await eventually(() => c.cluster.clockGuard.deferredTooNew > 0, { timeoutMs: 15_000, what: "c takes its refusal back" });
      expect(c.cluster.ready).toBe(false);
      behind = 0;
      // Its clock right, c asks its peers again: it holds the delete, and says it is ready.
      // (Generous deadlines: the heartbeats that measure the clock back run late on a loaded machine.)
      const why = (e: Error) => {
        throw new Error(`${e.message}; c: ${c.cluster.notReadyReason()?.message ?? "ready"}, holds ${JSON.stringify(c.store.getRecord("default", "k"))}`);
      };
      await eventually(() => c.cluster.ready, { timeoutMs: 15_000, what: "c ready" }).catch(why);
      await eventually(() => c.store.getRecord("default", "k")?.version === gone.version, { timeoutMs: 15_000, what: "c holds the delete" }).catch(why);
      expect(nodes.map((n) => n.store.getRecord("default", "k")?.version)).toEqual([gone.version, gone.version, gone.version]);
    } finally {
      for (const n of nodes) n.cluster.close();
    }
  }, 60_000);
});

describe("the CLOCK_OFFSET refusal's words", () => {
  test("an unmeasured clock is not said to be past the limit: nothing says where it is yet", () => {
    const unmeasured = clockOffsetError({ offsetMs: 0, fenced: true, maxOffsetMs: 500, reason: "unmeasured" }).message;
    expect(unmeasured).toStartWith("this node has not measured any peer's clock yet (its join or first heartbeat is still on its way, or no peer has answered: see the log), so it cannot tell whether its own is within --max-clock-offset 500 ms: ");
    expect(unmeasured).not.toContain("past");
    expect(clockOffsetError({ offsetMs: 900, fenced: true, maxOffsetMs: 500, reason: "offset" }).message).toStartWith(
      "this node's clock is 900 ms from the cluster's median, past 400 ms, 80% of --max-clock-offset 500 ms (the margin keeps what it stamps inside the limit): it refuses writes",
    );
    expect(clockOffsetError({ offsetMs: 0, fenced: true, maxOffsetMs: 500, reason: "stamps" }).message).toContain("still run ahead of the cluster's median clock, past");
    // Two clocks 450 ms apart: each is 225 ms from their middle, and was said to be "225 ms ... past 400 ms".
    expect(clockOffsetError({ offsetMs: -225, fenced: true, maxOffsetMs: 500, reason: "offset" }).message).toStartWith(
      "this node's clock and its one measured peer's are 450 ms apart, and neither can tell which is right, past 400 ms, 80% of --max-clock-offset 500 ms",
    );
  });
});
