import { recordId, type RecordStamp, type StoredRecord } from "../core/record.ts";
import { hexHalves, recordSum, type Halves } from "../core/fingerprint.ts";
import { readVersionOf, versionRead } from "../core/version-numbers.ts";
import { PARTITIONS, partitionOfId } from "./placement.ts";

/**
 * The anti-entropy digest: a fingerprint of everything a node holds, cheap to
 * compare and cheap to keep current.
 *
 * Records are filed by (bucket, key) into LEAVES leaves; a leaf's hash is the XOR
 * of a 64-bit hash of (bucket, key, version, contents) of every record in it: the
 * contents through their contentHash (record.ts), so two replicas holding one
 * version with different values (two processes under one name) differ here, and
 * anti-entropy repairs them by the merge order. XOR makes the
 * update O(1) and order-free: a change XORs the old record's hash out and the new
 * one's in. Two nodes holding the same records have the same leaves, whatever order
 * the records arrived in. Leaves are grouped GROUP_SIZE to a group, so a comparison
 * first sends GROUPS group hashes (256 numbers, ~5 KB of JSON) and only then the
 * leaves of groups that differ: with 10 differing keys about 10 groups and 160
 * leaves cross the wire, not 4096.
 *
 * A group is exactly one partition (placement.ts): a record's leaf is
 * partition * GROUP_SIZE + 4 bits of a hash of its id. So a group hash is the
 * fingerprint of what a node holds of one partition, and anti-entropy can compare
 * one partition between two nodes, or confirm that a new owner holds all of it
 * before an old one drops it, by comparing one number. The digest also counts the
 * records of each partition, so "which partitions does this node hold" is 256
 * reads, not a scan.
 *
 * The digest also keeps which records sit in each leaf, so listing a differing leaf
 * costs the size of that leaf, not a scan of the store. A record is filed as its
 * member number (the store's id for it, Store.recordAt reads it), in a typed array
 * per leaf, and the digest keeps each member's place and leaf in typed arrays of
 * its own, so removal moves the last member into the place, O(1), and a change of
 * a record already filed hashes nothing but the new record. Beside each member, in
 * the same array, its share of the leaf as last told: a change XORs the old share
 * out without hashing the old record again. About 18 bytes per record, and no
 * object. Each 64-bit hash is kept as two 32-bit halves, XORed half by half: no
 * BigInt, which allocates on every operation, on the path of every write.
 *
 * A 64-bit hash collision (two different record sets with equal leaf XOR) would hide
 * a difference; at 2^-64 per leaf comparison it is not worth a second hash.
 */
export const GROUP_SIZE = 16;
/** One group per partition. */
export const GROUPS = PARTITIONS;
export const LEAVES = GROUPS * GROUP_SIZE;

/** The leaf of a record: its key's partition, then 4 bits of its id's hash. */
const leafOfId = (id: string): number => partitionOfId(id) * GROUP_SIZE + (Bun.hash.xxHash32(id) & (GROUP_SIZE - 1));

export const leafOf = (bucket: string, key: string): number => leafOfId(recordId(bucket, key));

/** The partition (group) a leaf belongs to. */
export const partitionOfLeaf = (leaf: number): number => Math.floor(leaf / GROUP_SIZE);

const ZERO_HASH = "0000000000000000";
/** Numbers per place in a leaf's slots: the member, its share's lo and hi. */
const STRIDE = 3;


export class Digest {
  /** Per leaf, its hash: lo at 2 × leaf, hi at 2 × leaf + 1. */
  private readonly leaves = new Uint32Array(2 * LEAVES);
  /**
   * Per leaf, its members and their shares as last told, three numbers a place
   * (member, share lo, share hi: one array, so a change touches one array of its
   * leaf, not two), grown by doubling; and how many members there are.
   */
  private readonly slots: Array<Uint32Array | undefined> = new Array(LEAVES);
  private readonly sizes = new Uint32Array(LEAVES);
  /** Per member: its place in its leaf + 1 (0: not filed), and its leaf. */
  private at = new Int32Array(0);
  private leafOf = new Uint16Array(0);
  /** Records held per partition (the members filed in its leaves). */
  private readonly counts = new Uint32Array(GROUPS);
  /** The records of the members `update` files, for callers without a store. */
  private readonly loose = new Map<string, number>();
  private readonly looseRecords: StoredRecord[] = [];

