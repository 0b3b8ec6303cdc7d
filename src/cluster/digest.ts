import { recordId, recordSum, type DigestMember, type RecordStamp, type StoredRecord } from "../core/record.ts";

/**
 * The anti-entropy digest: a fingerprint of everything a node holds, cheap to
 * compare and cheap to keep current.
 *
 * Records are hashed by (bucket, key) into LEAVES leaves; a leaf's hash is the XOR
 * of a 64-bit hash of (bucket, key, version, contents) of every record in it: the
 * contents through their contentHash (record.ts), so two replicas holding one
 * version with different values (two processes under one name) differ here, and
 * anti-entropy repairs them by the merge order. XOR makes the
 * update O(1) and order-free: a change XORs the old record's hash out and the new
 * one's in. Two nodes holding the same records have the same leaves, whatever order
 * the records arrived in. Leaves are grouped GROUP_SIZE to a group, so a comparison
 * first sends GROUPS group hashes (64 numbers) and only then the leaves of groups
 * that differ: with 10 differing keys about 10 groups and 640 leaves cross the wire,
 * not 4096.
 *
 * The digest also keeps which records sit in each leaf, so listing a differing leaf
 * costs the size of that leaf, not a scan of the store. That index is one array
 * slot per record: the store's own entry (DigestMember), which also keeps its
 * place in the array, so removal is a swap with the last, O(1).
 *
 * A 64-bit hash collision (two different record sets with equal leaf XOR) would hide
 * a difference; at 2^-64 per leaf comparison it is not worth a second hash.
 */
export const LEAVES = 4096;
export const GROUP_SIZE = 64;
export const GROUPS = LEAVES / GROUP_SIZE;

const leafOfId = (id: string): number => Bun.hash.xxHash32(id) & (LEAVES - 1);

export const leafOf = (bucket: string, key: string): number => leafOfId(recordId(bucket, key));


export class Digest {
  private readonly leaves = new BigUint64Array(LEAVES);
  private readonly members: Array<DigestMember[] | undefined> = new Array(LEAVES);
  /** The members `update` files for callers that keep none of their own. */
  private readonly loose = new Map<string, DigestMember>();

  /**
   * Follows one change of the record held for `id` (recordId), whose entry is
   * `held`: the Store's onChange. Each side is that record's recordSum, undefined
   * for none (a new key, a purge). O(1): one xxHash32 for the leaf and a few XORs.
   */
  change(id: string, held: DigestMember, prevSum: bigint | undefined, nextSum: bigint | undefined): void {
    const leaf = leafOfId(id);
    let h = this.leaves[leaf]!;
    if (prevSum !== undefined) h ^= prevSum;
    if (nextSum !== undefined) h ^= nextSum;
    this.leaves[leaf] = h;
    if (prevSum === undefined && nextSum !== undefined) {
      const list = (this.members[leaf] ??= []);
      held.digestAt = list.length;
      list.push(held);
    } else if (prevSum !== undefined && nextSum === undefined) {
      const list = this.members[leaf];
      const at = held.digestAt;
      if (list === undefined || list[at] !== held) return;
      const last = list.pop()!;
      if (last !== held) {
        list[at] = last;
        last.digestAt = at;
      }
      held.digestAt = -1;
    }
  }

  /**
   * `change` from versions and contentHashes, for callers without a store (tests,
   * tools): the digest files a member of its own per id.
   */
  update(bucket: string, key: string, prev: RecordStamp | undefined, next: RecordStamp | undefined): void {
    const id = recordId(bucket, key);
    let held = this.loose.get(id);
    if (held === undefined) this.loose.set(id, (held = { record: { bucket, key, value: null, version: "" }, digestAt: -1 }));
    if (next === undefined) this.loose.delete(id);
    this.change(id, held, prev && recordSum(id, prev.version, prev.hash), next && recordSum(id, next.version, next.hash));
  }

  /** The XOR of the leaves of each group, as hex strings (JSON has no 64-bit integers). */
  groupHashes(): string[] {
    const out: string[] = [];
    for (let g = 0; g < GROUPS; g++) {
      let h = 0n;
      for (let i = g * GROUP_SIZE; i < (g + 1) * GROUP_SIZE; i++) h ^= this.leaves[i]!;
      out.push(hex(h));
    }
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
    return this.recordsIn(leaf).map((r) => recordId(r.bucket, r.key));
  }

  /** How many records a leaf holds. */
  leafSize(leaf: number): number {
    return this.members[leaf]?.length ?? 0;
  }
}

/** A 64-bit hash as 16 hex digits (JSON has no 64-bit integers); HASH_HEX_PATTERN is its shape. */
export const hex = (h: bigint): string => h.toString(16).padStart(16, "0");
export const HASH_HEX_PATTERN = /^[0-9a-f]{16}$/;

/** Indices where two equal-length lists differ. */
export function differing(a: readonly string[], b: readonly string[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}
