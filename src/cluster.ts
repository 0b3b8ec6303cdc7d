import { AntiEntropy } from "./antientropy.ts";
import type { Clock } from "./clock.ts";
import type { NodeConfig } from "./config.ts";
import type { Digest } from "./digest.ts";
import { MakhzenError } from "./errors.ts";
import { silentLogger, type Logger } from "./log.ts";
import { Membership, type Member } from "./membership.ts";
import type { MemberState } from "./peer-protocol.ts";
import { createPeerService } from "./peer-service.ts";
import type { StoredRecord } from "./record.ts";
import { Replicator } from "./replicator.ts";
import type { Store } from "./store.ts";
import type { PeerService, PeerTransport } from "./transport.ts";
import { isTooFarAhead } from "./version.ts";

export interface ClusterDeps {
  config: NodeConfig;
  store: Store;
  digest: Digest;
  clock: Clock;
  transport: PeerTransport;
  /** Parent logger; the cluster's parts log as its children (replicator, membership, antientropy). Default: silent. */
  logger?: Logger;
}

/** One row of `GET /cluster`. */
export interface MemberStatus {
  name: string;
  url: string;
  state: MemberState;
  /** Records the member has not acknowledged yet: queued here or in a batch in flight. */
  queue: number;
  /** Milliseconds since this node last heard from the member, or first learned of it second hand (0 for this node itself). */
  lastSeenMs: number;
}

export interface ClusterStatus {
  self: string;
  members: MemberStatus[];
}

/** How many replicas must hold a write (or answer a read): `1`, `quorum`, `all` or a count. */
export type Level = "quorum" | "all" | number;

export interface Concern {
  level: Level;
  raw: string;
  timeoutMs: number;
}

export const DEFAULT_CONSISTENCY_TIMEOUT_MS = 5000;
const MAX_CONSISTENCY_TIMEOUT_MS = 60_000;

/**
 * The cluster side of a node: membership, replication, anti-entropy, and the
 * consistency knobs, wired together. It serves the peer protocol (`service`) and
 * never sees HTTP.
 *
 * Records from peers go through `applyRemote`: the clock observes their version
 * (so our next write is newer) and the store merges them. They skip the memory
 * reservation of local writes (a replica must take what its peers took) and are
 * not replicated again (every node sends its own writes to every peer; anti-entropy
 * covers the rest).
 */
export class Cluster {
  readonly replicator: Replicator;
  readonly membership: Membership;
  readonly antiEntropy: AntiEntropy;
  readonly service: PeerService;
  private readonly self: { name: string; url: string; incarnation: number };
  private isReady = false;
  /** From start() until the first sync ends: peers' rounds against this node wait for it (GroupsAnswer.syncing). */
  private syncing = false;
  private leaving?: Promise<void>;
  private startSyncTimer?: ReturnType<typeof setTimeout>;
  private closed = false;
  private tooNewRefused = 0;
  private readonly logger: Logger;

  constructor(private readonly deps: ClusterDeps) {
    const { config, store, digest, clock, transport } = deps;
    const logger = deps.logger ?? silentLogger;
    this.logger = logger.child("cluster");
    // Incarnation: the start time, so every life of a node outranks the previous ones.
    this.self = { name: config.name, url: config.advertise ?? "", incarnation: clock.wallMs() };
    this.replicator = new Replicator({
      transport,
      config,
      wallMs: () => clock.wallMs(),
      logger: logger.child("replicator"),
      onOverflow: (peer) => this.antiEntropy.request(peer),
    });
    this.membership = new Membership({
      self: this.self,
      transport,
      config,
      wallMs: () => clock.wallMs(),
      logger: logger.child("membership"),
      events: {
        added: (m) => {
          this.replicator.addPeer(m.name, m.url);
          // A known peer back in a new life (a restart) may have a sender in backoff.
          this.replicator.wake(m.name);
          this.antiEntropy.request(m.name);
        },
        recovered: (m) => {
          this.replicator.wake(m.name);
          this.antiEntropy.request(m.name);
        },
        left: (m) => this.replicator.removePeer(m.name),
        moved: (m) => this.replicator.addPeer(m.name, m.url),
      },
    });
    this.antiEntropy = new AntiEntropy({
      store,
      digest,
      transport,
      config,
      logger: logger.child("antientropy"),
      applyRemote: (records) => this.applyRemote(records).applied,
      candidates: () => this.membership.reachable(),
    });
    this.service = createPeerService({
      store,
      digest,
      membership: this.membership,
      applyRemote: (records) => this.applyRemote(records),
      answerBudgetBytes: config.batchMaxBytes,
      syncing: () => this.syncing,
    });
  }

  /** Records from peers refused as stamped too far ahead of this clock, for /metrics. */
  get refusedForDrift(): number {
    return this.tooNewRefused;
  }

  /** What /readyz says: the first sync is done (or timed out), and the node is not leaving. */
  get ready(): boolean {
    return this.isReady && !this.leaving;
  }

  get url(): string {
    return this.self.url;
  }

