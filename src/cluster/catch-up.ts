import type { SyncPeer } from "./antientropy-types.ts";

export interface CatchUpDeps {
  /** Whether this node's clock is fenced now (ClockGuard.state). */
  fenced: () => boolean;
  /** The peers to ask: every reachable member. */
  peers: () => SyncPeer[];
  /** A sync with one peer (AntiEntropy.syncWith); its failure only ends that peer's part. */
  sync: (peer: SyncPeer) => Promise<unknown>;
  closed: () => boolean;
}

/**
 * What a node does about records it refused for now while its own clock was not
 * checked (ClockGuard.refuse: a restart with a slow clock, before its first
 * heartbeat). Their senders do not send them again (a record a peer does not hold
 * within its bounds leaves the queue), so once the fence is down the node asks
 * every reachable peer for what it lacks, by a sync with each; and it is not ready
 * until then, as it would serve what those records replaced.
 *
 * "due" from the first such refusal until a catch-up starts with the fence down;
 * a refusal while one runs makes it due again, for the next look.
 */
export class CatchUp {
  private state: "none" | "due" | "running" = "none";
  /** Which catch-up runs: one that ends after a newer one started says nothing of the newer. */
  private run = 0;

  constructor(private readonly deps: CatchUpDeps) {}

  /** A record was refused for now. */
  due(): void {
    this.state = "due";
  }

  /** Starts the catch-up if it is due and the fence is down (at every clock sample, and at every readiness look). */
  look(): void {
    if (this.state !== "due" || this.deps.closed() || this.deps.fenced()) return;
    this.state = "running";
    const run = ++this.run;
    const syncs = this.deps.peers().map((p) => this.deps.sync(p).catch(() => undefined));
    void Promise.all(syncs).then(() => {
      if (this.state === "running" && this.run === run) this.state = "none";
    });
  }

  /** Whether it is due or running; looks first (a fence that came down with no sample: no peer answers). */
  get pending(): boolean {
    this.look();
    return this.state !== "none";
  }
}
