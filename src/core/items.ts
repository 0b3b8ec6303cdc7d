import type { Clock } from "./clock.ts";
import type { ItemsOptions } from "./options.ts";
import { MakhzenError } from "../errors.ts";
import { BUCKET_NAME_RULE, BUCKET_PATTERN, compareRecords, DEFAULT_BUCKET, isDotName, toItem, type Item, type StoredRecord } from "./record.ts";
import { budgetBytes, heldBytesOf, type ListPage, type Store } from "./store.ts";
import { checkWellFormed } from "./text.ts";
import { base64Bytes, checkBase64, fromBytes } from "./binary.ts";
import { parseVersion, type Version } from "./version.ts";

export interface SetOptions {
  /** Seconds until the item expires; > 0. Turned into an absolute `expiresAt` here. */
  ttl?: number;
  /**
   * The absolute expiry, epoch ms, instead of `ttl`: what Redis's EXAT/PXAT and
   * KEEPTTL need. Must be in the future (a past one is the caller's delete, unless
   * `pastExpiryDeletes`) and within the longest TTL.
   */
  expiresAt?: number;
  /**
   * An `expiresAt` that has passed by the time the write is applied is taken, and
   * the key reads as gone at once (what Redis does with `SET k v PX 1`), instead
   * of the VALIDATION error HTTP answers. The RESP front end sets it: it computes
   * `expiresAt` from its own clock reading, and a later reading here (on the owner,
   * in a partitioned cluster) may already be past it. The record is written with
   * its past expiry, a new version like any write, so it replaces what the key
   * held everywhere; the sweep then turns it into a tombstone with that version,
   * as for any key that expires (Redis's replicas hold an expired key the same way).
   */
  pastExpiryDeletes?: boolean;
  /** Write only if the current version is exactly this one, or `*`: if the key exists (HTTP If-Match). */
  ifMatch?: string;
  /** Write only if the key holds no live value (HTTP If-None-Match: *). */
  ifAbsent?: boolean;
  /**
   * `value` is the canonical base64 of raw bytes, stored as a binary value (see
   * binary.ts: front ends pass it for bytes that are not UTF-8, from fromBytes).
   */
  bytes?: boolean;
}

/** One key of a multi-key write (checkBatch): a value to set, as `set` takes it, or none for a delete. */
export interface BatchWrite {
  key: string;
  value?: string;
  bytes?: boolean;
}

export interface DeleteOptions {
  ifMatch?: string;
}

export interface ListItemsOptions {
  prefix?: string;
  /** 1..1000, default 100. */
  limit?: number;
  /** Return keys after this one: the `next` of the previous page. */
  after?: string;
}

/** Longest TTL accepted, in seconds (about 317 years): keeps expiresAt a safe integer. */
export const MAX_TTL_SECONDS = 1e10;
export const MAX_LIST_LIMIT = 1000;
export const DEFAULT_LIST_LIMIT = 100;

/**
 * The write and read rules of the items API, shared by HTTP, the CLI and embedding:
 * validation of names and sizes, conditional writes, TTL → expiresAt, versioning.
 * `onWrite` sees every record this node originates (the hook replication uses);
 * `mayWrite` throws when the node may not write now (its clock is fenced, its name
 * taken: see Cluster.checkWritable), before anything is stamped.
 * Conditions are checked against this replica only.
 */
