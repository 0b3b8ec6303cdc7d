import { MakhzenError } from "../errors.ts";
import { BUCKET_NAME_RULE, BUCKET_PATTERN, KEY_BYTES_CEILING, compareRecords, compareStamps, isExpired, stampOf, toItem, type KeyStamp, type StoredRecord } from "../core/record.ts";
import { DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, type ListItemsOptions } from "../core/items.ts";
import type { ListPage } from "../core/store.ts";
import { silentLogger, type Logger } from "../ops/log.ts";
import { PARTITIONS } from "./placement.ts";
import type { ListAnswer, ListRequest } from "./protocol/messages.ts";
import { PeerError, type PeerTransport } from "./protocol/peer-ops.ts";
import { collectPage, compareIds, type ListCursor, type SourcePage } from "./listing-merge.ts";

/**
 * Listing and dumping the whole cluster from any node (the merge is listing-merge.ts).
 *
 * In full mode (every node owns every partition) a node's own records are the
 * cluster's, and a listing is the local one: no peer is asked, exactly as before
 * partitions. In a partitioned cluster each page asks this node and every reachable
 * member (alive or suspect) for its records after the cursor, in parallel, and
 * merges them. Every reachable member, not only a covering set of owners: an old
 * owner that has not dropped a partition yet, or a node holding a write as a hint,
 * may hold the newest record of a key. The cost is O(members x page) records read
 * per page, against O(page) for a local listing; a member that fails or times out
 * is not asked again within the page, so one hung member costs one timeout.
 *
 * A listing of keys (`listKeys`: RESP's KEYS, SCAN, FLUSHDB) asks the members for
 * their records without values (KeyStamp: key, version, expiry, tombstone or not),
 * all the merge needs to keep each key's newest and drop the dead ones. With the
 * values, a KEYS over 200 values of 1 MiB read, sent and parsed every value of the
 * db from every owner: seconds per call, and a GB of memory for ten at once.
 *
 * When some partition has no owner or holder among the members that answered
 * (they are all down, cut off or slow), a listing still answers what it found, and
 * says so: `incomplete` counts those partitions and names their owners (HTTP adds
 * it to the page's body). It is a page like any other, not an error: the keys it
 * lists are right, some are missing. A dump is a backup, which must not be silently
 * short: it is refused (UNAVAILABLE, 503) before its first record when partitions
 * have no reachable owner or holder, and a dump that loses the last of them on the
 * way stops with an error (the transfer breaks) rather than end as if whole.
 */

/** Partitions no member that answered owns or holds: how many, and the owners that did not answer. */
export interface Incomplete {
  partitions: number;
  members: string[];
}

/** A page of the cluster's live items: a ListPage, and `incomplete` when some partitions could not be read. */
export interface ClusterListPage extends ListPage {
  incomplete?: Incomplete;
}

/** A page of the cluster's live keys: a ClusterListPage without values (ClusterListing.listKeys). */
export interface ClusterKeyPage {
  keys: string[];
  next: string | null;
  incomplete?: Incomplete;
}

/** A local page's keys: what a full-mode listing of keys is (every node holds every key). */
export const keysOf = (page: ListPage): ClusterKeyPage => ({ keys: page.items.map((i) => i.key), next: page.next });

/** What a listing asks the members for and merges: whole records, or stamps (no value crosses the wire). */
interface Kind<T extends ListCursor> {
  values: boolean;
  /** The merge order. */
  compare: (a: T, b: T) => number;
  /** The entries of a member's answer. */
  read: (answer: ListAnswer) => readonly T[];
}
const RECORDS: Kind<StoredRecord> = { values: true, compare: compareRecords, read: (a) => a.records as StoredRecord[] };
// A member that predates `values: false` answers records (see ClusterListing.ask): they are read as stamps.
const STAMPS: Kind<KeyStamp> = { values: false, compare: compareStamps, read: (a) => (a.stamps as KeyStamp[] | undefined) ?? a.records.map((r) => stampOf(r as StoredRecord)) };

/** How long a member that refused `values` (a release before it) is asked without it, before it is tried again (it may have been upgraded). */
const OLDER_RELEASE_MS = 10 * 60_000;

/** Rounds of member pages one listing page may take before it answers short with a cursor (see collectPage). */
export const LIST_MAX_ROUNDS = 8;
/**
 * Records asked of each member per round, at least: a page of a few items over a
 * run of deleted keys moves on this many keys per round, not one or two.
 */
