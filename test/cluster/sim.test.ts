/**
 * The simulation harness itself (test/support/sim.ts, sim-chaos.ts, faulty-net.ts),
 * checked where the answer is known: with full replication (replicas at least the
 * number of nodes, so every node owns every key) under the same chaos as the
 * partitioned simulations (sim-partitioned.test.ts), and each check shown to fail
 * on a cluster that breaks it.
 */
import { describe, expect, test } from "bun:test";
import { PeerError } from "../../src/cluster/protocol/peer-ops.ts";
import { recordsRequest } from "../../src/cluster/protocol/record-wire.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { FaultyNet, Rng } from "../support/faulty-net.ts";
import { canHappen, chooseEvent, fullCheck, mustHappen, runChaos, type ChaosOptions, type ChaosState } from "../support/sim-chaos.ts";
import { measureJoin, Sim, timingsFor, Writers } from "../support/sim.ts";

const track = closeAfterEach();
const sim = (opts: ConstructorParameters<typeof Sim>[0]) => track(new Sim(opts));

describe("the pieces", () => {
  test("choices are seeded: the same seed, the same choices; another seed, others", () => {
    const draw = (seed: number) => {
      const r = new Rng(seed);
      return Array.from({ length: 8 }, () => r.int(1000));
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(43)).not.toEqual(draw(42));
    const r = new Rng(1);
    expect(Array.from({ length: 200 }, () => r.pick(["a", "b"])).sort().join("")).toMatch(/^a+b+$/);
  });

  test("the faulty network cuts a link both ways, loses calls at its rate, and counts arrivals", async () => {
    const net = new FaultyNet(new Rng(7));
    const served: string[] = [];
    const service = {
      members: () => (served.push("members"), { members: [] }),
      records: (req: { records: unknown[] }) => ({ applied: req.records.length, refused: 0 }),
    } as never;
    net.register("b", service);
    const a = net.transportFor({ name: "a", alive: true });
    await a.call("mem://b", "members", {}, 1000);
    net.cut("b", "a");
    expect(await a.call("mem://b", "members", {}, 1000).catch((e: unknown) => e)).toBeInstanceOf(PeerError);
    net.healAll();
    net.lossRate = 1;
    expect(await a.call("mem://b", "members", {}, 1000).catch((e: PeerError) => e.message)).toMatch(/lost/);
    net.lossRate = 0;
    const gone = net.transportFor({ name: "dead", alive: false });
    expect(await gone.call("mem://b", "members", {}, 1000).catch((e: PeerError) => e.message)).toMatch(/sender is gone/);
    expect(served.length).toBeGreaterThanOrEqual(1);
    // Records that arrive, per node, while counting: once per key however often they come.
    net.arrivals = new Map();
    const records = [{ bucket: "default", key: "x", value: "1", version: "001700000000000-000000-a" }];
    await a.call("mem://b", "records", recordsRequest(records), 1000);
    await a.call("mem://b", "records", JSON.stringify(recordsRequest(records)), 1000);
    expect([...net.arrivals.get("b")!]).toEqual(["default/x"]);
    expect(net.carried).toBe(2);
    expect(net.arrivals.has("a")).toBe(false);
  });
  test("every event given a weight happens in every run of the scenarios' shapes, whatever the dice (the scheduler, without a cluster)", () => {
    type Shape = Pick<ChaosOptions, "steps" | "weights" | "minNodes" | "maxNodes"> & { start: number };
    const shapes: Shape[] = [
      { start: 10, steps: 12, minNodes: 7, maxNodes: 14, weights: { join: 2, leave: 2, kill: 2, restart: 2, cut: 1, heal: 1 } }, // this file
      { start: 10, steps: 10, minNodes: 7, maxNodes: 13, weights: { join: 2, leave: 2, kill: 2, restart: 2, cut: 1, heal: 1 } }, // sim-partitioned
      { start: 10, steps: 8, minNodes: 7, maxNodes: 13, weights: { join: 2, leave: 2, kill: 1, restart: 1, cut: 2, heal: 2 } },
      { start: 50, steps: 4, minNodes: 45, maxNodes: 55, weights: { join: 1, leave: 1, kill: 1, restart: 1 } },
      { start: 50, steps: 6, minNodes: 46, maxNodes: 54, weights: { join: 2, leave: 2, kill: 1, restart: 1, cut: 1, heal: 1 } },
      { start: 100, steps: 4, minNodes: 97, maxNodes: 103, weights: { join: 1, leave: 1, kill: 1, restart: 1 } },
    ];
    const r = new Rng(99);
    for (const shape of shapes) {
      for (let run = 0; run < 5000; run++) {
        const s: ChaosState = { live: shape.start, killed: 0, cuts: 0 };
        const missing = mustHappen(shape.weights);
        for (let step = 0; step < shape.steps; step++) {
          const event = chooseEvent(r.next(), step, missing, s, shape);
          if (!canHappen(event, s, missing, shape)) continue;
          if (event === "join") s.live++;
          else if (event === "leave") s.live--;
          else if (event === "kill") (s.live--, s.killed++);
          else if (event === "restart") (s.live++, s.killed--);
          else if (event === "cut") s.cuts++;
          else s.cuts = 0;
          expect(s.live).toBeGreaterThanOrEqual(shape.minNodes);
          expect(s.live + s.killed).toBeLessThanOrEqual(shape.maxNodes);
          missing.delete(event);
        }
        expect([...missing], `${JSON.stringify(shape)}, run ${run}`).toEqual([]);
      }
    }
  });
});