export class Items {
  /** The longest value, in bytes (--max-value-bytes). */
  get maxValueBytes(): number {
    return this.config.maxValueBytes;
  }

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly config: ItemsOptions,
    private readonly onWrite: (record: StoredRecord) => void = () => {},
    private readonly mayWrite: () => void = () => {},
  ) {}

  get(bucket: string, key: string): Item | undefined {
    this.checkBucket(bucket);
    this.checkKey(key);
    const r = this.store.get(bucket, key);
    return r && toItem(r);
  }

  /** A cached view of the live item (see Store.getView); for the HTTP hot path. */
  getView<T>(bucket: string, key: string, build: (r: StoredRecord) => T): T | undefined {
    this.checkBucket(bucket);
    this.checkKey(key);
    return this.store.getView(bucket, key, build);
  }

  /**
   * Every check `set` makes of its arguments, writing nothing and reading no record:
   * a write forwarded to the key's owner is checked here first (RoutedItems.set), so
   * it is refused as a local one is, not stored as what JSON made of it.
   */
  checkSet(bucket: string, key: string, value: string, opts: SetOptions = {}): void {
    this.checkBucket(bucket);
    this.checkKey(key);
    if (typeof value !== "string") throw new MakhzenError("VALIDATION", "value must be a string");
    this.checkValue("value", value, opts.bytes === true);
    const ttl = opts.ttl;
    if (ttl !== undefined && !(typeof ttl === "number" && ttl > 0 && ttl <= MAX_TTL_SECONDS)) {
      throw new MakhzenError("VALIDATION", `ttl must be a number of seconds > 0 and <= ${MAX_TTL_SECONDS}`);
    }
    if (opts.expiresAt !== undefined) this.checkExpiresAt(opts.expiresAt, ttl, opts.pastExpiryDeletes === true);
  }

  set(bucket: string, key: string, value: string, opts: SetOptions = {}): Item {
    this.checkSet(bucket, key, value, opts);
    const { ttl, expiresAt } = opts;
    const bytes = opts.bytes === true;
    this.checkConditions(bucket, key, opts.ifMatch, opts.ifAbsent);
    this.mayWrite();
    // Naming the key lets the store count only the growth over the record it replaces.
    if (this.store.budgeted) this.store.reserve(budgetOf(key, value), bucket, key);
    const record: StoredRecord = { bucket, key, value, version: this.clock.now() };
    if (bytes) record.bytes = true;
    if (ttl !== undefined) record.expiresAt = this.clock.wallMs() + Math.max(1, Math.round(ttl * 1000));
    else if (expiresAt !== undefined) record.expiresAt = expiresAt;
    this.applyLocal(record);
    this.onWrite(record);
    return toItem(record);
  }

  /**
   * Checks a multi-key write (MSET, MSETNX, DEL...) before any of it is applied, so
   * a refused one changes nothing: every key and value as `set` and `delete` check
   * them, then, for the keys written on this node (`here`; in a partitioned cluster
   * the others are written by their owners, which check their own memory), whether
   * the node may write, and room under --max-memory for all the values at once:
   * each key's growth over the live value it replaces, a key named twice counted
   * once, at its last value. The writes that follow in the same synchronous step
   * then each fit (under noeviction nothing else runs in between to take the room;
   * under lru each still makes its own room, as a single write does).
   */
  checkBatch(bucket: string, writes: readonly BatchWrite[], here: (key: string) => boolean = () => true): void {
    this.checkBucket(bucket);
    for (const w of writes) {
      this.checkKey(w.key);
      if (w.value !== undefined) {
        if (typeof w.value !== "string") throw new MakhzenError("VALIDATION", "value must be a string");
        this.checkValue("value", w.value, w.bytes === true);
      }
    }
    if (!writes.some((w) => here(w.key))) return;
    this.mayWrite();
    if (!this.store.budgeted) return;
    const last = new Map<string, string>();
    for (const w of writes) if (w.value !== undefined && here(w.key)) last.set(w.key, w.value);
    let growth = 0;
    for (const [key, value] of last) {
      const held = this.store.getRecord(bucket, key);
      growth += budgetOf(key, value) - (held !== undefined && held.value !== null ? budgetOf(key, held.value) : 0);
    }
    if (growth > 0) this.store.reserve(growth, bucket); // the bucket's own cost too, when it is new
  }

  /**
   * Applies a local write or delete. One the store does not take means it holds a
   * record of the key stamped at or past this node's clock, which the clock should
   * have seen (a process under the same name, say). Rather than answer a version the
   * store does not hold, the record is stamped past that one and applied again; a
   * second refusal is a bug, answered as an internal error.
   */
  private applyLocal(record: StoredRecord): void {
    if (this.store.apply(record)) return;
    const held = this.store.getRecord(record.bucket, record.key);
    if (held !== undefined) this.clock.observe(held.version);
    record.version = this.clock.now();
    if (!this.store.apply(record)) throw new Error(`the write of "${record.key.slice(0, 200)}" was not taken by the store`);
  }

  /**
   * Writes a tombstone and returns its version (what a `w=` delete waits for), or
   * undefined, writing nothing, when the key holds no live value.
   */
  delete(bucket: string, key: string, opts: DeleteOptions = {}): Version | undefined {
    this.checkBucket(bucket);
    this.checkKey(key);
    this.checkConditions(bucket, key, opts.ifMatch, false);
    this.mayWrite(); // before the existence check: a fenced node says so, not 404
    if (!this.store.get(bucket, key)) return undefined;
    const record: StoredRecord = { bucket, key, value: null, version: this.clock.now() };
    this.applyLocal(record);
    this.onWrite(record);
    return record.version;
  }

  /**
   * Merges a record that already has a version (`makhzen load`): checked like a
   * write, merged last-writer-wins, and replicated like a local write when it wins.
   * Returns false when the store already held that version or a newer one.
   */
  importRecord(given: StoredRecord, refusesVersion: (version: Version, bucket: string, key: string) => boolean): boolean {
    this.checkBucket(given.bucket);
    this.checkKey(given.key);
    // Before the version comparison: a bad value is refused whether or not it would win.
    if (given.value !== null) this.checkValue(`value of ${JSON.stringify(given.key)}`, given.value, given.bytes === true);
    else if (given.bytes !== undefined) throw new MakhzenError("VALIDATION", `tombstone of ${JSON.stringify(given.key)} is marked as bytes`);
    // Bytes that are UTF-8 are text, whichever way they came (binary.ts): a record marked
    // as bytes holding UTF-8 was kept as bytes, served as base64 and refused as text/plain.
    const record = given.bytes === true && given.value !== null ? asStored(given, given.value) : given;
    if (!parseVersion(record.version)) throw new MakhzenError("VALIDATION", `version ${JSON.stringify(record.version)} is not a version`);
    this.mayWrite();
    // The cluster's rule for records from elsewhere (remote-records.ts), so a load takes
    // exactly what replication would: not a record its peers would refuse.
    if (refusesVersion(record.version, record.bucket, record.key)) {
      throw new MakhzenError("VALIDATION", `version ${record.version} is more than --max-clock-offset ahead of the cluster's clock`);
    }
    if (record.expiresAt !== undefined && record.expiresAt > this.clock.wallMs() + MAX_TTL_SECONDS * 1000) {
      throw new MakhzenError("VALIDATION", `expiresAt ${record.expiresAt} is further away than the longest TTL (${MAX_TTL_SECONDS} s)`);
    }
    // A record that would lose to what the store holds changes nothing: check that
    // before making room, so a reload under lru does not evict keys for nothing.
    const held = this.store.getRecord(record.bucket, record.key);
    if (held && compareRecords(held, record) >= 0) return false;
    if (record.value !== null && this.store.budgeted) {
      this.store.reserve(budgetOf(record.key, record.value), record.bucket, record.key);
    }
    this.clock.observe(record.version);
    if (!this.store.apply(record)) return false;
    this.onWrite(record);
    return true;
  }

  /** This node's wall clock, epoch ms: what `expiresAt` is measured against (a TTL is expiresAt minus this). */
  wallMs(): number {
    return this.clock.wallMs();
  }

  list(bucket: string, opts: ListItemsOptions = {}): ListPage {
    this.checkBucket(bucket);
    const limit = opts.limit ?? DEFAULT_LIST_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
      throw new MakhzenError("VALIDATION", `limit must be an integer from 1 to ${MAX_LIST_LIMIT}`);
    }
    return this.store.list(bucket, { prefix: opts.prefix, after: opts.after, limit });
  }

  private checkConditions(bucket: string, key: string, ifMatch: string | undefined, ifAbsent: boolean | undefined): void {
    if (ifMatch === undefined && !ifAbsent) return;
    const current = this.store.get(bucket, key);
    if (ifAbsent && current) {
      throw new MakhzenError("PRECONDITION_FAILED", `key exists (version ${current.version})`);
    }
    if (ifMatch === "*") {
      if (!current) throw new MakhzenError("PRECONDITION_FAILED", "key does not exist");
    } else if (ifMatch !== undefined && current?.version !== ifMatch) {
      throw new MakhzenError(
        "PRECONDITION_FAILED",
        current ? `current version is ${current.version}, not ${ifMatch}` : "key does not exist",
      );
    }
  }

  /** A past expiresAt is refused unless `pastOk` (SetOptions.pastExpiryDeletes): the record is then written already expired. */
  private checkExpiresAt(expiresAt: number, ttl: number | undefined, pastOk: boolean): void {
    if (ttl !== undefined) throw new MakhzenError("VALIDATION", "give ttl or expiresAt, not both");
    const now = this.clock.wallMs();
    if (!Number.isSafeInteger(expiresAt) || (expiresAt <= now && !(pastOk && expiresAt > 0)) || expiresAt > now + MAX_TTL_SECONDS * 1000) {
      throw new MakhzenError("VALIDATION", `expiresAt must be an integer epoch ms in the future and at most ${MAX_TTL_SECONDS} s away`);
    }
  }

  private checkBucket(bucket: string): void {
    if (bucket !== DEFAULT_BUCKET) checkBucketName(bucket); // the default: the hot path, /items/...
  }

  /** At most maxValueBytes of UTF-8, and well-formed (see text.ts); or, as `bytes`, canonical base64 of at most maxValueBytes. */
  private checkValue(what: string, value: string, bytes: boolean): void {
    if (bytes) {
      checkBase64(what, value);
      const n = base64Bytes(value);
      if (n > this.config.maxValueBytes) throw new MakhzenError("VALUE_TOO_LARGE", `${what} is ${n} bytes; the limit is ${this.config.maxValueBytes}`);
      return;
    }
    // value.length is a lower bound of the UTF-8 size; skip the exact count when it cannot exceed.
    if (value.length * 3 > this.config.maxValueBytes) {
      const bytes = Buffer.byteLength(value, "utf8");
      if (bytes > this.config.maxValueBytes) {
        throw new MakhzenError("VALUE_TOO_LARGE", `${what} is ${bytes} bytes; the limit is ${this.config.maxValueBytes}`);
      }
    }
    checkWellFormed(what, value);
  }

  private checkKey(key: string): void {
    if (typeof key !== "string" || key.length === 0) throw new MakhzenError("INVALID_KEY", "key must not be empty");
    // A URL path cannot name them: /items/%2E%2E is the root after dot-segment removal (RFC 3986 5.2.4).
    if (key.length <= 2 && isDotName(key)) throw new MakhzenError("INVALID_KEY", `key must not be "." or "..": a URL path cannot name it`);
    // key.length is a lower bound of the UTF-8 size; skip the exact count when it cannot exceed.
    if (key.length * 3 > this.config.maxKeyBytes) {
      const bytes = Buffer.byteLength(key, "utf8");
      if (bytes > this.config.maxKeyBytes) {
        throw new MakhzenError("KEY_TOO_LARGE", `key is ${bytes} bytes; the limit is ${this.config.maxKeyBytes}`);
      }
    }
    checkWellFormed("key", key);
  }
}

/** What a key and its value count against --max-memory. */
const budgetOf = (key: string, value: string): number => budgetBytes(heldBytesOf(key, value));

/** A record marked as bytes, in its stored form: text when its bytes are UTF-8 (fromBytes). */
function asStored(record: StoredRecord, b64: string): StoredRecord {
  const { bytes: _, ...rest } = record;
  const stored = fromBytes(Buffer.from(b64, "base64"));
  return stored.bytes ? record : { ...rest, value: stored.value };
}

/** Throws INVALID_BUCKET unless `bucket` is a bucket's name (BUCKET_PATTERN, and not a dot segment). */
export function checkBucketName(bucket: unknown): void {
  if (typeof bucket === "string" && BUCKET_PATTERN.test(bucket)) return;
  if (typeof bucket === "string" && isDotName(bucket)) throw new MakhzenError("INVALID_BUCKET", `bucket must not be "." or "..": a URL path cannot name it`);
  throw new MakhzenError("INVALID_BUCKET", `bucket name must match ${BUCKET_NAME_RULE}`);
}
