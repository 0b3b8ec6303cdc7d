/**
 * In-process cluster simulations: many nodes (10 to 100), each a real Cluster and
 * ItemsService over one FaultyNet (test/support/faulty-net.ts), driven by a seeded
 * scenario of joins, graceful leaves, kills (a node gone with its store, no
 * goodbye), restarts empty under the same name, cuts, and lost and delayed messages,
 * while writers record every acknowledged write.
 *
 * The checks, once the cluster has settled (every live node's `settled`, queues
 * drained, every member alive and every placement agreeing), all on full dumps of
 * every live node's store:
 * - no acknowledged write is lost, and no deleted key is live again (`Recorder`);
 * - every key is held by exactly its owners, each with the same newest record;
 * - a join moves about 1/n of the records (`measureJoin`).
 *
 * Timings: heartbeats go to every member, each carrying the member list, so the
 * cost of a heartbeat round grows as n^2 (in messages) x n (in bytes). `timingsFor`
 * slows heartbeats down with the cluster's size, so 100 nodes in one process stay
 * within a core.
 */
import { Cluster } from "../../src/cluster/cluster.ts";
import { parseConcern, type Concern } from "../../src/cluster/consistency.ts";
import { partitionOf } from "../../src/cluster/placement.ts";
import { FAST_TIMINGS, resolveConfig, type NodeOptions } from "../../src/config.ts";
import type { StoredRecord } from "../../src/core/record.ts";
import { compareVersions } from "../../src/core/version.ts";
import { createCore } from "../../src/create-core.ts";
import { ItemsService } from "../../src/service.ts";
import { FaultyNet, memUrl, Rng, type Endpoint } from "./faulty-net.ts";
import { eventually } from "./proc.ts";

export { Rng } from "./faulty-net.ts";

/** Cluster timings for a simulated cluster of `n` nodes: FAST_TIMINGS, with heartbeats slowed as n grows. */
export function timingsFor(n: number): NodeOptions {
  if (n <= 16) return { ...FAST_TIMINGS, reapDeadAfterMs: 3000 };
  const hb = Number(process.env.SIMHB ?? (n <= 60 ? 400 : 2000));
  return {
    ...FAST_TIMINGS,
    heartbeatIntervalMs: hb,
    suspectAfterMs: hb * 6,
    deadAfterMs: hb * 12,
    reapDeadAfterMs: hb * 30,
    antiEntropyIntervalMs: Math.max(500, hb),
    requestTimeoutMs: 2000,
  };
}

/** One life of a simulated node. */
export interface SimNode {
  readonly name: string;
  readonly url: string;
  readonly endpoint: Endpoint;
  readonly cluster: Cluster;
  readonly store: ReturnType<typeof createCore>["store"];
  readonly service: ItemsService;
}

export interface SimOptions {
  replicas: number;
  seed: number;
  /** Cluster timings (default timingsFor(the size given to start)). */
  timings?: NodeOptions;
}

/** `settled` as the node says it (H3's field of GET /cluster), or undefined where the node does not say. */
export function settledOf(c: Cluster): boolean | undefined {
  const direct = (c as unknown as { settled?: unknown }).settled;
  if (typeof direct === "boolean") return direct;
  const status = c.status() as unknown as { settled?: unknown };
  return typeof status.settled === "boolean" ? status.settled : undefined;
}

export class Sim {
  readonly rng: Rng;
  readonly net: FaultyNet;
  /** The current life of every node that is up, by name. */
  readonly nodes = new Map<string, SimNode>();
  /** Names killed and not started again (dead until reaped or restarted). */
  readonly killed = new Set<string>();
  /** Kills so far: a write acknowledged by one replica is only protected from kills after it. */
  kills = 0;
  private timings: NodeOptions;
  private everyLife: SimNode[] = [];
  private serial = 0;

