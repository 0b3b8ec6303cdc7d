import { MakhzenError } from "../errors.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { compareRecords, type StoredRecord } from "../core/record.ts";
import type { Store } from "../core/store.ts";
import type { Member } from "./membership.ts";
import { isLive } from "./membership-rules.ts";
import type { PartitionViews } from "./partition-views.ts";
import { partitionOf, type Placement } from "./placement.ts";
import { ForwardBatcher, serveBatch } from "./forward-batch.ts";
import { cannotServe, hopRefused, isLate, lateAnswer, relayed } from "./forward-rules.ts";
import type { ForwardAnswer, ForwardBatchAnswer, ForwardBatchRequest, ForwardRequest } from "./protocol/messages.ts";
import { NOT_SENT, PeerError, type PeerTransport } from "./protocol/peer-ops.ts";

/**
 * Where a client's request for a key runs, in a cluster whose keys live on N
 * owners (placement.ts). The service asks here; every front end gets it for free.
 *
 * The rules, for key k in partition p:
 * - full mode (every member owns everything), or this node owns p and is not
 *   filling it: here, as before partitions existed. This is the hot path, and it
 *   costs one check (`servesLocally`).
 * - otherwise one hop to an owner, over the peer op `forward`, marked forwarded so
 *   the owner runs it itself whatever its own view says (no second hop, no loop
 *   while two nodes disagree on the member list). A read goes to the first
 *   reachable owner (alive or suspect, heaviest first) that is not filling p; a
 *   write to the first reachable owner, those not filling first (a condition is
 *   checked against a whole copy when one exists). The owner's answer, its errors
 *   included, is relayed unchanged. Forwards that answer at once on the owner (no
 *   `w=`/`r=`) travel in batches, one request per owner per event-loop turn
 *   (forward-batch.ts); what follows holds for each member of a batch.
 * - a read with no such owner (all filling, or none reachable), and a forwarded read landing on an owner still
 *   filling p: the MERGE READ, which asks every reachable owner and holder of p and answers the newest of them all.
 * - a write no owner took: see forward() for what "took" means, and the service
 *   for the hint.
 *
 * What a forward that gets no answer means. The request may have been lost on the way (nothing happened) or its
 * answer lost (it happened). The two cannot be told apart, so the next step must be safe in both cases:
 * - a read, or an unconditional write, goes to the next owner: a read changes nothing, and an unconditional write
 *   applied twice is the same value under two versions, the later one winning, what one write would have left;
 * - a conditional write (If-Match, If-None-Match, and so every RESP read-modify-write) stops there with 503
 *   UNAVAILABLE saying its outcome is unknown: sent to a second owner that has not yet received the first one's
 *   copy, its condition could pass twice (an INCR applied twice).
 * A forward whose connection the owner refused (NOT_SENT: a node stopped or stopping, its port closed) was never
 * sent: a read or an unconditional write goes to the next owner, and a conditional write is UNAVAILABLE saying that
 * nothing was applied. Not to the next owner: a stopping owner still decides the writes in flight on it until it
 * has left, and the next owner's copy may lack its last ones, so a condition could pass on both.
 */

/** What an owner runs a forwarded request with: the service's local path (ItemsService.serveForwarded). */
export type ForwardHandler = (req: ForwardRequest) => Promise<ForwardAnswer>;

/** A place a request can run: this node, or a member over the peer protocol. */
export type Target = "self" | Member;

