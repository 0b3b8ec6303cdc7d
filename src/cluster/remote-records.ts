import type { Clock } from "../core/clock.ts";
import type { ClockGuard } from "./clock-guard.ts";
import { recordId, type StoredRecord } from "../core/record.ts";
import type { Store } from "../core/store.ts";
import { versionWallMs, WALL_DIGITS } from "../core/version.ts";
import { isBytesRecord } from "../core/binary.ts";

export interface RemoteRecordsDeps {
  store: Store;
  clock: Clock;
  guard: ClockGuard;
}

/**
 * Merges records from a peer (replication, anti-entropy, read repair). Returns how
 * many changed the store, and the indices of those this node does not hold within
 * bounds (`tooNew`), which a sender must not count as acknowledged:
 *  - a record stamped more than --max-clock-offset ahead of the cluster's clock (or
 *    one refused so before) is refused (clock-guard.ts says for how long), and the
 *    clock never sees it;
 *  - a record older than what this node holds, when what it holds is itself stamped
 *    that far ahead (this node wrote it in the moment before its fence went up):
 *    acknowledging it would count a replica whose copy will not survive.
 * Records from peers skip the memory reservation of local writes (a replica must
 * take what its peers took) and are not replicated again (every node sends its own
 * writes to every peer; anti-entropy covers the rest). They arrive validated
 * (WireRecordTuple or WireRecord: no other property, a version of VERSION_PATTERN),
 * so they are stored as they are.
 */
export function applyRemote(records: StoredRecord[], deps: RemoteRecordsDeps): { applied: number; tooNew: number[] } {
  const { store, clock, guard } = deps;
  const latestMs = guard.latestAcceptableMs();
  const tooNewFrom = firstVersionAfter(latestMs);
  let applied = 0;
  const tooNew: number[] = [];
  let newest = "";
  // The refusal memory is asked only while it holds something: the key's id is a
  // string built per record, and a node whose clocks agree never refuses one.
  const anyRefused = guard.remembersRefusals;
  try {
    // A batch is in no record order: a bucket's tombstone may come before its live key (Store.unordered).
    store.unordered(() => {
      for (let i = 0; i < records.length; i++) {
        const r = records[i]!;
        // No edge stores a string without a UTF-8 form (text.ts); one pulled from a peer
        // of another version is left out too, rather than stored and served changed.
        if (!r.key.isWellFormed() || (r.value !== null && !r.value.isWellFormed())) continue;
        if (r.bytes !== undefined && !isBytesRecord(r)) continue;
        if (r.version >= tooNewFrom || (anyRefused && guard.wasRefused(recordId(r.bucket, r.key), r.version))) {
          guard.refuse(recordId(r.bucket, r.key), r.version);
          tooNew.push(i);
          continue;
        }
        if (r.version > newest) newest = r.version;
        if (store.apply(r)) {
          applied++;
          continue;
        }
        const held = store.getRecord(r.bucket, r.key);
        if (held && held.version > r.version && versionWallMs(held.version) > latestMs) tooNew.push(i);
      }
    });
  } finally {
    // The clock only needs the newest version of the batch to move past all of them;
    // past whatever was applied even when a record throws, so no later local write
    // is stamped below a record this node already holds.
    if (newest !== "") clock.observe(newest);
  }
  return { applied, tooNew };
}

/**
 * The least version string stamped after `ms`: a version's wall clock comes first,
 * in WALL_DIGITS digits (VERSION_PATTERN), so `version >= firstVersionAfter(ms)`
 * exactly when versionWallMs(version) > ms. A string comparison per record instead
 * of a substring and a number parsed (~25 ns of every replicated record, on every
 * replica). "~" sorts after every digit: nothing is after a bound past the last
 * stamp (or NaN, as `>` says); "" before everything: all is after a negative one.
 */
export function firstVersionAfter(ms: number): string {
  const next = Math.floor(ms) + 1;
  if (!(next < 10 ** WALL_DIGITS)) return "~";
  if (next <= 0) return "";
  return String(next).padStart(WALL_DIGITS, "0");
}