describe("the checks fail when they should", () => {
  test("a lost write, a deleted key live again, and a key on a non-owner are each reported", async () => {
    const s = sim({ replicas: 3, seed: 1 });
    await s.start(3);
    const writers = new Writers(s, { keys: 40 });
    await writers.fill();
    const check = fullCheck(s, writers);
    await s.settle(check, { timeoutMs: 10_000 });

    // A key gone from every node: lost.
    const [first] = s.live();
    const victim = first!.store.scan(undefined, 1)[0]!;
    const dumps = s.dumps();
    for (const [name, records] of dumps) dumps.set(name, records.filter((r) => r.key !== victim.key || r.bucket !== victim.bucket));
    expect(writers.recorder.lossProblem(dumps, s.kills)).toMatch(/no node holds the key/);

    // An acknowledged delete, and a live record older than it: a deleted key live again.
    const id = `${victim.bucket}/${victim.key}`;
    const tomb = (await first!.service.delete(victim.bucket, victim.key))!;
    writers.recorder.ack(id, tomb, null, true, s.kills);
    expect(writers.recorder.lossProblem(s.dumps().set("stale", [victim]), s.kills)).toBeUndefined(); // the tombstone is newest
    const stale = new Map([["stale", first!.store.scan(undefined, 1000).map((r) => (r.key === victim.key && r.bucket === victim.bucket ? victim : r))]]);
    expect(writers.recorder.lossProblem(stale, s.kills)).toMatch(/live again/);

    // Only some owners hold a record.
    const partial = s.dumps();
    partial.set(first!.name, []);
    expect(s.placementProblem(partial)).toMatch(/is held by/);
  });

  test("a w=1 write is forgiven a later kill; a quorum write is not", () => {
    const s = sim({ replicas: 3, seed: 2 });
    const { recorder } = new Writers(s, { keys: 1 });
    recorder.ack("default/k", "001700000000001-000000-a", "one", true, 0);
    recorder.ack("default/k", "001700000000002-000000-a", "two", false, 0);
    expect(recorder.required(0).get("default/k")!.value).toBe("two");
    expect(recorder.required(1).get("default/k")!.value).toBe("one");
  });
});

describe("full replication (every node owns every key): the harness under chaos", () => {
  test("10 nodes: joins, leaves, kills, restarts, cuts, lost and delayed messages; nothing acknowledged is lost", async () => {
    const s = sim({ replicas: 14, seed: 1010, timings: timingsFor(10) });
    await s.start(10);
    const writers = new Writers(s, { keys: 1500 });
    await writers.fill();
    const log = await runChaos(s, writers, {
      steps: 12,
      opsPerStep: 150,
      stepMs: 400,
      weights: { join: 2, leave: 2, kill: 2, restart: 2, cut: 1, heal: 1 },
      minNodes: 7,
      maxNodes: 14,
      lossRate: 0.05,
      maxDelayMs: 20,
      settleTimeoutMs: 30_000,
      requireSettled: false,
    });
    for (const event of ["join", "leave", "kill", "restart"]) expect(log.join("\n")).toContain(`: ${event} `);
    expect(writers.recorder.acknowledged).toBeGreaterThan(1500);
  }, 120_000);

  test("a join into 10 nodes copies every key to the joiner and nothing to the others", async () => {
    const s = sim({ replicas: 11, seed: 1111, timings: timingsFor(10) });
    await s.start(10);
    const writers = new Writers(s, { keys: 1000 });
    await writers.fill();
    const check = fullCheck(s, writers);
    await s.settle(check);
    const m = await measureJoin(s, check);
    expect(m.idealShare).toBe(1);
    expect(m.owned).toBe(1000);
    expect(m.arrivedAtJoiner).toBe(m.owned);
    expect(m.strayAtJoiner).toBe(0);
    expect(m.arrivedAtOthers).toBe(0);
  }, 60_000);

  test("50 nodes: a kill, a restart, joins and a leave under lost messages", async () => {
    const s = sim({ replicas: 60, seed: 5050, timings: timingsFor(50) });
    await s.start(50);
    const writers = new Writers(s, { keys: 1000 });
    await writers.fill();
    await runChaos(s, writers, {
      steps: 4,
      opsPerStep: 100,
      stepMs: 500,
      weights: { join: 1, leave: 1, kill: 1, restart: 1 },
      minNodes: 45,
      maxNodes: 55,
      lossRate: 0.02,
      maxDelayMs: 10,
      settleTimeoutMs: 60_000,
      requireSettled: false,
    });
  }, 180_000);
});