export interface RouterDeps {
  placement: Placement;
  views: PartitionViews;
  /** `reachable`: the members alive or suspect (a merge read also asks those that have not reported yet). */
  membership: { get(name: string): Member | undefined; reachable?(): Member[] };
  transport: PeerTransport;
  store: Store;
  /** Merges records from peers (the cluster's rules): how a merge read repairs this node. */
  applyRemote: (records: StoredRecord[]) => unknown;
  /**
   * How long a hop may take, in ms, besides the time a `w=`/`r=` asks to wait; the
   * most bytes of keys and values a batch of forwards carries (default 1 MiB).
   */
  config: { requestTimeoutMs: number; batchMaxBytes?: number; maxClockOffsetMs?: number };
  /** This node's wall clock, epoch ms: a forwarded write's deadline is read on it (default Date.now). */
  wallMs?: () => number;
  /** A peer's clock minus ours, in ms, or null before it was measured (ClockGuard.offsetOf): a deadline's correction. */
  offsetOf?: (peer: string) => number | null;
  /** Whether THIS node is still filling partition p (Rebalancer.isFilling). Default: never (its copy counts as whole). */
  isFilling?: (partition: number) => boolean;
  /** Whether THIS node may be filling any partition (Rebalancer.anyFilling), O(1). Default: never. */
  anyFilling?: () => boolean;
  /** Whether THIS node's copy of partition p speaks for it (Rebalancer.vouchesFor: an old owner's whole copy too). Default: never. */
  vouchesFor?: (partition: number) => boolean;
  /**
   * Why THIS node must not answer a forwarded read now (its clock is fenced: it
   * would judge a TTL by a wall clock it knows to be off), or undefined. Default: never.
   */
  refusesReads?: () => MakhzenError | undefined;
  logger?: Logger;
}

export class Router {
  private handler?: ForwardHandler;
  private readonly batcher: ForwardBatcher;

  constructor(private readonly deps: RouterDeps) {
    const { requestTimeoutMs: timeoutMs, batchMaxBytes: maxBytes = 1024 * 1024 } = deps.config;
    this.batcher = new ForwardBatcher({ transport: deps.transport, timeoutMs, maxBytes });
  }

  /** How long a hop may take besides what `w=`/`r=` asks to wait, in ms (RouterDeps.config). */
  get requestTimeoutMs(): number {
    return this.deps.config.requestTimeoutMs;
  }

  /** Whether this node is still filling `partition` (RouterDeps.isFilling). */
  isFilling(partition: number): boolean {
    return this.deps.isFilling?.(partition) ?? false;
  }

  private get logger(): Logger {
    return this.deps.logger ?? silentLogger;
  }

  /** The service that runs forwarded requests here. */
  attach(handler: ForwardHandler): void {
    this.handler = handler;
  }

  /** Every member owns every key: nothing is routed. */
  get full(): boolean {
    return this.deps.placement.full;
  }

  /** Whether a request for `key` runs here without asking anyone: the one check of the hot path. */
  servesLocally(key: string): boolean {
    if (this.wholeHere()) return true;
    const p = partitionOf(key);
    return this.deps.placement.owns(p) && !this.isFilling(p);
  }

  /**
   * Whether a conditional write (If-Match, If-None-Match, a RESP read-modify-write)
   * of `key` is decided here: this node is the first of the key's write targets
   * (writeTargets), the owner every node sends such writes to. Two owners each
   * checking a condition against their own copy could both let it pass (two
   * If-None-Match winners, two INCRs from one value); one owner deciding for all
   * cannot, while the nodes agree on who is first. Always here in full mode, as before.
   */
  decidesHere(key: string): boolean {
    if (this.wholeHere()) return true;
    // Not while this node fills the partition: the first target then (no whole owner
    // reachable) is this node, but it decides only after learning the current record
    // (ItemsService.serveForwarded), which a synchronous step cannot wait for.
    const p = partitionOf(key);
    return !this.isFilling(p) && this.writeTargets(p)[0] === "self";
  }

  /**
   * Whether this node holds every key in full: under full replication it owns
   * everything, and fills only after it joins others or when a shrinking cluster
   * hands it partitions (one O(1) check, the hot path's); a node alone has nobody to
   * fill from, so its copy is the whole.
   */
  wholeHere(): boolean {
    const placement = this.deps.placement;
    return placement.full && (placement.members.length === 1 || !this.deps.anyFilling?.());
  }

  /** Whether this node owns the key's partition. */
  owns(key: string): boolean {
    return this.deps.placement.ownsKey(key);
  }

