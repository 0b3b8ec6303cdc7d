import { splitId, type Digest } from "./digest.ts";
import type { Membership } from "./membership.ts";
import type { WireMember } from "./peer-protocol.ts";
import type { StoredRecord } from "./record.ts";
import type { Store } from "./store.ts";
import type { PeerService } from "./transport.ts";

export interface PeerServiceDeps {
  store: Store;
  digest: Digest;
  membership: Membership;
  /** Merges records from a peer; returns how many changed the store. */
  applyRemote: (records: StoredRecord[]) => number;
  /** Bytes of records one `fetch` or `scan` answer carries at most (at least one record). */
  answerBudgetBytes: number;
}

/**
 * What a node answers to its peers: one function per operation of the peer
 * protocol. Requests arrive validated (by the transport or the HTTP routes); every
 * answer is bounded, in records by the request and in bytes by the budget, since a
 * page of 1,000 records at the value limit would otherwise be a gigabyte.
 */
export function createPeerService(deps: PeerServiceDeps): PeerService {
  const { store, digest, membership, answerBudgetBytes: budget } = deps;
  return {
    join: (req) => membership.handleJoin(req.member as WireMember),
    gossip: (req) => membership.handleGossip(req.from, req.members),
    leave: (req) => {
      membership.handleLeave(req.name, req.incarnation);
      return { ok: true };
    },
    // `refused` counts records not taken: older than what is held, or too far in the future.
    records: (req) => {
      const applied = deps.applyRemote(req.records as StoredRecord[]);
      return { applied, refused: req.records.length - applied };
    },
    groups: () => ({ groups: digest.groupHashes() }),
    leaves: (req) => ({ leaves: digest.leafHashes(req.groups) }),
    keys: (req) => {
      const entries: { bucket: string; key: string; version: string }[] = [];
      for (const leaf of req.leaves) {
        for (const id of digest.idsIn(leaf)) {
          const { bucket, key } = splitId(id);
          const r = store.getRecord(bucket, key);
          if (r) entries.push({ bucket, key, version: r.version });
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
        if (!r) continue;
        records.push(r);
        bytes += approxBytes(r);
      }
      return { records };
    },
    scan: (req) => {
      const page = store.scan(req.after, req.limit);
      const records: StoredRecord[] = [];
      let bytes = 0;
      for (const r of page) {
        if (records.length > 0 && bytes >= budget) break;
        records.push(r);
        bytes += approxBytes(r);
      }
      const last = records[records.length - 1];
      const more = records.length < page.length || page.length === req.limit;
      return { records, next: more && last ? { bucket: last.bucket, key: last.key } : null };
    },
  };
}

/** Serialized size of a record, near enough for a byte budget. */
const approxBytes = (r: StoredRecord): number => 96 + r.key.length + (r.value?.length ?? 0);