  /**
   * `records` reads what a member holds now (Store.recordAt); without it the digest
   * is fed by `update` and keeps the records itself (tests, tools).
   */
  constructor(private readonly records?: (member: number) => StoredRecord) {}

  /**
   * Follows one change of the record held for `id` (recordId) by `member`: the
   * Store's onChange. `sum` is the new record's recordSum (read, not kept),
   * undefined when the key is no longer held (a purge). O(1): one xxHash32 for a
   * member's first filing and a few XORs; the old record's share is the one kept
   * from its last change.
   */
  change(id: string, member: number, sum: Halves | undefined): void {
    const place = member < this.at.length ? this.at[member]! - 1 : -1;
    const leaves = this.leaves;
    if (place >= 0) {
      const leaf = this.leafOf[member]!;
      const slots = this.slots[leaf]!;
      const at = STRIDE * place;
      leaves[2 * leaf] = leaves[2 * leaf]! ^ slots[at + 1]!;
      leaves[2 * leaf + 1] = leaves[2 * leaf + 1]! ^ slots[at + 2]!;
      if (sum !== undefined) {
        slots[at + 1] = sum.lo;
        slots[at + 2] = sum.hi;
        leaves[2 * leaf] = leaves[2 * leaf]! ^ sum.lo;
        leaves[2 * leaf + 1] = leaves[2 * leaf + 1]! ^ sum.hi;
      } else {
        // Out: the last member takes its place.
        const last = --this.sizes[leaf]!;
        const moved = slots[STRIDE * last]!;
        if (moved !== member) {
          slots.copyWithin(at, STRIDE * last, STRIDE * last + STRIDE);
          this.at[moved] = place + 1;
        }
        this.at[member] = 0;
        this.counts[partitionOfLeaf(leaf)]!--;
      }
    } else if (sum !== undefined) {
      if (member >= this.at.length) this.grow(member + 1);
      const leaf = leafOfId(id);
      let slots = this.slots[leaf];
      const n = this.sizes[leaf]!;
      if (slots === undefined || STRIDE * n === slots.length) {
        const grown = new Uint32Array(STRIDE * Math.max(8, n * 2));
        if (slots !== undefined) grown.set(slots);
        this.slots[leaf] = slots = grown;
      }
      slots[STRIDE * n] = member;
      slots[STRIDE * n + 1] = sum.lo;
      slots[STRIDE * n + 2] = sum.hi;
      this.sizes[leaf] = n + 1;
      this.at[member] = n + 1;
      this.leafOf[member] = leaf;
      this.counts[partitionOfLeaf(leaf)]!++;
      leaves[2 * leaf] = leaves[2 * leaf]! ^ sum.lo;
      leaves[2 * leaf + 1] = leaves[2 * leaf + 1]! ^ sum.hi;
    }
  }

  /**
   * `change` from versions and contentHashes, for callers without a store (tests,
   * tools): the digest numbers the members itself. `prev` must be what was last
   * given as `next` for that key (the digest XORs out what it kept).
   */
  update(bucket: string, key: string, _prev: RecordStamp | undefined, next: RecordStamp | undefined): void {
    if (this.records !== undefined) throw new Error("Digest.update is for a digest without a store");
    const id = recordId(bucket, key);
    let member = this.loose.get(id);
    if (member === undefined) {
      member = this.looseRecords.length;
      this.loose.set(id, member);
      this.looseRecords.push({ bucket, key, value: null, version: "" });
    }
    if (next === undefined) this.loose.delete(id);
    if (next === undefined) return this.change(id, member, undefined);
    readVersionOf(next.version);
    const lo = Number(BigInt.asUintN(32, next.hash));
    this.change(id, member, recordSum(id, versionRead.wall, versionRead.stamp, lo, Number(next.hash >> 32n)));
  }

