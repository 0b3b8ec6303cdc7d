/**
 * An in-memory network with faults chosen by a seeded generator, for the
 * simulations (test/support/sim.ts). Every node gets its own transport
 * (`transportFor`), so a call knows who sends it: that is what a cut between two
 * nodes needs, and what counts the records that arrive at each node.
 *
 * Calls go through one MemoryTransport (JSON round trip and the same validation as
 * HTTP); this wrapper adds, per call: a cut (both directions fail, as a broken
 * link), a loss (the request, or the answer after the peer did the work, each half
 * of `lossRate`), and a delay of up to `maxDelayMs` that eats into the call's
 * timeout. A killed node's transport refuses everything it would still send.
 *
 * The generator makes the decisions reproducible (which call is lost given the
 * order of calls), not the order itself: timers and promise interleavings decide
 * that. The scenario (which node is killed when) is fully reproducible from the seed.
 */
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { rng } from "./http.ts";
import { PeerError, type PeerAnswer, type PeerOp, type PeerRequest, type PeerService, type PeerTransport } from "../../src/cluster/protocol/peer-ops.ts";

/** Seeded choices for a scenario, over the tests' one PRNG (http.ts's mulberry32). */
export class Rng {
  readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = rng(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from nothing");
    return items[this.int(items.length)]!;
  }
}

/** The URL of a simulated node. */
export const memUrl = (name: string): string => `mem://${name}`;
const nameOf = (url: string): string => url.replace(/^mem:\/\//, "");

/** One life of a node on the network: `alive` turns false when it is killed or has left. */
export interface Endpoint {
  readonly name: string;
  alive: boolean;
}

export class FaultyNet {
  readonly mem = new MemoryTransport();
  /** Share of calls lost (half before the peer sees them, half after it did the work). */
  lossRate = 0;
  /** Most a call is delayed before it is sent, in ms (uniform). */
  maxDelayMs = 0;
  private readonly cuts = new Set<string>();
  /**
   * While set: for every node, the ids (bucket/key) of the records that arrived at
   * it, in requests to it or in answers to its calls (any `records` array: records,
   * fetch, scan, and whatever op a move uses). Costs a parse per call: set it only
   * while measuring.
   */
  arrivals?: Map<string, Set<string>>;
  /** Records carried, all ops, while `arrivals` is set. */
  carried = 0;

  constructor(readonly rng: Rng) {}

  register(name: string, service: PeerService): void {
    this.mem.register(memUrl(name), service);
  }
  unregister(name: string): void {
    this.mem.unregister(memUrl(name));
  }

  private static pair(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }
  /** Breaks the link between two nodes, both ways, until healed. */
  cut(a: string, b: string): void {
    this.cuts.add(FaultyNet.pair(a, b));
  }
  heal(a: string, b: string): void {
    this.cuts.delete(FaultyNet.pair(a, b));
  }
  healAll(): void {
    this.cuts.clear();
  }
  get cutCount(): number {
    return this.cuts.size;
  }
  isCut(a: string, b: string): boolean {
    return this.cuts.has(FaultyNet.pair(a, b));
  }

  /** The transport node `from` sends with. */
  transportFor(from: Endpoint): PeerTransport {
    return { call: (url, op, body, timeoutMs, signal) => this.call(from, url, op, body, timeoutMs, signal) };
  }

  private async call<O extends PeerOp>(from: Endpoint, url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal): Promise<PeerAnswer<O>> {
    const to = nameOf(url);
    const what = `${from.name} -> ${to} ${op}`;
    if (!from.alive) throw new PeerError(0, "UNREACHABLE", `${what}: the sender is gone`);
    let budget = timeoutMs;
    if (this.maxDelayMs > 0) {
      const delay = Math.min(this.rng.next() * this.maxDelayMs, timeoutMs);
      await Bun.sleep(delay);
      budget = Math.max(1, timeoutMs - delay);
    }
    if (this.isCut(from.name, to)) throw new PeerError(0, "UNREACHABLE", `${what}: link cut`);
    if (this.rng.chance(this.lossRate / 2)) throw new PeerError(0, "UNREACHABLE", `${what}: request lost`);
    if (this.arrivals) this.count(to, body);
    const answer = await this.mem.call(url, op, body, budget, signal);
    if (this.rng.chance(this.lossRate / 2)) throw new PeerError(0, "UNREACHABLE", `${what}: answer lost`);
    if (this.arrivals) this.count(from.name, answer);
    return answer;
  }

  private count(at: string, message: unknown): void {
    const parsed = typeof message === "string" ? (JSON.parse(message) as unknown) : message;
    const records = (parsed as { records?: unknown } | null)?.records;
    if (!Array.isArray(records) || !this.arrivals) return;
    let ids = this.arrivals.get(at);
    if (!ids) this.arrivals.set(at, (ids = new Set()));
    // A `records` request carries tuples (record-wire.ts); answers carry objects.
    for (const r of records as ({ bucket?: string; key?: string } | unknown[])[]) {
      const [bucket, key] = Array.isArray(r) ? r : [r?.bucket, r?.key];
      if (typeof key !== "string") continue;
      ids.add(`${typeof bucket === "string" ? bucket : "default"}/${key}`);
      this.carried++;
    }
  }
}