  /** The owners of the key's partition, heaviest first. */
  owners(key: string): readonly string[] {
    return this.deps.placement.ownersOfKey(key);
  }

  /** Where a read of partition `p` may go: reachable owners not filling it, heaviest first (this node when it serves p). */
  readTargets(p: number): Target[] {
    const out: Target[] = [];
    for (const name of this.deps.placement.owners(p)) {
      if (name === this.deps.placement.self) {
        if (!this.isFilling(p)) out.push("self");
        continue;
      }
      const m = this.reachable(name);
      if (m && !this.deps.views.isFilling(name, p)) out.push(m);
    }
    return out;
  }

  /** Where a write to partition `p` may go: reachable owners, heaviest first, those not filling p before those filling it. */
  writeTargets(p: number): Target[] {
    const whole: Target[] = [];
    const filling: Target[] = [];
    for (const name of this.deps.placement.owners(p)) {
      if (name === this.deps.placement.self) {
        (this.isFilling(p) ? filling : whole).push("self");
        continue;
      }
      const m = this.reachable(name);
      if (m) (this.deps.views.isFilling(name, p) ? filling : whole).push(m);
    }
    return whole.concat(filling);
  }

  /**
   * Sends `req` to the first target that answers, and answers what it answered,
   * turning an `error` answer back into the owner's MakhzenError (same code, same
   * message). "self" runs it here. Undefined when no target answered and `retry`
   * (see the opening comment), or when no owner could serve a read (the caller's
   * merge read then asks every copy); without `retry` the first silence is UNAVAILABLE.
   * `unserved` collects the owners that answered but could not serve ("b: CLOCK_OFFSET").
   */
  async forward(req: ForwardRequest, targets: Target[], retry: boolean, unserved?: string[]): Promise<ForwardAnswer | undefined> {
    const wait = req.w?.timeoutMs ?? req.r?.timeoutMs ?? 0;
    const timeoutMs = this.deps.config.requestTimeoutMs + wait;
    // An owner that refused the hop (a 4xx) ran nothing; if none took it, the client
    // hears the refusal: a hint would meet the same refusal when it replicates.
    let refused: PeerError | undefined;
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i]!;
      let answer: ForwardAnswer;
      if (t === "self") {
        answer = await this.serve(req);
      } else {
        try {
          // Batched unless it waits for replicas (a batch answers when its slowest member does). A write runs on an
          // owner only before this node stops waiting for it (isLate): else an owner paused past the timeout ran it
          // when it woke, after the next owner had taken it and later writes of the key had been acknowledged.
          const sent = req.op === "get" ? req : { ...req, deadlineMs: this.wallMs() + timeoutMs, from: this.deps.placement.self };
          answer = await (req.w === undefined && req.r === undefined ? this.batcher.send(t.url, sent) : this.deps.transport.call(t.url, "forward", sent, timeoutMs));
        } catch (e) {
          if (!(e instanceof PeerError)) throw e; // a pass-through code (PROTOCOL_VERSION): the peer's own words
          if (e.code === NOT_SENT) {
            if (!retry) {
              throw new MakhzenError(
                "UNAVAILABLE",
                `owner ${t.name} of key ${JSON.stringify(req.key)} refused the connection (it is stopping or stopped): the conditional write was not applied; send it again`,
              );
            }
            this.logger.debug("an owner refused the connection of a forwarded request; trying the next", { peer: t.name, error: e.message });
            continue;
          }
          if (e.status >= 400 && e.status < 500 && e.status !== 408 && e.status !== 429) {
            // The owner refused the hop itself (a version that lacks the op or `held`, a secret mismatch, a body too large):
            // it ran nothing. Asked again without `held` (RoutedItems.withHeld); then the next owner takes an unconditional
            // write, and a conditional one is refused, as after NOT_SENT (sent on, two owners could each pass it: lost updates).
            if (req.held !== undefined) {
              delete req.held;
              i--; // the same owner again
              continue;
            }
            this.logger.warn("an owner refused a forwarded request", { peer: t.name, status: e.status, code: e.code, error: e.message });
            if (!retry) throw hopRefused(e, req.key, t.name);
            refused = e;
            continue;
          }
          if (!retry) {
            throw new MakhzenError(
              "OUTCOME_UNKNOWN",
              `owner ${t.name} of key ${JSON.stringify(req.key)} did not answer within ${timeoutMs} ms: the conditional write may or may not have been applied there; read the key to find out`,
            );
          }
          this.logger.debug("an owner did not answer a forwarded request (or failed it); trying the next", { peer: t.name, error: e.message });
          continue;
        }
      }
      if (answer.late) {
        // It ran nothing. A conditional write is decided by one owner only (as after NOT_SENT): refused, not sent on.
        if (!retry) throw new MakhzenError("UNAVAILABLE", `owner ${t === "self" ? "self" : t.name} of key ${JSON.stringify(req.key)} took the conditional write too late to run it: it was not applied; send it again`);
        continue;
      }
      if (answer.error) {
        // An owner that cannot serve now (its clock fenced, its name in doubt, or a
        // read it could not answer: restarted a moment ago and still empty) applied
        // nothing: the next owner may serve it. A read none could serve is left to
        // the merge read (undefined), which judges the copies by this node's clock,
        // and an unconditional write to a hint here (its caller, on undefined): the
        // last owner's clock error was this node's answer to a write it could take.
        if (cannotServe(req, answer.error.code) && (req.op === "get" || retry || t !== targets[targets.length - 1])) {
          this.logger.debug("an owner could not serve a forwarded request; trying the next", { peer: t === "self" ? "self" : t.name, code: answer.error.code });
          unserved?.push(`${t === "self" ? this.deps.placement.self : t.name}: ${answer.error.code}`); // for the caller's words
          continue;
        }
        throw relayed(answer.error);
      }
      return answer;
    }
    if (refused) throw hopRefused(refused, req.key);
    return undefined;
  }

  /**
   * Runs a forwarded request here: the peer op `forward`. Errors come back as the
   * answer's `error`. A read refused (refusesReads: a fenced clock, which would
   * expire TTLs early or late) goes to the next owner (cannotServe); writes are
   * refused the same way by the item guard, on the owner's own path.
   */
  serve(req: ForwardRequest): Promise<ForwardAnswer> {
    if (!this.handler) return Promise.resolve({ error: { code: "UNAVAILABLE", message: "this node serves no items" } });
    const refused = req.op === "get" ? this.deps.refusesReads?.() : undefined;
    if (refused) return Promise.resolve({ error: { code: refused.code, message: refused.message } });
    if (this.late(req)) return Promise.resolve(lateAnswer(req));
    // The sender's copy first (RoutedItems.withHeld): the condition is checked, and the write stamped, after it.
    if (req.held !== undefined && req.held.bucket === req.bucket && req.held.key === req.key) this.deps.applyRemote([req.held as StoredRecord]);
    return this.handler(req);
  }

  /** Whether a forwarded write is past its deadline here (forward-rules.ts isLate): asked again after any wait before it is applied. */
  late(req: ForwardRequest): boolean {
    return isLate(req, this.wallMs(), this.deps.config, req.from === undefined ? undefined : this.deps.offsetOf?.(req.from));
  }

  private wallMs(): number {
    return this.deps.wallMs?.() ?? Date.now();
  }

  /** Runs a batch of forwarded requests here: the peer op `forwardBatch` (forward-batch.ts). */
  serveBatch(req: ForwardBatchRequest): Promise<ForwardBatchAnswer> {
    return serveBatch(req.requests, (r) => this.serve(r), this.deps.config.batchMaxBytes ?? 1024 * 1024, this.logger);
  }

  /**
   * The merge read: asks every reachable owner and holder of the key's partition
   * for its record (the `fetch` op, in parallel, each bounded by `timeoutMs`), and
   * answers the newest of theirs and this node's, tombstones included (so a delete
   * wins over an older value). This node keeps the newest only when it owns the
   * partition: a non-owner must not become a holder by reading.
   *
   * Members that have not yet said what they hold (this node started a moment ago,
   * and their first heartbeat has not come) are asked too: one of them may be the
   * old owner a joiner fills from, and left out, the key would look absent.
   *
   * What the answer vouches for. A copy still filling the partition (an owner that
   * joined, or restarted empty) may lack the key, and a member that holds nothing
   * of the partition knows nothing of it: their silence proves nothing. Each member
   * says whether its copy speaks for the key's partition (`fetch`'s `vouches`,
   * Rebalancer.vouchesFor); one that predates it is judged by its heartbeats (an
   * owner not filling, or a holder). `vouched`: the copies whose silence means
   * absence, this node's among them when it owns the partition and is not filling
   * it; `owners`: how many of those are the key's owners, for `r=`.
   */
  async mergeRead(bucket: string, key: string, timeoutMs = this.deps.config.requestTimeoutMs): Promise<{ record?: StoredRecord; owners: number; vouched: number }> {
    const { placement, views, store } = this.deps;
    const p = partitionOf(key);
    const ownerNames = placement.owners(p);
    const names = new Set([...ownerNames, ...views.holders(p)]);
    for (const m of this.deps.membership.reachable?.() ?? []) if (!views.has(m.name)) names.add(m.name);
    names.delete(placement.self);
    const asked = [...names].flatMap((name) => {
      const m = this.reachable(name);
      return m ? [m] : [];
    });
    const answers = await Promise.all(
      asked.map((m) =>
        this.deps.transport.call(m.url, "fetch", { keys: [{ bucket, key }], vouches: true }, timeoutMs).then(
          (a) => {
            const owner = ownerNames.includes(m.name);
            // A peer too old to say (no `vouches`): an owner not filling speaks for the partition; a mere holder may hold hints only.
            const vouches = a.vouches ? a.vouches.includes(p) : owner && !views.isFilling(m.name, p);
            return { owner, vouches, record: a.records[0] as StoredRecord | undefined };
          },
          (e) => {
            this.logger.debug("merge read: a member did not answer", { peer: m.name, error: e });
            return undefined;
          },
        ),
      ),
    );
    const self = placement.owns(p);
    let newest = store.getRecord(bucket, key);
    let owners = self && !this.isFilling(p) ? 1 : 0;
    // An old owner's own whole copy speaks for the partition here too, as it does when another node asks it.
    let vouched = self ? owners : this.deps.vouchesFor?.(p) === true ? 1 : 0;
    for (const a of answers) {
      if (!a) continue;
      if (a.vouches) {
        vouched++;
        if (a.owner) owners++;
      }
      if (a.record && (!newest || compareRecords(a.record, newest) > 0)) newest = a.record;
    }
    if (newest && self) this.deps.applyRemote([newest]);
    return { record: newest, owners, vouched };
  }

  /** A write an owner ran for this node, merged here when this node owns the key (RoutedItems.set says why). */
  keep(record: StoredRecord): void {
    if (this.deps.placement.owns(partitionOf(record.key))) this.deps.applyRemote([record]);
  }

  private reachable(name: string): Member | undefined {
    const m = this.deps.membership.get(name);
    return m && isLive(m.state) ? m : undefined;
  }
}

/**
 * Who a record of `key` goes to in a partitioned cluster: the owners of its
 * partition and every member that says it holds the partition (an old owner before
 * it drops it, a node holding a hint), this node excepted. Writes to a partition in
 * motion so reach its old and new owners, and no copy falls behind: none can bring
 * a deleted key back later. O(members); full mode never calls it (Cluster sets the
 * replicator's targets only for a partitioned cluster).
 */
export function replicationTargets(placement: Placement, views: PartitionViews, key: string): Set<string> {
  const p = partitionOf(key);
  const out = new Set(placement.owners(p));
  for (const h of views.holders(p)) out.add(h);
  out.delete(placement.self);
  return out;
}