  constructor(readonly opts: SimOptions) {
    this.rng = new Rng(opts.seed);
    this.net = new FaultyNet(new Rng(opts.seed ^ 0x5eed));
    this.timings = opts.timings ?? FAST_TIMINGS;
  }

  live(): SimNode[] {
    return [...this.nodes.values()];
  }

  node(name: string): SimNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no live node ${name}`);
    return n;
  }

  /** A fresh name, n00, n01, ... */
  newName(): string {
    return `n${String(this.serial++).padStart(2, "0")}`;
  }

  /**
   * Starts `count` nodes, each joining through a random earlier one, and waits until
   * each sees every other alive. How they start:
   * - `ready` (default up to 16 nodes): each once the one before it is ready, as an
   *   operator adding nodes one by one (and the process harness) does;
   * - `overlapping` (default above 16): each as soon as the one before it has joined,
   *   so first syncs overlap (waiting for readiness costs a heartbeat per node, and
   *   heartbeats are slow in large simulations);
   * - `together`: all but the first at once, as an orchestrator starting a whole cluster.
   */
  async start(count: number, { mode = count <= 16 ? "ready" : "overlapping" }: { mode?: "ready" | "overlapping" | "together" } = {}): Promise<void> {
    this.timings = this.opts.timings ?? timingsFor(count);
    await this.boot(this.newName(), []);
    const boots: Promise<SimNode>[] = [];
    for (let i = 1; i < count; i++) {
      const seeds = this.everyLife.filter((n) => n.endpoint.alive).map((n) => n.name);
      const booting = this.boot(this.newName(), [this.rng.pick(seeds)]);
      if (mode === "together") boots.push(booting);
      else if (mode === "overlapping") await booting;
      else {
        const node = await booting;
        await eventually(() => node.cluster.ready, { timeoutMs: 60_000, intervalMs: 10, what: `${node.name} ready` });
      }
    }
    await Promise.all(boots);
    await this.membershipAgrees(30_000 + count * 300);
  }

  /** Builds one life of `name` (as test/support/core.ts and node.ts wire it), registers it and starts it. */
  private async boot(name: string, seeds: string[]): Promise<SimNode> {
    const url = memUrl(name);
    const config = { ...resolveConfig({ name, port: 1, ...this.timings, replicas: this.opts.replicas } as NodeOptions), peers: seeds.map(memUrl) };
    const endpoint: Endpoint = { name, alive: true };
    const { clock, store, digest, items } = createCore({
      config,
      onWrite: (record) => cluster.replicator.enqueueWritten(record),
      mayWrite: () => cluster.checkWritable(),
      onChange: (id, removed) => cluster.replicator.storeChanged(id, removed),
    });
    const cluster: Cluster = new Cluster({ config, store, digest, clock, transport: this.net.transportFor(endpoint), changesReported: true });
    const service = new ItemsService({ items, store, cluster, config });
    const node: SimNode = { name, url, endpoint, cluster, store, service };
    this.net.register(name, cluster.service);
    this.everyLife.push(node);
    await cluster.start(url);
    // Clients use it once it has started, as they would once it listens.
    this.nodes.set(name, node);
    return node;
  }

  /** A new node, joining through a random live one. */
  async join(name = this.newName()): Promise<SimNode> {
    const seeds = this.live().map((n) => n.name);
    return this.boot(name, seeds.length ? [this.rng.pick(seeds)] : []);
  }

  /** A graceful leave: the node hands off what it must, says goodbye, stops. */
  async leave(name: string): Promise<void> {
    const node = this.node(name);
    this.nodes.delete(name); // no new client requests while it leaves
    await node.cluster.leave();
    node.endpoint.alive = false;
    this.net.unregister(name);
  }

  /** A crash: no goodbye, no handoff, and its store is gone with it. */
  kill(name: string): void {
    const node = this.node(name);
    this.nodes.delete(name);
    this.killed.add(name);
    this.kills++;
    node.endpoint.alive = false;
    this.net.unregister(name);
    node.cluster.close();
  }

  /** A killed (or left) node started again, empty, under the same name and URL. */
  async restart(name: string): Promise<SimNode> {
    if (this.nodes.has(name)) throw new Error(`${name} is up`);
    this.killed.delete(name);
    const seeds = this.live().map((n) => n.name);
    return this.boot(name, seeds.length ? [this.rng.pick(seeds)] : []);
  }

  /** Closes every life of every node (idempotent): for afterEach, pass or fail. */
  close(): void {
    for (const n of this.everyLife) {
      n.endpoint.alive = false;
      n.cluster.close();
    }
    this.nodes.clear();
  }

  /** Every live node sees every other live node alive, and nobody else but as left (or not at all). */
  membershipProblem(): string | undefined {
    const names = new Set(this.nodes.keys());
    for (const n of this.live()) {
      for (const m of n.cluster.membership.list()) {
        const expected = names.has(m.name) ? "alive" : "left";
        if (m.state !== expected) return `${n.name} sees ${m.name} ${m.state}, not ${expected}`;
      }
      const seen = n.cluster.membership.reachable().length;
      if (seen !== names.size - 1) return `${n.name} reaches ${seen} members of ${names.size - 1}`;
    }
    return undefined;
  }

  async membershipAgrees(timeoutMs: number): Promise<void> {
    let why: string | undefined;
    await eventually(() => !(why = this.membershipProblem()), { timeoutMs, intervalMs: 100, what: "membership agreement" }).catch((e) => {
      throw new Error(`${(e as Error).message}: ${why}`);
    });
  }

  /**
   * Why the cluster is not settled yet, or undefined when it is: membership agrees,
   * every placement counts the same members, every node says `settled` (or says
   * nothing, unless `requireSettled`), and no replication queue holds anything.
   */
  settleProblem(requireSettled: boolean): string | undefined {
    const members = this.membershipProblem();
    if (members) return members;
    const expected = [...this.nodes.keys()].sort().join(",");
    for (const n of this.live()) {
      const placed = [...n.cluster.placement.members].join(",");
      if (placed !== expected) return `${n.name}'s placement counts ${placed}, not ${expected}`;
      const settled = settledOf(n.cluster);
      if (settled === false || (requireSettled && settled !== true)) return `${n.name} is not settled (${String(settled)})`;
      const queued = n.cluster.status().members.find((m) => m.queue > 0);
      if (queued) return `${n.name} still has ${queued.queue} records queued for ${queued.name}`;
    }
    return undefined;
  }

  /**
   * Waits (with a deadline) until the cluster has settled and `check` finds nothing
   * wrong on full dumps of every live node; throws with the last problem otherwise.
   */
  async settle(check: (dumps: Map<string, StoredRecord[]>) => string | undefined, { timeoutMs = 30_000, requireSettled = false } = {}): Promise<Map<string, StoredRecord[]>> {
    let why: string | undefined;
    // A node that does not say whether it has settled cannot be waited for: say so at once.
    const silent = requireSettled ? this.live().find((n) => settledOf(n.cluster) === undefined) : undefined;
    if (silent) throw new Error(`${silent.name} does not report settled (Cluster.settled or status().settled)`);
    try {
      return await eventually<Map<string, StoredRecord[]> | undefined>(
        () => {
          why = this.settleProblem(requireSettled);
          if (why) return undefined;
          const dumps = this.dumps();
          why = check(dumps);
          return why ? undefined : dumps;
        },
        { timeoutMs, intervalMs: 250, what: "a settled cluster" },
      ) as Map<string, StoredRecord[]>;
    } catch (e) {
      throw new Error(`${(e as Error).message}: ${why}`);
    }
  }

  dumps(): Map<string, StoredRecord[]> {
    return new Map(this.live().map((n) => [n.name, n.store.scan(undefined, 10_000_000)]));
  }

  /**
   * Every record is held by exactly the owners of its key (per the placement every
   * node agrees on), and every owner holds the same newest version. Undefined when so.
   */
  placementProblem(dumps: Map<string, StoredRecord[]>): string | undefined {
    const placement = this.live()[0]!.cluster.placement;
    return placementProblem(dumps, (key) => [...placement.owners(partitionOf(key))]);
  }
}