  /**
   * Joins through the seeds, starts heartbeats and anti-entropy, and runs the
   * first sync in the background (`ready` turns true when it ends or times out).
   * Rejects with NAME_TAKEN when a seed refuses our name.
   */
  async start(listenUrl: string): Promise<void> {
    this.self.url ||= listenUrl;
    // Members learned while joining ask for rounds, and they ask for rounds against
    // us; the first sync below does that work itself (a full copy, then a round with
    // each), so both wait for it.
    this.antiEntropy.hold();
    this.syncing = true;
    if (/^https?:\/\/(0\.0\.0\.0|\[::\])(:|\/|$)/.test(this.self.url) && this.deps.config.peers.length > 0) {
      this.logger.warn("advertising an address peers cannot reach: set --advertise to this node's address", { url: this.self.url });
    }
    const joined = await this.membership.join(this.deps.config.peers);
    if (!joined) this.logger.warn("no seed answered; serving alone and retrying the seeds with every heartbeat", { seeds: this.deps.config.peers });
    this.membership.start();
    this.antiEntropy.start();
    if (!joined || this.membership.reachable().length === 0) {
      this.isReady = true; // nobody to sync from
      this.syncing = false;
      this.antiEntropy.release();
      return;
    }
    // Ready when the first sync ends or its time is up, whichever is first.
    this.startSyncTimer = setTimeout(() => {
      if (this.isReady) return;
      this.logger.warn("first sync did not finish in time; ready anyway", { timeoutMs: this.deps.config.startSyncTimeoutMs });
      this.isReady = true;
    }, this.deps.config.startSyncTimeoutMs);
    this.startSyncTimer.unref?.();
    void this.firstSync().finally(() => {
      clearTimeout(this.startSyncTimer);
      this.isReady = true;
      this.syncing = false;
      this.antiEntropy.release();
    });
  }

