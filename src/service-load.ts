import type { StoredRecord } from "./core/record.ts";

/** What a load did: records merged, and records skipped because this node held them or newer. */
export interface LoadCounts {
  loaded: number;
  skipped: number;
  /** Set when the data dir did not take everything loaded (a full disk): it is applied in memory, not all durable. */
  notDurable?: true;
}

/**
 * Merges records that already carry versions (a dump), in order (ItemsService.load):
 * `importRecord` checks each like a write, refuses it when its version is too far
 * ahead of the cluster's clock (the rule replication applies), merges it
 * last-writer-wins, replicates it when it wins, and says whether it was taken.
 * `counts` is filled as it goes, so a caller whose load fails (a bad record, or an
 * error thrown by `records` itself) knows how many came before; what came before
 * stands. Resolves, or rejects, only once what was loaded is durable (`durable`).
 */
export async function loadRecords(
  records: AsyncIterable<StoredRecord> | Iterable<StoredRecord>,
  counts: LoadCounts,
  importRecord: (record: StoredRecord) => boolean,
  durable: (() => Promise<void>) | undefined,
): Promise<LoadCounts> {
  let failure: unknown;
  try {
    for await (const record of records) {
      if (importRecord(record)) counts.loaded++;
      else counts.skipped++;
    }
  } catch (e) {
    failure = e;
  }
  // Under fsync=always, loaded records (those before a bad one too) are on disk before anyone is told.
  // When the disk refuses them, the record that stopped the load is still the error (it was not applied:
  // the durability failure replaced it, and named a line never applied), and the counts say what is not durable.
  try {
    await durable?.();
  } catch (e) {
    counts.notDurable = true;
    if (failure === undefined) throw e;
  }
  if (failure !== undefined) throw failure;
  return counts;
}
