/**
 * A seeded chaos scenario for the simulations (test/support/sim.ts): a number of
 * steps, each one event (a join, a graceful leave, a kill, a restart of a killed
 * node, a cut between two nodes, or healing every cut) while a batch of writes
 * runs through random live nodes; lost and delayed messages all along.
 *
 * One rule keeps "no acknowledged write lost" a fair check: a node is killed only
 * when the cluster has settled since the last kill (cuts healed, every check
 * passing), so a write acknowledged by a quorum of owners always keeps a copy.
 * Killing two owners of a key before either is refilled loses it in any store
 * without disks; that is what --data-dir is for, and not what this tests.
 *
 * At the end every fault is lifted, every killed node restarts empty under its
 * name, and the cluster must settle with every check passing.
 */
import type { StoredRecord } from "../../src/core/record.ts";
import type { Sim, Writers } from "./sim.ts";

export type ChaosEvent = "join" | "leave" | "kill" | "restart" | "cut" | "heal";

export interface ChaosOptions {
  steps: number;
  /** Writes per step, run while the step's event happens, paced over `stepMs`. */
  opsPerStep: number;
  /** How long a step's writes go on, ms: the cluster reacts to the event meanwhile. */
  stepMs: number;
  /** Relative weights of the events; an event that cannot happen now (no one to restart) is skipped. */
  weights: Partial<Record<ChaosEvent, number>>;
  /** Never fewer live nodes than this (leaves and kills wait). */
  minNodes: number;
  /** Never more nodes than this, killed ones included (joins wait). */
  maxNodes: number;
  /** Share of peer calls lost, and the longest delay of a call, during the steps. */
  lossRate: number;
  maxDelayMs: number;
  /** Deadline of each settle (before a kill, and at the end), ms. */
  settleTimeoutMs: number;
  /** The nodes must say `settled` (after the merge of the partition work); otherwise absence is accepted. */
  requireSettled: boolean;
}

/** Loss and placement checks together, for Sim.settle. */
export function fullCheck(sim: Sim, writers: Writers): (dumps: Map<string, StoredRecord[]>) => string | undefined {
  return (dumps) => writers.recorder.lossProblem(dumps, sim.kills) ?? sim.placementProblem(dumps);
}

/** What decides whether an event can happen now: counts of the scenario's cluster. */
export interface ChaosState {
  /** Nodes up (Sim.nodes). */
  live: number;
  /** Killed and not started again. */
  killed: number;
  /** Links cut now. */
  cuts: number;
}

/**
 * Whether `event` can happen now. A leave and a kill each keep one node of room for
 * the other while that one has not happened yet (`missing`): three leaves down to
 * `minNodes` before any kill left no kill possible, not even in the last steps kept
 * for the events the dice missed, and the scenario ended without one (a CI run).
 */
export function canHappen(event: ChaosEvent, s: ChaosState, missing: ReadonlySet<ChaosEvent>, opts: Pick<ChaosOptions, "minNodes" | "maxNodes">): boolean {
  switch (event) {
    case "join":
      return s.live + s.killed < opts.maxNodes;
    case "leave":
      return s.live > opts.minNodes + (missing.has("kill") ? 1 : 0);
    case "kill":
      return s.killed === 0 && s.live > opts.minNodes + (missing.has("leave") ? 1 : 0);
    case "restart":
      return s.killed > 0;
    case "cut":
      return s.live >= 2 && s.cuts < 2;
    case "heal":
      return s.cuts > 0;
  }
}

/** The events given a weight that must happen at least once (a restart and a heal happen at the end anyway). */
export function mustHappen(weights: ChaosOptions["weights"]): Set<ChaosEvent> {
  return new Set((Object.entries(weights) as [ChaosEvent, number][]).filter(([e, w]) => w > 0 && e !== "restart" && e !== "heal").map(([e]) => e));
}