  /** Drains the queues for at most drainTimeoutMs, tells the peers we leave, stops. Idempotent. */
  leave(): Promise<void> {
    this.leaving ??= (async () => {
      const deadline = this.deps.clock.wallMs() + this.deps.config.drainTimeoutMs;
      const names = () => this.membership.reachable().map((m) => m.name);
      while (!this.replicator.drained(names()) && this.deps.clock.wallMs() < deadline) await Bun.sleep(10);
      if (!this.replicator.drained(names())) this.logger.warn("leaving with records still queued; anti-entropy will repair the peers");
      await this.membership.leave();
      this.close();
    })();
    return this.leaving;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.startSyncTimer);
    this.membership.stop();
    this.antiEntropy.stop();
    this.replicator.close();
  }

  status(): ClusterStatus {
    const now = this.deps.clock.wallMs();
    const rows: MemberStatus[] = [{ name: this.self.name, url: this.self.url, state: "alive", queue: 0, lastSeenMs: 0 }];
    for (const m of this.membership.list()) {
      rows.push({
        name: m.name,
        url: m.url,
        state: m.state,
        queue: this.replicator.queueSize(m.name),
        lastSeenMs: Math.max(0, now - m.lastSeenMs),
      });
    }
    return { self: this.self.name, members: rows };
  }

  /**
   * Merges records from a peer. Returns how many changed the store, and the indices
   * of those refused because their version is too far ahead of this clock: this
   * node does not hold them, so a sender must not count them as acknowledged.
   * Records arrive validated (WireRecord admits no other property), so they are
   * stored as they are, without a copy.
   */
  applyRemote(records: StoredRecord[]): { applied: number; tooNew: number[] } {
    const wall = this.deps.clock.wallMs();
    const { maxClockDriftMs } = this.deps.config;
    let applied = 0;
    const tooNew: number[] = [];
    let newest = "";
    records.forEach((r, i) => {
      if (isTooFarAhead(r.version, wall, maxClockDriftMs)) {
        tooNew.push(i);
        return;
      }
      if (r.version > newest) newest = r.version;
      if (this.deps.store.apply(r)) applied++;
    });
    // The clock only needs the newest version of the batch to move past all of them.
    if (newest !== "") this.deps.clock.observe(newest);
    if (tooNew.length > 0) {
      this.tooNewRefused += tooNew.length;
      this.logger.warn("refused records stamped too far ahead of this clock", { refused: tooNew.length, maxClockDriftMs });
    }
    return { applied, tooNew };
  }

  // ---- consistency knobs ----

  /** Parses `w=`/`r=` and `timeout=`; undefined for the default (1: answer from this node alone). */
  concern(name: "w" | "r", raw: string | null | undefined, timeout: string | null | undefined): Concern | undefined {
    const timeoutMs = parseTimeout(timeout);
    if (raw === null || raw === undefined || raw === "" || raw === "1") return undefined;
    let level: Level;
    if (raw === "quorum" || raw === "all") level = raw;
    else if (/^\d{1,4}$/.test(raw) && Number(raw) >= 1) level = Number(raw);
    else throw new MakhzenError("VALIDATION", `${name} must be 1, quorum, all or a replica count, not "${raw}"`);
    return { level, raw, timeoutMs };
  }

  /**
   * Waits until `concern` replicas hold (bucket, key) at `version` or newer. Call it
   * synchronously right after the write, so no ack can be missed. Throws UNAVAILABLE
   * at once when too few replicas exist or are reachable, REPLICATION_TIMEOUT after
   * the timeout; the local write stands either way.
   */
  async awaitWrite(bucket: string, key: string, version: string, concern: Concern): Promise<void> {
    const need = this.required(concern.level);
    if (need <= 1) return;
    this.checkReachable("w", concern, need, "the local write stands and will replicate");
    const acked = await this.replicator.waitForAcks({ bucket, key, value: null, version }, need - 1, concern.timeoutMs);
    if (acked + 1 < need) {
      throw new MakhzenError(
        "REPLICATION_TIMEOUT",
        `w=${concern.raw}: ${acked + 1} of ${need} replicas hold the write after ${concern.timeoutMs} ms; the local write stands and will replicate`,
      );
    }
  }

  /**
   * Read repair for `r=`: asks the reachable peers for the record, keeps the newest
   * here, and queues it for every peer that answered with something older. The
   * caller then reads locally. Resolves once `need - 1` peers answered.
   */
  async repairRead(bucket: string, key: string, concern: Concern): Promise<void> {
    const need = this.required(concern.level);
    if (need <= 1) return;
    this.checkReachable("r", concern, need, "nothing was read");
    const peers = this.membership.reachable();
    const answers = await new Promise<{ name: string; record?: StoredRecord }[]>((resolve) => {
      const got: { name: string; record?: StoredRecord }[] = [];
      let settled = 0;
      for (const p of peers) {
        this.deps.transport
          .call(p.url, "fetch", { keys: [{ bucket, key }] }, concern.timeoutMs)
          .then(
            (a) => void got.push({ name: p.name, record: a.records[0] as StoredRecord | undefined }),
            // A peer that does not answer is one answer short: the caller gets REPLICATION_TIMEOUT if too few did.
            (e) => this.logger.debug("read repair: a peer did not answer", { peer: p.name, error: e }),
          )
          .finally(() => {
            settled++;
            if (got.length >= need - 1 || settled === peers.length) resolve(got);
          });
      }
    });
    let newest = this.deps.store.getRecord(bucket, key);
    for (const a of answers) if (a.record && (!newest || a.record.version > newest.version)) newest = a.record;
    if (newest) {
      this.applyRemote([newest]);
      for (const a of answers) {
        if (!a.record || a.record.version < newest.version) this.replicator.enqueueTo(a.name, newest);
      }
    }
    if (answers.length + 1 < need) {
      throw new MakhzenError(
        "REPLICATION_TIMEOUT",
        `r=${concern.raw}: ${answers.length + 1} of ${need} replicas answered within ${concern.timeoutMs} ms`,
      );
    }
  }

  /** Replicas needed for a level. `all` is every member that has not left, dead ones included (as Cassandra's ALL). */
  required(level: Level): number {
    const n = 1 + this.membership.counts().peers;
    if (level === "all") return n;
    if (level === "quorum") return Math.floor(n / 2) + 1;
    return level;
  }

  private checkReachable(name: string, concern: Concern, need: number, consequence: string): void {
    const counts = this.membership.counts();
    const n = 1 + counts.peers;
    if (need > n) {
      throw new MakhzenError("UNAVAILABLE", `${name}=${concern.raw} needs ${need} replicas but the cluster has ${n}; ${consequence}`);
    }
    const reachable = 1 + counts.reachable;
    if (need > reachable) {
      throw new MakhzenError(
        "UNAVAILABLE",
        `${name}=${concern.raw} needs ${need} replicas but only ${reachable} of ${n} are reachable; ${consequence}`,
      );
    }
  }

  /** First sync of a starting node: a full copy if it holds nothing, then a round with every reachable peer. */
  private async firstSync(): Promise<void> {
    const peers: Member[] = this.membership.reachable();
    if (this.deps.store.recordCount === 0) {
      for (const p of peers) {
        try {
          const n = await this.antiEntropy.fullCopy(p);
          this.logger.info("full copy", { peer: p.name, records: n });
          break;
        } catch (e) {
          if (this.closed) return;
          this.logger.warn("full copy failed; trying the next peer", { peer: p.name, error: e });
        }
      }
    }
    for (const p of peers) {
      try {
        await this.antiEntropy.syncWith(p);
      } catch (e) {
        if (this.closed) return;
        this.logger.warn("first sync failed; periodic anti-entropy will retry", { peer: p.name, error: e });
      }
    }
  }

}

function parseTimeout(raw: string | null | undefined): number {
  if (raw === null || raw === undefined || raw === "") return DEFAULT_CONSISTENCY_TIMEOUT_MS;
  if (!/^\d{1,6}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_CONSISTENCY_TIMEOUT_MS) {
    throw new MakhzenError("VALIDATION", `timeout must be an integer of ms from 1 to ${MAX_CONSISTENCY_TIMEOUT_MS}, not "${raw}"`);
  }
  return Number(raw);
}

