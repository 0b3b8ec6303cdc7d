import { PARTITIONS, partitionsFromHex } from "./placement.ts";

/**
 * What each other member last said, in its heartbeats, about its partitions: which
 * ones it holds records of, and which ones it owns but does not hold in full yet
 * (still filling after a join, a restart empty, or an ownership change).
 *
 * Why a node needs this of its peers:
 * - writes go to the owners of a key's partition and also to every member still
 *   holding a copy of it (an old owner before it drops the partition, a node that
 *   took a write as a hint), so no copy falls behind while a partition moves and
 *   none can bring an old value back later;
 * - a read goes to an owner that holds its partition in full; while none is known
 *   to, the reader asks every holder and answers the newest.
 *
 * Views are what the member last said, so they lag by a heartbeat; the rules that
 * read them are safe with a stale view (a write sent to one member too many is
 * merged there, a read asks more members than needed).
 */
export class PartitionViews {
  private readonly holds = new Map<string, Uint8Array>();
  private readonly filling = new Map<string, Uint8Array>();

  /** A member's word on its partitions (64-hex-digit sets, placement.ts); undefined leaves that set as it was. */
  report(name: string, holds: string | undefined, filling: string | undefined): void {
    if (holds !== undefined) this.holds.set(name, toBits(holds));
    if (filling !== undefined) this.filling.set(name, toBits(filling));
  }

  /** The member left or was forgotten: what it said no longer counts. */
  forget(name: string): void {
    this.holds.delete(name);
    this.filling.delete(name);
  }

  /** Members that said they hold records of `partition`, owners or not. */
  holders(partition: number): string[] {
    const out: string[] = [];
    for (const [name, bits] of this.holds) if (bits[partition] === 1) out.push(name);
    return out;
  }

  /** Whether `name` said it holds `partition`. */
  holdsPartition(name: string, partition: number): boolean {
    return this.holds.get(name)?.[partition] === 1;
  }

  /**
   * Whether `name` said it is still filling `partition`. A member that has said
   * nothing yet (just joined) counts as filling: it cannot be trusted to hold anything.
   */
  isFilling(name: string, partition: number): boolean {
    const bits = this.filling.get(name);
    return bits === undefined || bits[partition] === 1;
  }

  /** Whether `name` has reported at all. */
  has(name: string): boolean {
    return this.filling.has(name);
  }
}

function toBits(hex: string): Uint8Array {
  const bits = new Uint8Array(PARTITIONS);
  for (const p of partitionsFromHex(hex)) bits[p] = 1;
  return bits;
}