/**
 * The event of step `step`: the one `roll` (in [0, 1)) picks by weight, or, in the
 * last steps, one the dice missed so far (`missing`), while one can happen.
 */
export function chooseEvent(roll: number, step: number, missing: ReadonlySet<ChaosEvent>, s: ChaosState, opts: Pick<ChaosOptions, "steps" | "weights" | "minNodes" | "maxNodes">): ChaosEvent {
  const events = Object.entries(opts.weights) as [ChaosEvent, number][];
  let left = roll * events.reduce((sum, [, w]) => sum + w, 0);
  const rolled = events.find(([, w]) => (left -= w) < 0)?.[0] ?? events[0]![0];
  if (opts.steps - step > missing.size) return rolled;
  return [...missing].find((e) => canHappen(e, s, missing, opts)) ?? rolled;
}

/** Runs the scenario; returns what happened, one line per step (for failure messages). */
export async function runChaos(sim: Sim, writers: Writers, opts: ChaosOptions): Promise<string[]> {
  const log: string[] = [];
  const t0 = performance.now();
  const at = () => `${((performance.now() - t0) / 1000).toFixed(1)}s`;
  const check = fullCheck(sim, writers);
  const settle = async (why: string) => {
    sim.net.healAll();
    try {
      await sim.settle(check, { timeoutMs: opts.settleTimeoutMs, requireSettled: opts.requireSettled });
      writers.recorder.protectAll(sim.kills);
    } catch (e) {
      throw new Error(`${(e as Error).message}\nwhile settling ${why}; events so far:\n${log.join("\n")}`);
    }
  };
  const state = (): ChaosState => ({ live: sim.nodes.size, killed: sim.killed.size, cuts: sim.net.cutCount });
  sim.net.lossRate = opts.lossRate;
  sim.net.maxDelayMs = opts.maxDelayMs;
  // Each fault given a weight happens at least once: the last steps go to those the dice missed.
  const missing = mustHappen(opts.weights);
  for (let step = 0; step < opts.steps; step++) {
    const event = chooseEvent(sim.rng.next(), step, missing, state(), opts);
    const can = canHappen(event, state(), missing, opts);
    const live = sim.live().map((n) => n.name);
    let did = "nothing";
    // Before a kill, with no writes in flight: settle, so the last kill has been repaired.
    if (event === "kill" && can) {
      await settle(`before the kill of step ${step}`);
      log.push(`${at()} settled before the kill`);
    }
    const writes = writers.run(opts.opsPerStep, opts.stepMs);
    if (can) {
      switch (event) {
        case "join":
          did = `join ${(await sim.join()).name}`;
          break;
        case "leave": {
          const name = sim.rng.pick(live);
          await sim.leave(name);
          did = `leave ${name}`;
          break;
        }
        case "kill": {
          const name = sim.rng.pick(sim.live().map((n) => n.name));
          sim.kill(name);
          did = `kill ${name}`;
          break;
        }
        case "restart": {
          const name = [...sim.killed][0]!;
          await sim.restart(name);
          did = `restart ${name}`;
          break;
        }
        case "cut": {
          const a = sim.rng.pick(live);
          const b = sim.rng.pick(live.filter((n) => n !== a));
          sim.net.cut(a, b);
          did = `cut ${a}|${b}`;
          break;
        }
        case "heal":
          sim.net.healAll();
          did = "heal";
          break;
      }
    }
    await writes;
    if (did !== "nothing") missing.delete(event);
    log.push(`${at()} step ${step}: ${did} (live ${sim.nodes.size}, acked ${writers.recorder.acknowledged}, failed ${writers.recorder.failed})`);
  }
  // Lift every fault, bring back the dead, and the cluster must settle with every check passing.
  sim.net.lossRate = 0;
  sim.net.maxDelayMs = 0;
  for (const name of [...sim.killed]) {
    await sim.restart(name);
    log.push(`${at()} end: restart ${name}`);
  }
  await settle("at the end");
  log.push(`${at()} settled`);
  return log;
}