export const LIST_MIN_SOURCE_PAGE = 100;

export interface ListingDeps {
  /** This node's name. */
  self: string;
  /** `full`: every node owns everything; `owners(p)`: the owners of a partition. Cluster.placement is one. */
  placement: { readonly full: boolean; owners(partition: number): readonly string[] };
  /** Whether another member said it is still filling a partition it owns (Cluster.views). */
  views: { isFilling(name: string, partition: number): boolean };
  /** Whether this node is still filling a partition it owns (Rebalancer.isFilling). Default: never. */
  isFilling?: (partition: number) => boolean;
  /** The members to ask, this node excluded: alive or suspect (Membership.reachable). */
  reachable: () => readonly { name: string; url: string }[];
  transport: PeerTransport;
  /** This node's answer to a `list` request: its own peer service. */
  local: (req: ListRequest) => ListAnswer | Promise<ListAnswer>;
  /** Epoch ms, against which expiry is judged (the node's wall clock). */
  wallMs: () => number;
  /** How long a member's page may take, in ms. */
  timeoutMs: number;
  /**
   * When this node last heard from a member, and now, on one clock (Member.lastSeenMs
   * and Membership.silenceClock). Absent: a failed member is asked again on the next page.
   */
  heard?: { lastMs: (name: string) => number; nowMs: () => number };
  logger?: Logger;
}

/** The members asked during one page, and those that failed and are not asked again. */
interface PageState {
  sources: { name: string; url: string }[];
  failed: Set<string>;
  /** Per member that answered: the partitions its copy speaks for, as it said (ListAnswer.vouches). */
  vouched: Map<string, Set<number>>;
}

export class ClusterListing {
  private readonly logger: Logger;
  /**
   * When a member's page last failed (the `heard` clock). It is left out of later
   * pages until it answers a heartbeat again: a hung member (SIGSTOP, a host gone
   * but not yet dead) would otherwise cost every page a whole timeout. Its
   * partitions are read from their other owners meanwhile, or reported `incomplete`.
   */
  private readonly failedAt = new Map<string, number>();
  /** Members (by URL) that refused `values: false`, until when they are asked without it (see ask). */
  private readonly olderRelease = new Map<string, number>();

  constructor(private readonly deps: ListingDeps) {
    this.logger = deps.logger ?? silentLogger;
  }

  /** Whether listings span members (a partitioned cluster); false in full mode, where the local listing is the cluster's. */
  get partitioned(): boolean {
    return !this.deps.placement.full;
  }

  /**
   * One page of the cluster's live items of `bucket`, in key order, each key once
   * with its newest version. Validates like Items.list (INVALID_BUCKET, VALIDATION).
   */
  async list(bucket: string, opts: ListItemsOptions = {}): Promise<ClusterListPage> {
    const now = this.deps.wallMs();
    const page = await this.page(bucket, opts, RECORDS, (r) => r.value !== null && !isExpired(r, now));
    return withIncomplete({ items: page.records.map(toItem), next: page.next }, page.incomplete);
  }

  /** `list` without values: the page's keys, read from the members as stamps (see above). */
  async listKeys(bucket: string, opts: ListItemsOptions = {}): Promise<ClusterKeyPage> {
    const now = this.deps.wallMs();
    const page = await this.page(bucket, opts, STAMPS, (s) => s.deleted !== true && !isExpired(s, now));
    return withIncomplete({ keys: page.records.map((s) => s.key), next: page.next }, page.incomplete);
  }