/**
 * Every record is held by exactly `ownersOf` its key, and every owner holds the same
 * version. With `tombstonesMayBePurged` (real nodes purge a tombstone every owner
 * holds, each at its own sweep), a tombstone may be missing from some owners, but
 * never sits on a non-owner. Undefined when so; else the first problem found.
 */
export function placementProblem(dumps: Map<string, StoredRecord[]>, ownersOf: (key: string) => string[], opts: { tombstonesMayBePurged?: boolean } = {}): string | undefined {
  const held = new Map<string, Map<string, StoredRecord>>(); // id -> holder -> record
  for (const [name, records] of dumps) {
    for (const r of records) {
      const id = `${r.bucket}/${r.key}`;
      let holders = held.get(id);
      if (!holders) held.set(id, (holders = new Map()));
      holders.set(name, r);
    }
  }
  for (const [id, holders] of held) {
    const key = id.slice(id.indexOf("/") + 1);
    const owners = [...ownersOf(key)].sort();
    const holding = [...holders.keys()].sort();
    const tombstone = [...holders.values()].every((r) => r.value === null);
    const exact = owners.join(",") === holding.join(",");
    const within = holding.every((n) => owners.includes(n));
    if (!exact && !(opts.tombstonesMayBePurged && tombstone && within)) {
      return `${id} (partition ${partitionOf(key)}) is held by [${holding}], its owners are [${owners}]`;
    }
    const versions = new Set([...holders.values()].map((r) => r.version));
    if (versions.size > 1) return `${id}: owners hold different versions ${[...holders].map(([n, r]) => `${n}=${r.version}`).join(" ")}`;
  }
  return undefined;
}

