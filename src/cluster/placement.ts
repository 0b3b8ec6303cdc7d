/**
 * Placement: which members own a key.
 *
 * Why partitions, and why this way. A cluster whose every node holds every key can
 * hold no more than its smallest node, so a key lives on N owners (--replicas) and
 * capacity grows with the members. Three choices follow, each for a reason:
 *
 * - Keys map to a fixed set of PARTITIONS, never straight to members. A fixed set
 *   makes a move a unit one can copy, compare by digest, and drop: the work of a
 *   join is "copy these 20 partitions", not "find every key whose owner changed".
 *   The map is Redis Cluster's: CRC16 of the key (or of its `{hash tag}`, so that
 *   related keys share a partition), giving one of 16384 slots, and 64 consecutive
 *   slots to a partition. Keeping Redis's slot function leaves a Redis Cluster mode
 *   possible later, and lets users reason about tags the way they already do.
 *   The bucket plays no part: a key's copies in every bucket live together.
 *
 * - A partition's owners are chosen by rendezvous (highest-random-weight) hashing:
 *   each member gets the weight hash(partition, member name), and the N heaviest
 *   own it. Every node computes the same owners from the same member list, with no
 *   coordinator and no table to agree on; and when a member joins or leaves, only
 *   the partitions where it is (or was) among the N heaviest change hands, about
 *   N/n of them, so a join moves about 1/n of the data. A ring with virtual nodes
 *   does the same with more state and worse balance at small n.
 *
 * - Ownership follows membership, not liveness. A member that is dead or suspect
 *   keeps its partitions (its peers' queues are its hinted handoff); only a join, a
 *   graceful leave, a reap (--reap-dead-after) or an operator's forget changes the
 *   member list, and so the owners. A flapping node would otherwise move data back
 *   and forth with every missed heartbeat.
 *
 * When N is at least the number of members, every member owns every partition:
 * full replication, what clusters of up to N nodes have always had.
 */

/** Redis Cluster's slot count. */
export const SLOTS = 16384;
/** Partitions: the unit of ownership, of moves and of per-partition anti-entropy. */
export const PARTITIONS = 256;
const SLOTS_PER_PARTITION = SLOTS / PARTITIONS;

/** The default replication factor (--replicas). */
export const DEFAULT_REPLICAS = 3;
export const MAX_REPLICAS = 100;

// CRC16-CCITT (XMODEM): polynomial 0x1021, initial 0, as Redis Cluster's keyHashSlot.
const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

function crc16(bytes: Uint8Array, from: number, to: number): number {
  let crc = 0;
  for (let i = from; i < to; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ bytes[i]!) & 0xff]!;
  return crc;
}

/** CRC16 of an ASCII string's char codes: the common case, with no UTF-8 buffer. */
function crc16Ascii(s: string, from: number, to: number): number {
  let crc = 0;
  for (let i = from; i < to; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ s.charCodeAt(i)) & 0xff]!;
  return crc;
}

const isAscii = (s: string, from: number): boolean => {
  for (let i = from; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
};

/**
 * Redis Cluster's slot of a key: CRC16 of its UTF-8 bytes mod 16384, or of the part
 * between the first `{` and the first `}` after it when that part is not empty.
 * `from`: the key is `s` from there on (a record id's key, see partitionOfId).
 */
export function hashSlot(s: string, from = 0): number {
  if (isAscii(s, from)) {
    const open = s.indexOf("{", from);
    if (open >= 0) {
      const close = s.indexOf("}", open + 1);
      if (close > open + 1) return crc16Ascii(s, open + 1, close) & (SLOTS - 1);
    }
    return crc16Ascii(s, from, s.length) & (SLOTS - 1);
  }
  // Braces are ASCII, so they are found the same in the bytes as in the string.
  const bytes = Buffer.from(from === 0 ? s : s.slice(from), "utf8");
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) return crc16(bytes, open + 1, close) & (SLOTS - 1);
  }
  return crc16(bytes, 0, bytes.length) & (SLOTS - 1);
}

/** The partition of a key: its slot's range of 64. */
export const partitionOf = (key: string): number => Math.floor(hashSlot(key) / SLOTS_PER_PARTITION);

/** The partition of the key of a record id (`bucket\0key`, see recordId), without slicing the key out. */
export const partitionOfId = (id: string): number => Math.floor(hashSlot(id, id.indexOf("\u0000") + 1) / SLOTS_PER_PARTITION);

/** A member's rendezvous weight for a partition. */
const weight = (partition: number, name: string): bigint => Bun.hash.xxHash64(name, BigInt(partition));

/** The `n` members with the highest weight for `partition`, heaviest first. Pure. */
export function rankOwners(partition: number, names: readonly string[], n: number): string[] {
  return names
    .map((name) => ({ name, w: weight(partition, name) }))
    .sort((a, b) => (heavier(a, b) ? -1 : 1))
    .slice(0, n)
    .map((e) => e.name);
}

/**
 * rankOwners over precomputed weights (`weights[i]` is `names[i]`'s), by insertion
 * into the n heaviest so far: O(members x n), with the same order and tie-break.
 */
function heaviest(names: readonly string[], weights: readonly BigUint64Array[], partition: number, n: number): string[] {
  const top: { name: string; w: bigint }[] = [];
  for (let i = 0; i < names.length; i++) {
    const e = { name: names[i]!, w: weights[i]![partition]! };
    let at = top.length;
    while (at > 0 && heavier(e, top[at - 1]!)) at--;
    if (at < n) {
      top.splice(at, 0, e);
      if (top.length > n) top.pop();
    }
  }
  return top.map((e) => e.name);
}

