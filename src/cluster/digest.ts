import { recordId, recordSum, type DigestMember, type RecordStamp, type StoredRecord } from "../core/record.ts";
import { PARTITIONS, partitionOf } from "./placement.ts";

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
 * costs the size of that leaf, not a scan of the store. That index is one array
 * slot per record: the store's own entry (DigestMember), which also keeps its
 * place in the array, so removal is a swap with the last, O(1). Beside it, in a
 * typed array at the same place, the record's share of the leaf as last told: a
 * change XORs it out without hashing the old record again, and it costs 8 bytes
 * (a BigInt kept on the entry was a 32-byte cell of its own per record).
 *
 * A 64-bit hash collision (two different record sets with equal leaf XOR) would hide
 * a difference; at 2^-64 per leaf comparison it is not worth a second hash.
 */
export const GROUP_SIZE = 16;
/** One group per partition. */
export const GROUPS = PARTITIONS;
export const LEAVES = GROUPS * GROUP_SIZE;

/** The leaf of a record: its key's partition, then 4 bits of its id's hash. */
const leafOfKey = (id: string, key: string): number => partitionOf(key) * GROUP_SIZE + (Bun.hash.xxHash32(id) & (GROUP_SIZE - 1));

export const leafOf = (bucket: string, key: string): number => leafOfKey(recordId(bucket, key), key);

/** The partition (group) a leaf belongs to. */
export const partitionOfLeaf = (leaf: number): number => Math.floor(leaf / GROUP_SIZE);

const ZERO_HASH = "0000000000000000";


export class Digest {
  private readonly leaves = new BigUint64Array(LEAVES);
  private readonly members: Array<DigestMember[] | undefined> = new Array(LEAVES);
  /** Per leaf, the share of each member (at its digestAt), as last told; grown by doubling. */
  private readonly sums: Array<BigUint64Array | undefined> = new Array(LEAVES);
  /** The members `update` files for callers that keep none of their own. */
  private readonly loose = new Map<string, DigestMember>();
  /** Records held per partition (the members filed in its leaves). */
  private readonly counts = new Uint32Array(GROUPS);

  /**
   * Follows one change of the record held for `id` (recordId), whose entry is
   * `held`: the Store's onChange. `sum` is the new record's recordSum, undefined
   * when the key is no longer held (a purge). O(1): one xxHash32 for the leaf and
   * a few XORs; the old record's share is the one kept from its last change.
   */
  change(id: string, held: DigestMember, sum: bigint | undefined): void {
    const leaf = leafOfKey(id, held.key);
    const list = this.members[leaf];
    const at = held.digestAt;
    let h = this.leaves[leaf]!;
    if (list !== undefined && at >= 0 && list[at] === held) {
      const sums = this.sums[leaf]!;
      h ^= sums[at]!;
      if (sum !== undefined) {
        sums[at] = sum;
        h ^= sum;
      } else {
        // Out: the last member takes its place, in both arrays.
        const last = list.pop()!;
        const lastSum = sums[list.length]!;
        this.counts[partitionOfLeaf(leaf)]!--;
        if (last !== held) {
          list[at] = last;
          sums[at] = lastSum;
          last.digestAt = at;
        }
        held.digestAt = -1;
      }
    } else if (sum !== undefined) {
      const members = (this.members[leaf] ??= []);
      let sums = this.sums[leaf];
      if (sums === undefined || sums.length === members.length) {
        const grown = new BigUint64Array(Math.max(8, members.length * 2));
        if (sums !== undefined) grown.set(sums);
        this.sums[leaf] = sums = grown;
      }
      held.digestAt = members.length;
      sums[members.length] = sum;
      members.push(held);
      this.counts[partitionOfLeaf(leaf)]!++;
      h ^= sum;
    }
    this.leaves[leaf] = h;
  }

  /**
   * `change` from versions and contentHashes, for callers without a store (tests,
   * tools): the digest files a member of its own per id. `prev` must be what was
   * last given as `next` for that key (the digest XORs out what it kept).
   */
  update(bucket: string, key: string, _prev: RecordStamp | undefined, next: RecordStamp | undefined): void {
    const id = recordId(bucket, key);
    let held = this.loose.get(id);
    if (held === undefined) this.loose.set(id, (held = { bucket, key, record: { bucket, key, value: null, version: "" }, digestAt: -1 }));
    if (next === undefined) this.loose.delete(id);
    this.change(id, held, next && recordSum(id, next.version, next.hash));
  }

  /** The XOR of the leaves of each group (partition), as hex strings (JSON has no 64-bit integers). */
  groupHashes(): string[] {
    const out: string[] = [];
    for (let g = 0; g < GROUPS; g++) out.push(this.groupHash(g));
    return out;
  }

  /** The hash of one group: what this node holds of partition `g`. */
  groupHash(g: number): string {
    let h = 0n;
    for (let i = g * GROUP_SIZE; i < (g + 1) * GROUP_SIZE; i++) h ^= this.leaves[i]!;
    return hex(h);
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
    for (let i = partition * GROUP_SIZE; i < (partition + 1) * GROUP_SIZE; i++) for (const m of this.members[i] ?? []) out.push(m.record);
    return out;
  }

  /** The leaf hashes of the given groups: GROUP_SIZE hex strings per group, in order. */
  leafHashes(groups: number[]): string[][] {
    return groups.map((g) => {
      const out: string[] = [];
      for (let i = g * GROUP_SIZE; i < (g + 1) * GROUP_SIZE; i++) out.push(hex(this.leaves[i]!));
      return out;
    });
  }

  /** The records held in a leaf, as they are now (a copy: the caller may change the store while it walks them). */
  recordsIn(leaf: number): StoredRecord[] {
    return this.members[leaf]?.map((m) => m.record) ?? [];
  }

  /** The record ids (see recordId) in a leaf. */
  idsIn(leaf: number): string[] {
    return this.members[leaf]?.map((m) => recordId(m.bucket, m.key)) ?? [];
  }

  /** How many records a leaf holds. */
  leafSize(leaf: number): number {
    return this.members[leaf]?.length ?? 0;
  }
}

/** A 64-bit hash as 16 hex digits (JSON has no 64-bit integers); HASH_HEX_PATTERN is its shape. */
export const hex = (h: bigint): string => h.toString(16).padStart(16, "0");
export const HASH_HEX_PATTERN = /^[0-9a-f]{16}$/;

/** Whether a group hash is that of a partition a node holds nothing of (or records whose hashes cancel: 2^-64). */
export const isEmptyHash = (h: string | undefined): boolean => h === undefined || h === ZERO_HASH;

/** Indices where two equal-length lists differ. */
export function differing(a: readonly string[], b: readonly string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}