/** One acknowledged write: a value, or a delete (null). `quorum`: held by a quorum of owners when acknowledged (or since, see protectAll). */
interface Ack {
  version: string;
  value: string | null;
  quorum: boolean;
  killsAtAck: number;
}

/**
 * Every acknowledged write, per key, and the check that none was lost.
 *
 * A write acknowledged by a quorum of owners must survive anything the scenarios
 * do (they never kill a second node before the cluster has settled after the
 * first). A write acknowledged by one node (w=1) survives joins, leaves, cuts and
 * lost messages, but a kill may take its only copy: it is protected only if no
 * kill came after it. A write that failed (an error, a timeout) may or may not
 * have happened, so any newer version of its key is acceptable.
 */
export class Recorder {
  readonly acks = new Map<string, Ack[]>();
  attempted = 0;
  failed = 0;

  ack(id: string, version: string, value: string | null, quorum: boolean, killsAtAck: number): void {
    let list = this.acks.get(id);
    if (!list) this.acks.set(id, (list = []));
    list.push({ version, value, quorum, killsAtAck });
  }

  get acknowledged(): number {
    let n = 0;
    for (const list of this.acks.values()) n += list.length;
    return n;
  }

  /**
   * After a settle whose checks passed (with no write in flight): every write the
   * check required is on all its owners, so from now on it is protected from a kill
   * as a quorum write is.
   */
  protectAll(kills?: number): void {
    // Only what the check required: a w=1 write a kill after it may have taken (its
    // only copy on the killed node) was not required, may well be gone, and must not
    // become required now. `kills` omitted: every write (no kill so far).
    for (const list of this.acks.values()) for (const a of list) if (kills === undefined || a.quorum || a.killsAtAck >= kills) a.quorum = true;
  }

