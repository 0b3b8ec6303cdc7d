import type { LruLinks } from "./lru.ts";
import type { DigestMember, StoredRecord } from "./record.ts";
import { COUNTER_DIGITS, WALL_DIGITS, type Version } from "./version.ts";

/**
 * What the Store keeps per key, in as few bytes as JavaScriptCore allows.
 *
 * A record as the rest of the code sees it (StoredRecord) is an object of its own
 * (~48 bytes) holding a version string (~88 bytes flat, ~145 as the rope a
 * concatenation makes). At a million keys those two were a third of the store's
 * memory (docs/benchmarks.md, Issue 13, section 8). So the store does not keep
 * them: the entry holds the record's fields itself, and its version as two
 * numbers, the wall-clock milliseconds and a `stamp` (the counter and the number
 * of the node name, interned once per process). A number in a field costs the
 * field's 8 bytes and nothing else. Eight fields make an 80-byte object; each
 * further field costs 8 more, and 16 past a multiple of 16 (the cell sizes).
 *
 * A StoredRecord is built when one is asked for (`record`: a fresh object each
 * time, equal to the one applied) and the version string formatted then. The
 * share of the digest is kept by the digest (cluster/digest.ts), the cached view
 * by the ViewCache's own map, and the LRU links are added only by the lists that
 * use them (under `lru`, or as a tombstone), so none of them costs an entry
 * without them anything.
 *
 * A version that is not well-formed (tests, tools) is kept whole: `wallMs` is
 * RAW and `stamp` the number of the string in the interned table; it compares
 * and formats as the string it was.
 */
export class StoreEntry implements LruLinks, DigestMember {
  declare lruPrev?: LruLinks;
  declare lruNext?: LruLinks;
  declare lruLinked?: boolean;
  readonly bucket: string;
  readonly key: string;
  value: string | null;
  /** The version's wall-clock milliseconds, or RAW (see above). */
  wallMs: number;
  /** The version's counter × NODE_SPAN + the number of its node name (see nodeName). */
  stamp: number;
  expiresAt: number | undefined;
  /** The value is the base64 of raw bytes (StoredRecord.bytes). */
  bytes: true | undefined;
  /** Where the digest filed it; -1 while it is not in the digest. */
  digestAt: number;

  constructor(r: StoredRecord) {
    this.bucket = r.bucket;
    this.key = r.key;
    this.value = r.value;
    this.wallMs = 0;
    this.stamp = 0;
    this.expiresAt = r.expiresAt;
    this.bytes = r.bytes;
    this.digestAt = -1;
    this.setVersion(r.version);
  }

  /** Takes the contents and version of `r` (a record of the same key). */
  take(r: StoredRecord): void {
    this.value = r.value;
    this.expiresAt = r.expiresAt;
    this.bytes = r.bytes;
    this.setVersion(r.version);
  }

  /** The record held, as a fresh StoredRecord (what every reader outside the store gets). */
  get record(): StoredRecord {
    const r: StoredRecord = { bucket: this.bucket, key: this.key, value: this.value, version: this.version };
    if (this.expiresAt !== undefined) r.expiresAt = this.expiresAt;
    if (this.bytes === true) r.bytes = true;
    return r;
  }

  /** The version string, formatted from its numbers. */
  get version(): Version {
    const wall = this.wallMs;
    if (wall === RAW) return nodeNames[this.stamp]!;
    if (wall !== prefixOf) {
      prefixOf = wall;
      prefix = `${String(wall).padStart(WALL_DIGITS, "0")}-`;
    }
    const c = String(Math.floor(this.stamp / NODE_SPAN));
    return `${prefix}${c.length < COUNTER_DIGITS ? COUNTER_PAD.slice(c.length) : ""}${c}-${nodeNames[this.stamp % NODE_SPAN]}`;
  }

  /** The wall-clock milliseconds of the version (what ages a tombstone). */
  get versionWallMs(): number {
    return this.wallMs === RAW ? Number(this.version.slice(0, WALL_DIGITS)) : this.wallMs;
  }

  /**
   * Compares the version held with `v`, as the strings compare (version order):
   * negative when the one held is older. A version read by `setVersion` compares
   * by its numbers, with no string built.
   */
  compareVersion(v: Version): number {
    if (this.wallMs !== RAW && readVersion(v)) {
      if (this.wallMs !== readWall) return this.wallMs < readWall ? -1 : 1;
      const c = Math.floor(this.stamp / NODE_SPAN) - Math.floor(readStamp / NODE_SPAN);
      if (c !== 0) return c;
      const a = nodeNames[this.stamp % NODE_SPAN]!;
      const b = nodeNames[readStamp % NODE_SPAN]!;
      return a === b ? 0 : a < b ? -1 : 1;
    }
    const held = this.version;
    return held === v ? 0 : held < v ? -1 : 1;
  }

  private setVersion(v: Version): void {
    if (readVersion(v)) {
      this.wallMs = readWall;
      this.stamp = readStamp;
    } else {
      this.wallMs = RAW;
      this.stamp = nameNumber(v);
    }
  }
}

/** Node numbers are below this; a counter is below 10^6 < 2^20, so a stamp is below 2^44: exact in a double. */
const NODE_SPAN = 2 ** 24;
/** `wallMs` of a version kept whole (not well-formed). */
const RAW = -1;
const COUNTER_PAD = "0".repeat(COUNTER_DIGITS);

/**
 * Node names (and the odd malformed version) by number, for the life of the
 * process: a version keeps its name's number. Names are few (the members a cluster
 * ever had); past NODE_SPAN of them a version is kept whole.
 */
const nodeNames: string[] = [];
const nodeNumbers = new Map<string, number>();

function nameNumber(name: string): number {
  let n = nodeNumbers.get(name);
  if (n === undefined) {
    n = nodeNames.length;
    nodeNames.push(name);
    nodeNumbers.set(name, n);
  }
  return n;
}

/** The wall-clock prefix last formatted (`version`): writes of one millisecond share it. */
let prefixOf = -1;
let prefix = "";

/** What readVersion read last (`read`, and whether it was well-formed): no object per version read. */
let read: string | undefined;
let readOk = false;
let readWall = 0;
let readStamp = 0;

/**
 * Reads a well-formed version (`wallMs-counter-node`, VERSION_PATTERN's digits and
 * dashes) into readWall and readStamp; false for anything else, which is then kept
 * whole. A digit loop, not Number() of a slice: Number() would take " 12", "0x1"
 * or "1e5", which the pattern does not. The version a merge compares is the one
 * it then takes: read once.
 */
function readVersion(v: string): boolean {
  if (v === read) return readOk;
  read = v;
  readOk = false;
  const at = WALL_DIGITS + 1 + COUNTER_DIGITS + 1;
  if (v.length <= at || v.charCodeAt(WALL_DIGITS) !== DASH || v.charCodeAt(at - 1) !== DASH) return false;
  let wall = 0;
  for (let i = 0; i < WALL_DIGITS; i++) {
    const d = v.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return false;
    wall = wall * 10 + d;
  }
  let counter = 0;
  for (let i = WALL_DIGITS + 1; i < at - 1; i++) {
    const d = v.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return false;
    counter = counter * 10 + d;
  }
  const node = nameNumber(v.slice(at));
  if (node >= NODE_SPAN) return false;
  readWall = wall;
  readStamp = counter * NODE_SPAN + node;
  return (readOk = true);
}

const DASH = 45;
const ZERO = 48;
