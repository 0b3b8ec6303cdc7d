import type { NodeConfig } from "./config.ts";
import { differing, GROUP_SIZE, recordId, splitId, type Digest } from "./digest.ts";
import type { RecordRef } from "./peer-protocol.ts";
import { silentLogger, type Logger } from "./log.ts";
import type { StoredRecord } from "./record.ts";
import type { ScanCursor, Store } from "./store.ts";
import type { PeerTransport } from "./transport.ts";

type AntiEntropyConfig = Pick<
  NodeConfig,
  "antiEntropyIntervalMs" | "antiEntropyMaxKeys" | "requestTimeoutMs" | "batchMaxRecords" | "batchMaxBytes"
>;

export interface SyncPeer {
  name: string;
  url: string;
}

export interface AntiEntropyDeps {
  store: Store;
  digest: Digest;
  transport: PeerTransport;
  config: AntiEntropyConfig;
  /** Merges records received from a peer (clock.observe + store.apply); returns how many were taken. */
  applyRemote: (records: StoredRecord[]) => number;
  /** Peers worth a periodic round: the reachable ones. */
  candidates: () => SyncPeer[];
  logger?: Logger;
}

export interface RoundResult {
  /** Records sent to the peer. */
  pushed: number;
  /** Records taken from the peer. */
  pulled: number;
  /** False when the round hit its leaf budget and another round is needed. */
  complete: boolean;
}

/**
 * Repairs whatever replication missed: a peer that was down past its queue bound,
 * a partition, a node restarted empty, a new member.
 *
 * One round against a peer (Dynamo's Merkle comparison, flattened to two levels):
 *   1. fetch the peer's 64 group hashes and compare with ours;
 *   2. for differing groups, fetch their 64 leaf hashes each and compare;
 *   3. for differing leaves, LEAVES_PER_REQUEST at a time, fetch the peer's
 *      (bucket, key, version) list and compare with ours, until about
 *      antiEntropyMaxKeys pairs have been listed;
 *   4. push the records where we are newer, pull those where the peer is.
 * The wire cost follows the size of the difference, not of the store: with 100k
 * keys and 10 differing ones, 64 + ~640 hashes, ~10 leaves of (key, version)
 * pairs, and 10 records cross. A round that hits its key budget returns
 * `complete: false` and the next one continues; no round runs unbounded.
 *
 * A node that holds nothing takes a full copy instead: pages of records in
 * (bucket, key) order, each page one request of batchMaxRecords.
 *
 * Rounds against one peer never overlap; rounds against different peers may.
 */
/** Leaves per `keys` request: with the key budget, bounds the size of one answer. */
export const LEAVES_PER_REQUEST = 64;

const sizeOf = (ids: Iterable<string>): number => (ids instanceof Set ? ids.size : [...ids].length);

export class AntiEntropy {
  private timer?: ReturnType<typeof setInterval>;
  private readonly running = new Map<string, Promise<RoundResult>>();
  private readonly wanted = new Set<string>();
  private stopped = false;
  readonly stats = { rounds: 0, failures: 0, pushed: 0, pulled: 0 };

  constructor(private readonly deps: AntiEntropyDeps) {}

