import type { StoredRecord } from "./record.ts";
import type { ScanCursor, Store } from "./store.ts";

/**
 * Every record of `store` (tombstones and expiries included), or of one bucket, in
 * key order, in pages of at most `pageSize` scanned as the caller pulls them: what a
 * node's own dump is made of (ItemsService.dump).
 */
export function* dumpPages(store: Store, bucket: string | undefined, pageSize: number): Generator<StoredRecord[], void, undefined> {
  let after: ScanCursor | undefined = bucket === undefined ? undefined : { bucket, key: "" };
  for (;;) {
    const page = store.scan(after, pageSize);
    const inBucket = bucket === undefined ? page : page.filter((r) => r.bucket === bucket);
    if (inBucket.length > 0) yield inBucket;
    // A short page is the last; so is one that ran past the bucket.
    if (page.length < pageSize || inBucket.length < page.length) return;
    const last = page[page.length - 1]!;
    after = { bucket: last.bucket, key: last.key };
  }
}