const heavier = (a: { name: string; w: bigint }, b: { name: string; w: bigint }): boolean => (a.w === b.w ? a.name < b.name : a.w > b.w);

/**
 * The placement table of one node: the owners of every partition, computed from
 * the member list this node knows (itself and every member that has not left).
 * Recomputed only when that list changes (setMembers), O(PARTITIONS x members);
 * a lookup is an array read.
 */
export class Placement {
  private names: string[] = [];
  /**
   * Every member's weight for every partition, computed once per name: a member list
   * changes once per join on every node, and a cluster of n nodes starting up
   * changes it n times, so recomputing n x PARTITIONS hashes each time adds up.
   */
  private readonly weights = new Map<string, BigUint64Array>();
  private table: string[][] = [];
  /** ownersWithoutSelf's table, built on first use after each change of the members. */
  private tableWithoutSelf?: string[][];
  private mine = new Uint8Array(PARTITIONS);
  /** Bumped on every change of the owners, so callers can cache what they derive from them. */
  epoch = 0;

  constructor(
    readonly self: string,
    readonly replicas: number,
  ) {
    this.setMembers([]);
  }

  /**
   * The members that own partitions: this node and `others` (every member that has
   * not left, dead ones included). Returns whether any owner changed.
   */
  setMembers(others: Iterable<string>): boolean {
    const names = [...new Set([this.self, ...others])].sort();
    if (names.length === this.names.length && names.every((n, i) => n === this.names[i])) return false;
    this.names = names;
    this.table = this.tableOf(names);
    this.mine = Uint8Array.from(this.table, (owners) => (owners.includes(this.self) ? 1 : 0));
    this.tableWithoutSelf = undefined;
    this.epoch++;
    return true;
  }

  private weightsOf(name: string): BigUint64Array {
    let w = this.weights.get(name);
    if (w === undefined) {
      w = new BigUint64Array(PARTITIONS);
      for (let p = 0; p < PARTITIONS; p++) w[p] = weight(p, name);
      this.weights.set(name, w);
    }
    return w;
  }

  /** The members placement counts, this node included, in name order. */
  get members(): readonly string[] {
    return this.names;
  }

  /** Every member owns every partition (N >= members): nothing is routed or moved. */
  get full(): boolean {
    return this.replicas >= this.names.length;
  }

  /** The owners of a partition, heaviest first (the first live one is where a request goes). */
  owners(partition: number): readonly string[] {
    return this.table[partition]!;
  }

  ownersOfKey(key: string): readonly string[] {
    return this.table[partitionOf(key)]!;
  }

  /** Whether this node owns the partition. */
  owns(partition: number): boolean {
    return this.mine[partition] === 1;
  }

  /** Whether this node owns the key's partition. Cheap when every member owns everything. */
  ownsKey(key: string): boolean {
    return this.full || this.mine[partitionOf(key)] === 1;
  }

  /**
   * The owners `partition` would have were this node not a member: for a node that
   * joined as a newcomer, the old owners of what it took (rebalance.ts).
   */
  ownersWithoutSelf(partition: number): readonly string[] {
    this.tableWithoutSelf ??= this.tableOf(this.names.filter((n) => n !== this.self));
    return this.tableWithoutSelf[partition]!;
  }

  /** The owners of every partition among `names`: the `replicas` heaviest of each. */
  private tableOf(names: readonly string[]): string[][] {
    const w = names.map((name) => this.weightsOf(name));
    const n = Math.min(this.replicas, names.length);
    return Array.from({ length: PARTITIONS }, (_, p) => heaviest(names, w, p, n));
  }

  /** Whether `name` owns the partition. */
  isOwner(name: string, partition: number): boolean {
    return this.table[partition]!.includes(name);
  }

  /** The partitions this node owns, ascending. */
  ownedPartitions(): number[] {
    const out: number[] = [];
    for (let p = 0; p < PARTITIONS; p++) if (this.mine[p] === 1) out.push(p);
    return out;
  }

  /** How many partitions each member owns. */
  ownedCounts(): Map<string, number> {
    const out = new Map<string, number>(this.names.map((n) => [n, 0]));
    for (const owners of this.table) for (const o of owners) out.set(o, out.get(o)! + 1);
    return out;
  }
}

/**
 * A set of partitions as 64 hex digits (256 bits, partition 0 in the first digit's
 * high bit): how a node tells its peers, in every heartbeat, which partitions it
 * holds or is still filling, in 64 bytes.
 */
export function partitionsToHex(parts: Iterable<number>): string {
  const nibbles = new Uint8Array(PARTITIONS / 4);
  for (const p of parts) nibbles[p >> 2]! |= 8 >> (p & 3);
  let out = "";
  for (const n of nibbles) out += n.toString(16);
  return out;
}

export function partitionsFromHex(hex: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hex.length && i < PARTITIONS / 4; i++) {
    const n = parseInt(hex[i]!, 16);
    for (let b = 0; b < 4; b++) if (n & (8 >> b)) out.push(i * 4 + b);
  }
  return out;
}

export const PARTITION_SET_PATTERN = /^[0-9a-f]{64}$/;