  /** The newest acknowledged write of each key that must have survived `kills` kills. */
  required(kills: number): Map<string, Ack> {
    const out = new Map<string, Ack>();
    for (const [id, list] of this.acks) {
      let best: Ack | undefined;
      for (const a of list) {
        if (!a.quorum && a.killsAtAck < kills) continue;
        if (!best || compareVersions(a.version, best.version) > 0) best = a;
      }
      if (best) out.set(id, best);
    }
    return out;
  }

  /**
   * A lost write or a deleted key live again, in the newest record any live node
   * holds; undefined when none. With `tombstonesMayBePurged`, a key whose newest
   * acknowledged write is a delete may be held by no one (its tombstone purged).
   */
  lossProblem(dumps: Map<string, StoredRecord[]>, kills: number, opts: { tombstonesMayBePurged?: boolean } = {}): string | undefined {
    const newest = new Map<string, StoredRecord>();
    for (const records of dumps.values()) {
      for (const r of records) {
        const id = `${r.bucket}/${r.key}`;
        const seen = newest.get(id);
        if (!seen || compareVersions(r.version, seen.version) > 0) newest.set(id, r);
      }
    }
    for (const [id, want] of this.required(kills)) {
      const got = newest.get(id);
      const was = want.value === null ? "a delete" : `value ${want.value}`;
      if (!got && want.value === null && opts.tombstonesMayBePurged) continue;
      if (!got) return `${id}: acknowledged ${was} at ${want.version}, no node holds the key`;
      const order = compareVersions(got.version, want.version);
      if (order < 0) {
        const now = got.value === null ? "a tombstone" : `live ${got.value}`;
        return `${id}: acknowledged ${was} at ${want.version}, the newest held is ${now} at ${got.version}` + (want.value === null && got.value !== null ? " (a deleted key is live again)" : " (a lost write)");
      }
      if (order === 0 && got.value !== want.value) return `${id}: version ${want.version} holds ${got.value}, acknowledged ${want.value}`;
    }
    return undefined;
  }
}

export interface WriterOptions {
  /** Keys the writers use, in the default bucket and one more. */
  keys: number;
  /** Share of operations that are deletes. */
  deleteRate?: number;
  /** Share of writes with w=quorum (the rest w=1). */
  quorumRate?: number;
  /** Concurrent writers; each has its own keys, so the writes of one key are sequential. */
  workers?: number;
  /** Timeout of a w=quorum write, ms (default 1000: a write stuck behind a cut must not hold a step up). */
  quorumTimeoutMs?: number;
}

/**
 * Writers through random live nodes' services, recording what was acknowledged.
 * Keys include {hash tags} (several keys, one slot) and a second bucket, as clients use them.
 */
export class Writers {
  readonly recorder = new Recorder();
  private seq = 0;
  private readonly quorum: Concern;

  constructor(
    private readonly sim: Sim,
    private readonly opts: WriterOptions,
  ) {
    this.quorum = parseConcern("w", "quorum", String(opts.quorumTimeoutMs ?? 1000))!;
  }

  static keyOf(i: number): { bucket: string; key: string } {
    if (i % 10 === 9) return { bucket: "b2", key: `k${i}` };
    if (i % 10 === 8) return { bucket: "default", key: `{user${i % 50}}:k${i}` };
    return { bucket: "default", key: `k${i}` };
  }