  /** One page of what `keep` accepts, merged from the members' `kind` by its merge order. */
  private async page<T extends ListCursor>(
    bucket: string,
    opts: ListItemsOptions,
    kind: Kind<T>,
    keep: (r: T) => boolean,
  ): Promise<{ records: T[]; next: string | null; incomplete?: Incomplete }> {
    if (!BUCKET_PATTERN.test(bucket)) throw new MakhzenError("INVALID_BUCKET", `bucket name must match ${BUCKET_NAME_RULE}`);
    const limit = opts.limit ?? DEFAULT_LIST_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new MakhzenError("VALIDATION", `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`);
    }
    const prefix = opts.prefix || undefined;
    // No key is longer than the ceiling: such a prefix matches nothing, and such a cursor is past every key.
    if ((prefix?.length ?? 0) > KEY_BYTES_CEILING || (opts.after?.length ?? 0) > KEY_BYTES_CEILING) return { records: [], next: null };
    const state = this.newPage();
    const start = opts.after === undefined || opts.after === "" ? undefined : { bucket, key: opts.after };
    const ask = (after: ListCursor | undefined) => this.round(state, kind, { bucket, prefix, after }, Math.max(limit, LIST_MIN_SOURCE_PAGE));
    const page = await collectPage(ask, start, limit, keep, LIST_MAX_ROUNDS, kind.compare);
    return { records: page.records, next: page.next?.key ?? null, incomplete: this.incomplete(state) };
  }

  /**
   * Every record of the cluster (only `bucket`'s when given), each key once with its
   * newest record, tombstones and expired records included as a node's own dump has
   * them, in pages of up to `pageSize` in (bucket, key) order. Pages are built as the
   * caller pulls them. Throws UNAVAILABLE (on the first pull, or on a later one)
   * when some partition has no owner or holder that answered.
   */
  async *dump(bucket: string | undefined, pageSize: number): AsyncGenerator<StoredRecord[], void, undefined> {
    // Judged after each page, the first included, by what the members that answered said
    // they speak for (unanswered): the /dump route pulls the first page before it answers.
    const state = this.newPage();
    let after: ListCursor | undefined;
    for (;;) {
      const page = await collectPage((at) => this.round(state, RECORDS, { bucket, after: at }, pageSize), after, pageSize, () => true, LIST_MAX_ROUNDS, compareRecords);
      refuseIncomplete(this.incomplete(state));
      if (page.records.length > 0) yield page.records;
      if (page.next === null) return;
      after = page.next;
      // Each page asks every member again: one that came back since is welcome.
      state.sources = this.sources();
      state.failed = this.recentlyFailed();
      state.vouched = new Map();
    }
  }

  private newPage(): PageState {
    return { sources: this.sources(), failed: this.recentlyFailed(), vouched: new Map() };
  }

  /** Members whose page failed and that have not answered a heartbeat since: not asked again yet. */
  private recentlyFailed(): Set<string> {
    const out = new Set<string>();
    const heard = this.deps.heard;
    if (!heard) return out;
    for (const [name, at] of this.failedAt) {
      if (heard.lastMs(name) <= at) out.add(name);
      else this.failedAt.delete(name);
    }
    return out;
  }

  /** This node first, then every reachable member. */
  private sources(): { name: string; url: string }[] {
    return [{ name: this.deps.self, url: "" }, ...this.deps.reachable().filter((m) => m.name !== this.deps.self)];
  }

  /**
   * One round: every member not failed yet, asked in parallel for `pageSize` records
   * (or stamps, as `kind` says) after `after`. A member that fails is left out of the
   * rest of the page; what it answered in earlier rounds stands. Records outside
   * what was asked (a buggy or hostile member) are dropped.
   */
  private async round<T extends ListCursor>(
    state: PageState,
    kind: Kind<T>,
    what: { bucket?: string; prefix?: string; after?: ListCursor },
    pageSize: number,
  ): Promise<SourcePage<T>[]> {
    const req: ListRequest = { limit: pageSize, vouches: true };
    if (!kind.values) req.values = false;
    if (what.bucket !== undefined) req.bucket = what.bucket;
    if (what.prefix !== undefined) req.prefix = what.prefix;
    if (what.after !== undefined) req.after = { bucket: what.after.bucket, key: what.after.key };
    const asked = state.sources.filter((s) => !state.failed.has(s.name));
    const answers = await Promise.all(
      asked.map(async (s): Promise<SourcePage<T> | undefined> => {
        try {
          const answer = s.name === this.deps.self ? await this.deps.local(req) : await this.ask(s.url, req);
          if (answer.vouches) state.vouched.set(s.name, new Set(answer.vouches));
          return { records: kind.read(answer).filter((r) => inRange(r, what)), more: answer.more };
        } catch (e) {
          state.failed.add(s.name);
          if (this.deps.heard) this.failedAt.set(s.name, this.deps.heard.nowMs());
          // Debug, not warn: a client paging through a cluster with a member down would log a line a page.
          // What matters to the client reaches it as `incomplete`; membership reports the member itself.
          this.logger.debug("listing: a member did not answer its page; it is left out of this page", { peer: s.name, error: e });
          return undefined;
        }
      }),
    );
    return answers.filter((a): a is SourcePage<T> => a !== undefined);
  }

  /**
   * A member's page. A member of a release that predates `values` refuses the field
   * (422: Elysia's validation there takes no unknown property): asked again without
   * it, it answers records, read as stamps (Kind.read). Otherwise it would count as
   * failed, and a walk over keys would skip it or find its partitions incomplete
   * throughout a rolling upgrade. The refusal comes before any work on that node.
   */
  private async ask(url: string, req: ListRequest): Promise<ListAnswer> {
    const { values, ...older } = req;
    // Such a member is asked the old way for a while: under a cluster secret its 422 is unsigned (that release
    // signs no body refusal), and each one was logged and counted as an auth refusal, for every page of every walk.
    const now = this.deps.wallMs();
    if (values !== undefined && (this.olderRelease.get(url) ?? 0) > now) return this.deps.transport.call(url, "list", older, this.deps.timeoutMs);
    try {
      return await this.deps.transport.call(url, "list", req, this.deps.timeoutMs);
    } catch (e) {
      if (values === undefined || !(e instanceof PeerError) || e.status !== 422) throw e;
      if (this.olderRelease.size >= 1024) this.olderRelease.clear();
      this.olderRelease.set(url, now + OLDER_RELEASE_MS);
      return this.deps.transport.call(url, "list", older, this.deps.timeoutMs);
    }
  }

  /** The page's Incomplete when some partition has no owner or holder among the members that answered; else undefined. */
  private incomplete(state: PageState): Incomplete | undefined {
    const answered = new Set(state.sources.map((s) => s.name).filter((n) => !state.failed.has(n)));
    return this.unanswered(answered, state.vouched);
  }

  /**
   * Partitions that no member among `answered` holds in full, and their owners. A
   * member that said (`vouched`) its copy speaks for a partition holds all of it:
   * an owner not filling it, or an old owner during a move, before its hand-off
   * (Rebalancer.vouchesFor). Without its word, only an owner this node does not
   * know to be filling counts: a non-owner may hold a single hint, and a filling
   * owner part of it. O(PARTITIONS x N).
   */
  private unanswered(answered: ReadonlySet<string>, vouched: ReadonlyMap<string, ReadonlySet<number>>): Incomplete | undefined {
    let partitions = 0;
    const members = new Set<string>();
    const { self, views } = this.deps;
    const whole = (name: string, p: number) =>
      answered.has(name) && !(name === self ? (this.deps.isFilling?.(p) ?? false) : views.isFilling(name, p));
    const says = (p: number) => {
      for (const [name, set] of vouched) if (answered.has(name) && set.has(p)) return true;
      return false;
    };
    for (let p = 0; p < PARTITIONS; p++) {
      const owners = this.deps.placement.owners(p);
      if (owners.some((o) => whole(o, p)) || says(p)) continue;
      partitions++;
      for (const o of owners) members.add(o);
    }
    return partitions === 0 ? undefined : { partitions, members: [...members].sort() };
  }
}

/** Throws UNAVAILABLE for a dump that would miss partitions. */
function refuseIncomplete(incomplete: Incomplete | undefined): void {
  if (!incomplete) return;
  throw new MakhzenError(
    "UNAVAILABLE",
    `${incomplete.partitions} of ${PARTITIONS} partitions have no reachable owner or holder (owners: ${incomplete.members.join(", ")}); ` +
      "a dump of the cluster would miss their keys: retry once they are back, or dump each node's own records (--local)",
  );
}

/** `page` with `incomplete` when there is one (absent, not undefined, otherwise). */
function withIncomplete<P extends object>(page: P, incomplete: Incomplete | undefined): P & { incomplete?: Incomplete } {
  return incomplete ? { ...page, incomplete } : page;
}

/** Whether a member's record is one it was asked for: in the bucket, with the prefix, after the cursor. */
function inRange(r: ListCursor, what: { bucket?: string; prefix?: string; after?: ListCursor }): boolean {
  if (what.bucket !== undefined && r.bucket !== what.bucket) return false;
  if (what.prefix !== undefined && !r.key.startsWith(what.prefix)) return false;
  return what.after === undefined || compareIds(r, what.after) > 0;
}