  private recordOf(member: number): StoredRecord {
    return this.records === undefined ? this.looseRecords[member]! : this.records(member);
  }

  /** The members of a leaf, as they are now (a copy). */
  private membersOf(leaf: number): number[] {
    const slots = this.slots[leaf];
    const out: number[] = [];
    for (let i = 0; i < this.sizes[leaf]!; i++) out.push(slots![STRIDE * i]!);
    return out;
  }

  private grow(n: number): void {
    const size = Math.max(n, 1024, Math.ceil(this.at.length * 1.5));
    const at = new Int32Array(size);
    at.set(this.at);
    this.at = at;
    const leafOf = new Uint16Array(size);
    leafOf.set(this.leafOf);
    this.leafOf = leafOf;
  }

  /** The XOR of the leaves of each group (partition), as hex strings (JSON has no 64-bit integers). */
  groupHashes(): string[] {
    const out: string[] = [];
    for (let g = 0; g < GROUPS; g++) out.push(this.groupHash(g));
    return out;
  }

  /** The hash of one group: what this node holds of partition `g`. */
  groupHash(g: number): string {
    let lo = 0;
    let hi = 0;
    for (let i = g * GROUP_SIZE; i < (g + 1) * GROUP_SIZE; i++) {
      lo ^= this.leaves[2 * i]!;
      hi ^= this.leaves[2 * i + 1]!;
    }
    return hexHalves(lo >>> 0, hi >>> 0);
  }

  /** How many records (live, expired, tombstones) of a partition this node holds. */
  partitionSize(partition: number): number {
    return this.counts[partition]!;
  }

  /** The partitions this node holds at least one record of, ascending. O(partitions). */
  heldPartitions(): number[] {
    const out: number[] = [];
    for (let p = 0; p < GROUPS; p++) if (this.counts[p]! > 0) out.push(p);
    return out;
  }

  /** The records held of a partition, as they are now (a copy). */
  recordsInPartition(partition: number): StoredRecord[] {
    const out: StoredRecord[] = [];
    for (let i = partition * GROUP_SIZE; i < (partition + 1) * GROUP_SIZE; i++) for (const m of this.membersOf(i)) out.push(this.recordOf(m));
    return out;
  }

  /** The leaf hashes of the given groups: GROUP_SIZE hex strings per group, in order. */
  leafHashes(groups: number[]): string[][] {
    return groups.map((g) => {
      const out: string[] = [];
      for (let i = g * GROUP_SIZE; i < (g + 1) * GROUP_SIZE; i++) out.push(hexHalves(this.leaves[2 * i]!, this.leaves[2 * i + 1]!));
      return out;
    });
  }

  /** The records held in a leaf, as they are now (a copy: the caller may change the store while it walks them). */
  recordsIn(leaf: number): StoredRecord[] {
    return this.membersOf(leaf).map((m) => this.recordOf(m));
  }

  /** The record ids (see recordId) in a leaf. */
  idsIn(leaf: number): string[] {
    return this.membersOf(leaf).map((m) => {
      const r = this.recordOf(m);
      return recordId(r.bucket, r.key);
    });
  }

  /** How many records a leaf holds. */
  leafSize(leaf: number): number {
    return this.sizes[leaf]!;
  }
}

/** The shape of a 64-bit hash on the wire: 16 hex digits (fingerprint.ts hexHalves; JSON has no 64-bit integers). */
export const HASH_HEX_PATTERN = /^[0-9a-f]{16}$/;

/** Whether a group hash is that of a partition a node holds nothing of (or records whose hashes cancel: 2^-64). */
export const isEmptyHash = (h: string | undefined): boolean => h === undefined || h === ZERO_HASH;

/** Indices where two equal-length lists differ. */
export function differing(a: readonly string[], b: readonly string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}