  /**
   * `ops` writes, spread over the workers, each through a random live node, paced
   * over about `overMs` (so they go on while the cluster reacts to an event). Never
   * throws for a refused write.
   */
  async run(ops: number, overMs = 0): Promise<void> {
    const workers = this.opts.workers ?? 8;
    const each = Math.ceil(ops / workers);
    const pause = overMs / each;
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        for (let i = 0; i < each; i++) {
          await this.one(w, workers);
          if (pause > 0) await Bun.sleep(pause * (0.5 + this.sim.rng.next()));
        }
      }),
    );
  }

  /** Fills every key once, w=1, with no chaos expected. */
  async fill(): Promise<void> {
    for (let i = 0; i < this.opts.keys; i++) {
      const { bucket, key } = Writers.keyOf(i);
      const node = this.sim.rng.pick(this.sim.live());
      const item = await node.service.set(bucket, key, `${key}@fill`);
      this.recorder.ack(`${bucket}/${key}`, item.version, item.value, false, this.sim.kills);
    }
  }

  private async one(worker: number, workers: number): Promise<void> {
    const { rng } = this.sim;
    const live = this.sim.live();
    if (live.length === 0) return;
    const node = rng.pick(live);
    const i = rng.int(Math.ceil(this.opts.keys / workers)) * workers + worker;
    if (i >= this.opts.keys) return;
    const { bucket, key } = Writers.keyOf(i);
    const quorum = rng.chance(this.opts.quorumRate ?? 0.5);
    const w = quorum ? this.quorum : undefined;
    const del = rng.chance(this.opts.deleteRate ?? 0.2);
    const value = `${key}@${++this.seq}`;
    const kills = this.sim.kills;
    this.recorder.attempted++;
    try {
      if (del) {
        const version = await node.service.delete(bucket, key, { w });
        // Nothing to delete: no tombstone, nothing acknowledged.
        if (version !== undefined) this.recorder.ack(`${bucket}/${key}`, version, null, quorum, kills);
      } else {
        const item = await node.service.set(bucket, key, value, { w });
        this.recorder.ack(`${bucket}/${key}`, item.version, item.value, quorum, kills);
      }
    } catch {
      this.recorder.failed++; // may or may not have happened: any newer version is fine
    }
  }
}

/** What a join moved: records that arrived at the joiner and at the others, against the keys it owns. */
export interface JoinMeasure {
  joiner: string;
  nodesAfter: number;
  keys: number;
  /** Keys whose partition the joiner owns after the join. */
  owned: number;
  /** Distinct keys that arrived at the joiner. */
  arrivedAtJoiner: number;
  /** Distinct keys that arrived at the joiner though it does not own them. */
  strayAtJoiner: number;
  /** Distinct keys that arrived at the other nodes. */
  arrivedAtOthers: number;
  /** What an ideal placement moves: min(replicas, n) / n of the keys. */
  idealShare: number;
}

/**
 * Joins one node into a quiet, settled cluster and counts the records that arrive
 * where, until the cluster has settled again with every key on exactly its owners.
 */
export async function measureJoin(sim: Sim, check: (dumps: Map<string, StoredRecord[]>) => string | undefined, opts: { timeoutMs?: number; requireSettled?: boolean } = {}): Promise<JoinMeasure> {
  const keysBefore = new Set<string>();
  for (const records of sim.dumps().values()) for (const r of records) keysBefore.add(`${r.bucket}/${r.key}`);
  const arrivals = new Map<string, Set<string>>();
  sim.net.arrivals = arrivals;
  let joiner: SimNode;
  try {
    joiner = await sim.join();
    await sim.settle(check, opts);
  } finally {
    sim.net.arrivals = undefined;
  }
  const placement = joiner.cluster.placement;
  let owned = 0;
  for (const id of keysBefore) if (placement.owns(partitionOf(id.slice(id.indexOf("/") + 1)))) owned++;
  const atJoiner = arrivals.get(joiner.name) ?? new Set<string>();
  let stray = 0;
  for (const id of atJoiner) if (!placement.owns(partitionOf(id.slice(id.indexOf("/") + 1)))) stray++;
  const others = new Set<string>();
  for (const [name, ids] of arrivals) if (name !== joiner.name) for (const id of ids) others.add(id);
  const n = placement.members.length;
  return {
    joiner: joiner.name,
    nodesAfter: n,
    keys: keysBefore.size,
    owned,
    arrivedAtJoiner: atJoiner.size,
    strayAtJoiner: stray,
    arrivedAtOthers: others.size,
    idealShare: Math.min(placement.replicas, n) / n,
  };
}
