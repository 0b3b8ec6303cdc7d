import type { ClusterConfig } from "./options.ts";
import type { Digest } from "./digest.ts";
import type { KeysEntry } from "./protocol/messages.ts";
import type { Logger } from "../ops/log.ts";
import type { StoredRecord } from "../core/record.ts";
import type { Store } from "../core/store.ts";
import type { PeerTransport } from "./protocol/peer-ops.ts";

/** The shapes around AntiEntropy (antientropy.ts): what it is given, what a round tells. */

export type AntiEntropyConfig = Pick<
  ClusterConfig,
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
  /**
   * Whether a round with `peer` compares `partition` (see Cluster: both own it, or
   * one owns it and the other holds it), given whether each side holds records of it
   * now (its group hash is not empty). Absent: every partition (full replication).
   */
  compares?: (peer: string, partition: number, peerHolds: boolean, selfHolds: boolean) => boolean;
  /** The peer does not hold these pushed records within its clock bounds (the `tooNew` of its answer). */
  onNotHeld?: (records: StoredRecord[]) => void;
  /** Wall clock, for when rounds complete (see lastCompleteMs). Default: Date.now. */
  wallMs?: () => number;
  logger?: Logger;
}

export interface RoundResult {
  /** Records the peer took from us (it held them older, or not at all). */
  pushed: number;
  /** Records taken from the peer. */
  pulled: number;
  /** False when the round hit its key budget, or the peer is in its first sync: another round is needed. */
  complete: boolean;
  /**
   * Records sent that the peer did not take (it refused them, or does not hold them
   * within its clock bounds: `tooNew`). A round with any is not a complete round for
   * lastCompleteMs: the peer is not known to hold what this node holds.
   */
  notHeld?: number;
  /** The peer is in its first sync (GroupsAnswer.syncing): the round stopped at once; try again later. */
  peerSyncing?: true;
  /** Of the partitions a round was asked to compare (`only`): those whose hashes were equal on both sides when it started. */
  same?: number[];
}

/**
 * Pause before the round that continues an incomplete one, in ms. A round lists up
 * to antiEntropyMaxKeys pairs, tens of ms of work on both sides; the pause lets
 * client requests through between rounds of a large repair, and keeps a difference
 * that cannot heal (records a peer refuses) from running rounds back to back.
 */
export const INCOMPLETE_ROUND_PAUSE_MS = 100;

/**
 * Our record against a peer's `keys` entry for the same key, in the merge order
 * (compareRecords) as far as the entry tells: by version, then by content hash
 * (computed only on a tie). An entry without a hash (a node that predates it)
 * counts as the same record on a tie. Negative when the peer's wins.
 */
export function compareListed(version: string, hash: () => string, theirs: KeysEntry): number {
  if (version !== theirs.version) return version < theirs.version ? -1 : 1;
  if (theirs.hash === undefined) return 0;
  // Both are 16 lowercase hex digits: string order is number order.
  const mine = hash();
  return mine === theirs.hash ? 0 : mine < theirs.hash ? -1 : 1;
}

/** A round or copy that ended because stop() was called. Never logged or counted as a failure. */
export class Stopped extends Error {
  constructor() {
    super("anti-entropy stopped");
    this.name = "Stopped";
  }
}
