import type { Digest } from "../digest.ts";
import { MakhzenError } from "../../errors.ts";
import type { Membership } from "../membership.ts";
import type { ForwardAnswer, ForwardBatchAnswer, ForwardBatchRequest, ForwardRequest, KeysEntry, ListAnswer, WireMember } from "./messages.ts";
import { approxWireBytes, type KeyStamp, type StoredRecord } from "../../core/record.ts";
import type { Store } from "../../core/store.ts";
import { checkWellFormed } from "../../core/text.ts";
import { checkBytesRecord } from "../../core/binary.ts";
import type { PeerService } from "./peer-ops.ts";
import { fromTuple } from "./record-wire.ts";
import { PARTITIONS, partitionOf } from "../placement.ts";

export interface PeerServiceDeps {
  store: Store;
  digest: Digest;
  membership: Membership;
  /** Merges records from a peer: how many changed the store, and the indices refused as too new. */
  applyRemote: (records: StoredRecord[]) => { applied: number; tooNew: number[] };
  /** Bytes one `fetch`, `scan` or `keys` answer carries at most (at least one record, or one leaf). */
  answerBudgetBytes: number;
  /** Whether this node is in its first sync (see GroupsAnswer). */
  syncing: () => boolean;
  /** Runs a forwarded client request here (Router.serve). */
  forward: (req: ForwardRequest) => Promise<ForwardAnswer>;
  /** Runs a batch of forwarded requests here, each answered in its slot (Router.serveBatch). */
  forwardBatch: (req: ForwardBatchRequest) => Promise<ForwardBatchAnswer>;
  /** Whether this node's copy of `partition` speaks for it (Rebalancer.vouchesFor), for `fetch`'s `vouches`. Default: never. */
  vouchesFor?: (partition: number) => boolean;
}

/**
 * What a node answers to its peers: one function per operation of the peer
 * protocol. Requests arrive validated (by the transport or the HTTP routes); every
 * answer is bounded, in records or leaves by the request and in bytes by the
 * budget, since a page of 1,000 records at the value limit would otherwise be a
 * gigabyte, and 64 leaves of a store of 100M keys a million entries.
 *
 * Records past their tombstone grace period, and tombstones every member holds
 * (Store.isDroppable), are neither offered (`keys`) nor sent (`fetch`, `scan`): the
 * receiver would refuse the first or has (or has dropped) the second, and offering
 * them would make every round find the same difference again until this node
 * sweeps them.
 */
