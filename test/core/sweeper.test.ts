import { describe, expect, test } from "bun:test";
import { IDLE_GC_MIN_OPS, IDLE_GC_QUIET_MS, MAX_ROUNDS_PER_TICK, Sweeper } from "../../src/core/sweeper.ts";
import { memoryLogger } from "../support/core.ts";
import { eventually } from "../support/proc.ts";

/** A store whose sweep changes what `changes` says, round after round, and counts its calls. */
function fakeStore(changes: (round: number) => number) {
  const calls: number[] = [];
  return {
    calls,
    /** Reads and merges so far (Store.operations): what tells the sweeper the store is quiet. */
    operations: 0,
    sweep(budget: number): number {
      calls.push(budget);
      return changes(calls.length);
    },
  };
}

const options = { sweepIntervalMs: 5, sweepBudget: 100 };

describe("Sweeper", () => {
  test("a round that changes less than a quarter of its budget ends the tick", () => {
    const store = fakeStore(() => 24);
    expect(new Sweeper(store, options, memoryLogger()).tick()).toBe(1);
    expect(store.calls).toEqual([100]);
  });

  test("a mass expiry runs more rounds in one tick, never more than MAX_ROUNDS_PER_TICK", () => {
    const busy = fakeStore(() => 100);
    expect(new Sweeper(busy, options, memoryLogger()).tick()).toBe(MAX_ROUNDS_PER_TICK);
    expect(busy.calls).toHaveLength(MAX_ROUNDS_PER_TICK);
    // A quarter of the budget is still busy; the round after one below it is not run.
    const tapering = fakeStore((round) => (round === 1 ? 25 : 3));
    expect(new Sweeper(tapering, options, memoryLogger()).tick()).toBe(2);
  });

  test("a sweep that throws is logged and counted; the next tick tries again", () => {
    let broken = true;
    const store = fakeStore(() => {
      if (broken) throw new Error("bug");
      return 0;
    });
    const log = memoryLogger();
    const sweeper = new Sweeper(store, options, log);
    expect(() => sweeper.tick()).not.toThrow();
    expect(sweeper.failures).toBe(1);
    expect(log.lines).toContainEqual(expect.objectContaining({ level: "error", msg: "sweep failed", fields: expect.objectContaining({ failures: 1 }) }));
    broken = false;
    sweeper.tick();
    expect(sweeper.failures).toBe(1);
    expect(store.calls).toHaveLength(2);
  });

  test("a store quiet for IDLE_GC_QUIET_MS after IDLE_GC_MIN_OPS operations is collected, once per as many operations", () => {
    const store = fakeStore(() => 0);
    let collected = 0;
    const sweeper = new Sweeper(store, options, memoryLogger(), () => collected++);
    const quietTicks = IDLE_GC_QUIET_MS / options.sweepIntervalMs;
    const ticks = (n: number) => {
      for (let i = 0; i < n; i++) sweeper.tick();
    };
    // Busy: operations at every tick, never collected.
    for (let i = 0; i < 3 * quietTicks; i++) {
      store.operations += IDLE_GC_MIN_OPS;
      sweeper.tick();
    }
    expect(collected).toBe(0);
    // Quiet, but for one tick short of IDLE_GC_QUIET_MS: not yet; then once.
    ticks(quietTicks - 1);
    expect(collected).toBe(0);
    ticks(1);
    expect(collected).toBe(1);
    ticks(3 * quietTicks);
    expect(collected).toBe(1);
    expect(sweeper.idleCollections).toBe(1);
    // A few operations and quiet again: not enough since the last collection.
    store.operations += IDLE_GC_MIN_OPS - 1;
    ticks(3 * quietTicks);
    expect(collected).toBe(1);
    store.operations += 1;
    ticks(quietTicks + 1);
    expect(collected).toBe(2);
  });

  test("start() ticks every sweepIntervalMs until stop()", async () => {
    const store = fakeStore(() => 0);
    const sweeper = new Sweeper(store, options, memoryLogger()).start();
    try {
      await eventually(() => store.calls.length >= 3, { timeoutMs: 2000, what: "three ticks" });
    } finally {
      sweeper.stop();
    }
  });
});
