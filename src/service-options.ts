import type { SetOptions } from "./core/items.ts";
import type { Concern } from "./cluster/consistency.ts";

/** The options of ItemsService's calls: what `w=`, `r=` and a condition ask of a write or a read. */

export interface WriteOptions {
  /** Replicas that must hold the write before it is answered; absent: this node alone. */
  w?: Concern;
}

export interface ServiceSetOptions extends SetOptions, WriteOptions {}

export interface ServiceDeleteOptions extends WriteOptions {
  /** Delete only if the current version is exactly this one, or `*`: if the key exists. */
  ifMatch?: string;
}

export interface ReadOptions {
  /** Replicas to ask (and repair) before reading here; absent: this node alone. */
  r?: Concern;
  /**
   * The answer must come from a copy that speaks for the key: an owner's whole copy
   * or a holder's, not only this node's hint or a filling copy (RoutedItems.read);
   * else UNAVAILABLE. What a read-modify-write that may write nothing reads with.
   */
  vouched?: boolean;
}
