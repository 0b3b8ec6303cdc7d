import type { Logger } from "../ops/log.ts";
import type { StoredRecord } from "../core/record.ts";
import type { ClusterConfig } from "./options.ts";
import type { PeerTransport } from "./protocol/peer-ops.ts";

/** What a Replicator (replicator.ts) is built with. */

export type ReplicatorConfig = Pick<ClusterConfig, "requestTimeoutMs" | "backoffBaseMs" | "backoffMaxMs" | "queueMaxRecords" | "queueMaxBytes" | "batchMaxRecords" | "batchMaxBytes" | "maxInflightBatches">;

export interface ReplicatorDeps {
  transport: PeerTransport;
  config: ReplicatorConfig;
  /**
   * The peer missed records that only anti-entropy can bring it now: its queue
   * passed a bound and was dropped, or it refuses us (a secret or protocol mismatch).
   */
  onOverflow: (peer: string) => void;
  /** The peer does not hold these records within its clock bounds (the `tooNew` of its answer). */
  onNotHeld?: (records: StoredRecord[]) => void;
  /**
   * What the store holds for a key now, tombstones included (Store.getRecord). A
   * queued record is checked against it when it is taken into a batch: a newer
   * record goes instead, and nothing goes for a key the store has purged (see
   * takeBatch). Absent: records go as they were queued.
   */
  current?: (bucket: string, key: string) => StoredRecord | undefined;
  /**
   * The owner calls `storeChanged` for every change of the store (createCore's
   * onChange hook), so a write filed by `enqueueWritten` needs no lookup when taken
   * (Outgoing.current). Absent: every record is looked up.
   */
  changesReported?: boolean;
  /** Wall clock, in ms: stamps when each record was queued (for the oldest-age metric). */
  wallMs: () => number;
  /** How long a sender under load lets its queue fill, in ms (see afterBatch). Default BATCH_LINGER_MS; tests stretch it. */
  lingerMs?: number;
  logger?: Logger;
}