export function createPeerService(deps: PeerServiceDeps): PeerService {
  const { store, digest, membership, answerBudgetBytes: budget } = deps;
  return {
    join: (req) => membership.handleJoinChecked(req.member as WireMember, req),
    gossip: (req) => membership.handleGossip(req.from, req.members, { stableMs: req.stableMs, durableMs: req.durableMs, holds: req.holds, filling: req.filling, departed: req.departed }),
    members: () => membership.handleMembers(),
    leave: (req) => {
      membership.handleLeave(req.name, req.incarnation);
      return { ok: true };
    },
    // `refused` counts records not taken: older than what is held, or too far in the future (`tooNew`).
    records: (req) => {
      // A record no node may store (see text.ts) fails the whole request with 422, before
      // anything is applied: the sender splits the batch and drops only that record.
      // The message naming the key is built only for a record that fails: every
      // replicated record passes here, and most batches carry a hundred or more.
      const wire = req.records;
      const records: StoredRecord[] = new Array(wire.length);
      for (let i = 0; i < wire.length; i++) {
        const r = fromTuple(wire[i]!);
        checkWellFormed("key", r.key);
        if (r.value !== null && !r.value.isWellFormed()) checkWellFormed(`value of ${JSON.stringify(r.key)}`, r.value);
        if (r.bytes !== undefined) checkBytesRecord(r);
        records[i] = r;
      }
      const { applied, tooNew } = deps.applyRemote(records);
      return tooNew.length > 0 ? { applied, refused: records.length - applied, tooNew } : { applied, refused: records.length - applied };
    },
    groups: () => (deps.syncing() ? { groups: digest.groupHashes(), syncing: true } : { groups: digest.groupHashes() }),
    leaves: (req) => ({ leaves: digest.leafHashes(req.groups) }),
    keys: (req) => {
      const entries: KeysEntry[] = [];
      let bytes = 0;
      for (let i = 0; i < req.leaves.length; i++) {
        // Whole leaves only: the caller compares a leaf only when it has all of it.
        if (i > 0 && bytes >= budget) return { entries, rest: i };
        for (const r of digest.recordsIn(req.leaves[i]!)) {
          const { bucket, key } = r;
          if (store.isDroppable(r)) continue;
          entries.push({ bucket, key, version: r.version, hash: store.getHash(bucket, key)! });
          bytes += 90 + key.length + r.version.length;
        }
      }
      return { entries };
    },
    fetch: (req) => {
      const records: StoredRecord[] = [];
      let bytes = 0;
      for (let i = 0; i < req.keys.length; i++) {
        if (records.length > 0 && bytes >= budget) return { records, rest: i };
        const { bucket, key } = req.keys[i]!;
        const r = store.getRecord(bucket, key);
        if (!r || store.isDroppable(r)) continue;
        records.push(r);
        bytes += approxWireBytes(r);
      }
      return req.vouches && deps.vouchesFor ? { records, vouches: vouchedOf(req.keys, deps.vouchesFor) } : { records };
    },
    forward: (req) => deps.forward(req),
    forwardBatch: (req) => deps.forwardBatch(req),
    scan: (req) => {
      const page = store.scan(req.after, req.limit);
      const records: StoredRecord[] = [];
      let bytes = 0;
      let last: StoredRecord | undefined;
      let taken = 0;
      for (const r of page) {
        if (taken > 0 && bytes >= budget) break;
        taken++;
        last = r;
        if (store.isDroppable(r)) continue;
        records.push(r);
        bytes += approxWireBytes(r);
      }
      const more = taken < page.length || page.length === req.limit;
      return { records, next: more && last ? { bucket: last.bucket, key: last.key } : null };
    },
    // Everything held, tombstones, expired and droppable records included: the asking
    // node merges the pages of every member by the merge order, and a tombstone here
    // must hide an older value another member still holds. Without values (a listing
    // of keys), no value is read: stamps are a few columns each.
    list: (req) => {
      if (req.prefix !== undefined && req.bucket === undefined) throw new MakhzenError("VALIDATION", "peer list request: prefix needs bucket");
      const only = req.bucket === undefined ? undefined : { bucket: req.bucket, prefix: req.prefix };
      const answer: ListAnswer =
        req.values === false
          ? budgeted(store.scanStamps(req.after, req.limit, only), req.limit, budget, stampWireBytes, (stamps, more) => ({ records: [], stamps, more }))
          : budgeted(store.scan(req.after, req.limit, only), req.limit, budget, approxWireBytes, (records, more) => ({ records, more }));
      if (req.vouches && deps.vouchesFor) answer.vouches = allVouched(deps.vouchesFor);
      return answer;
    },
  };
}

/**
 * A `list` page cut at the byte budget (at least one entry kept): `more` when the
 * scan filled `limit` or the budget cut it, so the asker goes on after the last one.
 */
function budgeted<T>(page: T[], limit: number, budget: number, size: (t: T) => number, answer: (kept: T[], more: boolean) => ListAnswer): ListAnswer {
  let bytes = 0;
  for (let i = 0; i < page.length; i++) {
    if (i > 0 && bytes >= budget) return answer(page.slice(0, i), true);
    bytes += size(page[i]!);
  }
  return answer(page, page.length === limit);
}

/** A stamp's serialized size, near enough for the byte budget (as approxWireBytes is a record's). */
const stampWireBytes = (s: KeyStamp): number => 96 + s.key.length;

/** Every partition this node's copy speaks for (a `list` answer's `vouches`). */
function allVouched(vouchesFor: (p: number) => boolean): number[] {
  const out: number[] = [];
  for (let p = 0; p < PARTITIONS; p++) if (vouchesFor(p)) out.push(p);
  return out;
}

/** The partitions of `keys` this node's copy speaks for, each once (a merge read asks of one key). */
function vouchedOf(keys: readonly { key: string }[], vouchesFor: (p: number) => boolean): number[] {
  const out = new Set<number>();
  for (const { key } of keys) {
    const p = partitionOf(key);
    if (vouchesFor(p)) out.add(p);
  }
  return [...out];
}