  start(): void {
    this.timer ??= setInterval(() => this.tick(), this.deps.config.antiEntropyIntervalMs);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Asks for a round against `name` at once (a peer came back, a queue overflowed, a member joined). */
  request(name: string): void {
    this.wanted.add(name);
    queueMicrotask(() => this.runWanted());
  }

  /**
   * Rounds against `peer` until one is complete or `maxRounds` ran. Rejects when
   * the peer cannot be reached; the caller decides whether that matters.
   */
  async syncWith(peer: SyncPeer, maxRounds = 64): Promise<RoundResult> {
    const total: RoundResult = { pushed: 0, pulled: 0, complete: false };
    for (let i = 0; i < maxRounds && !this.stopped; i++) {
      const r = await this.round(peer);
      total.pushed += r.pushed;
      total.pulled += r.pulled;
      if (r.complete) {
        total.complete = true;
        break;
      }
    }
    return total;
  }

  /** Copies every record of `peer`, page by page. For a node that holds nothing. */
  async fullCopy(peer: SyncPeer): Promise<number> {
    let after: ScanCursor | undefined;
    let taken = 0;
    for (;;) {
      if (this.stopped) return taken;
      const page = await this.deps.transport.call(
        peer.url,
        "scan",
        after ? { after, limit: this.deps.config.batchMaxRecords } : { limit: this.deps.config.batchMaxRecords },
        this.deps.config.requestTimeoutMs,
      );
      taken += this.deps.applyRemote(page.records as StoredRecord[]);
      if (page.next === null) break;
      after = page.next;
    }
    this.stats.pulled += taken;
    return taken;
  }

  /** One bounded round; at most one at a time per peer (a second caller shares the first's). */
  round(peer: SyncPeer): Promise<RoundResult> {
    const busy = this.running.get(peer.name);
    if (busy) return busy;
    const p = this.runRound(peer)
      .catch((e: unknown) => {
        this.stats.failures++;
        throw e;
      })
      .finally(() => this.running.delete(peer.name));
    this.running.set(peer.name, p);
    return p;
  }

  private tick(): void {
    this.runWanted();
    const peers = this.deps.candidates();
    if (peers.length === 0) return;
    const peer = peers[Math.floor(Math.random() * peers.length)]!;
    this.background(peer);
  }

  private runWanted(): void {
    if (this.wanted.size === 0) return;
    const byName = new Map(this.deps.candidates().map((p) => [p.name, p]));
    for (const name of [...this.wanted]) {
      const peer = byName.get(name);
      if (!peer) continue; // not reachable yet: stays wanted until it is
      this.wanted.delete(name);
      this.background(peer);
    }
  }

  /** A round whose failure is logged and counted, and whose incompleteness asks for another. */
  private background(peer: SyncPeer): void {
    if (this.stopped || this.running.has(peer.name)) return;
    this.round(peer).then(
      (r) => {
        if (r.pushed + r.pulled === 0) this.logger.debug("round: in sync", { peer: peer.name });
        if (!r.complete) this.request(peer.name);
      },
      // Counted in round(); the next tick (or the next request) tries again.
      (e) => this.logger.warn("round failed", { peer: peer.name, error: e }),
    );
  }

  private async runRound(peer: SyncPeer): Promise<RoundResult> {
    const { transport, digest, config } = this.deps;
    const timeout = config.requestTimeoutMs;
    this.stats.rounds++;
    const theirGroups = (await transport.call(peer.url, "groups", {}, timeout)).groups;
    const groups = differing(digest.groupHashes(), theirGroups);
    if (groups.length === 0) return { pushed: 0, pulled: 0, complete: true };

    const theirLeaves = (await transport.call(peer.url, "leaves", { groups }, timeout)).leaves;
    const ours = digest.leafHashes(groups);
    const differingLeaves: number[] = [];
    groups.forEach((g, i) => {
      for (const j of differing(ours[i]!, theirLeaves[i] ?? [])) differingLeaves.push(g * GROUP_SIZE + j);
    });
    if (differingLeaves.length === 0) return { pushed: 0, pulled: 0, complete: true };

    // List both sides leaf chunk by leaf chunk until the key budget is spent.
    const theirs = new Map<string, string>();
    const leaves: number[] = [];
    let listed = 0;
    for (let i = 0; i < differingLeaves.length && listed < config.antiEntropyMaxKeys; i += LEAVES_PER_REQUEST) {
      const chunk = differingLeaves.slice(i, i + LEAVES_PER_REQUEST);
      const { entries } = await transport.call(peer.url, "keys", { leaves: chunk }, timeout);
      for (const e of entries) theirs.set(recordId(e.bucket, e.key), e.version);
      for (const leaf of chunk) listed += sizeOf(digest.idsIn(leaf));
      listed += entries.length;
      leaves.push(...chunk);
    }
    const complete = leaves.length === differingLeaves.length;
    const push: StoredRecord[] = [];
    for (const leaf of leaves) {
      for (const id of digest.idsIn(leaf)) {
        const { bucket, key } = splitId(id);
        const mine = this.deps.store.getRecord(bucket, key);
        if (!mine) continue;
        const v = theirs.get(id);
        if (v === undefined || v < mine.version) push.push(mine);
        theirs.delete(id);
        if (v !== undefined && v > mine.version) theirs.set(id, v);
      }
    }
    // What is left in `theirs`: keys we lack or hold older.
    const pull: RecordRef[] = [...theirs.keys()].map(splitId);

    let pushed = 0;
    for (const batch of this.batches(push)) {
      await transport.call(peer.url, "records", `{"records":[${batch.join(",")}]}`, timeout);
      pushed += batch.length;
    }
    let pulled = 0;
    for (let i = 0; i < pull.length; ) {
      const keys = pull.slice(i, i + config.batchMaxRecords);
      const answer = await transport.call(peer.url, "fetch", { keys }, timeout);
      pulled += this.deps.applyRemote(answer.records as StoredRecord[]);
      // A byte-bounded answer says where it stopped; always advance by at least one.
      i += Math.max(1, Math.min(answer.rest ?? keys.length, keys.length));
    }
    this.stats.pushed += pushed;
    this.stats.pulled += pulled;
    // One line per round that repaired something; rounds that found nothing to do are silent.
    if (pushed + pulled > 0) this.logger.info("repair", { peer: peer.name, pushed, pulled, complete });
    return { pushed, pulled, complete };
  }

  /** Serialized records grouped under the replication batch limits. */
  private *batches(records: StoredRecord[]): Generator<string[]> {
    let batch: string[] = [];
    let bytes = 0;
    for (const r of records) {
      const json = JSON.stringify(r);
      if (batch.length > 0 && (batch.length === this.deps.config.batchMaxRecords || bytes + json.length > this.deps.config.batchMaxBytes)) {
        yield batch;
        batch = [];
        bytes = 0;
      }
      batch.push(json);
      bytes += json.length + 1;
    }
    if (batch.length > 0) yield batch;
  }

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }
}
