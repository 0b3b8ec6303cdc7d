import { MakhzenError } from "../errors.ts";
import type { DeleteOptions, Items, SetOptions } from "../core/items.ts";
import { isExpired, toItem, type Item, type StoredRecord } from "../core/record.ts";
import type { Store } from "../core/store.ts";
import type { Version } from "../core/version.ts";
import { moreThanThereAre, requiredOf, type Concern } from "./consistency.ts";
import { partitionOf } from "./placement.ts";
import type { ForwardRequest } from "./protocol/messages.ts";
import type { Router } from "./routing.ts";

/** A write's options as the service takes them (ServiceSetOptions, ServiceDeleteOptions): the item's, and `w`. */
type Routed<O> = O & { w?: Concern };

/** The service's own paths, which a routed request falls back on: a write here as a hint. ItemsService is one. */
export interface LocalItems {
  localSet(bucket: string, key: string, value: string, opts?: Routed<SetOptions>): Item | Promise<Item>;
  localDelete(bucket: string, key: string, opts?: Routed<DeleteOptions>): Version | undefined | Promise<Version | undefined>;
}

/** Why a delete with no owner reachable is refused here (delete, and deleteRefusal's check before a DEL). */
const NO_COPY_TO_DECIDE = "this node holds no copy of it, so whether there is anything to delete cannot be known";

/**
 * The service's path for a key this node does not serve (Router.servesLocally is
 * false): the request goes to an owner in one hop (routing.ts), and the answer
 * comes back as the owner gave it.
 *
 * When no owner takes a write (none reachable, or none answered: see
 * Router.forward), the write follows Dynamo's sloppy quorum and is never refused
 * for want of owners: an unconditional write is applied HERE, as a hint. This node
 * then holds a copy of a partition it does not own; the write's record is queued
 * for the owners like any other (replication targets are the owners and holders,
 * and a dead owner keeps its queue, bounded as every queue is), and reaches them
 * when they come back; the rebalancer then drops the copy here. `w=1` is answered
 * 200; a higher `w=` counts owners, and none holds the write yet, so 503
 * UNAVAILABLE, saying the write stands as a hint. A conditional write is refused
 * (503): its condition can only be checked against an owner's copy. A delete
 * needs to know whether there is anything to delete (204 or 404), so without an
 * owner it is applied here only when this node holds a live copy, and refused
 * (503) otherwise.
 */
export class RoutedItems {
  constructor(
    private readonly local: LocalItems,
    private readonly router: Router,
    private readonly items: Items,
    private readonly store: Store,
  ) {}

  /**
   * The live record of the key, from an owner, or from the merge read when no owner
   * can answer alone. `vouched`: the answer must come from a copy that speaks for
   * the key (see Router.mergeRead), a value found only in this node's hint or a
   * filling copy included: else UNAVAILABLE (a read-modify-write that then writes
   * nothing, SET NX on a hint, must not answer from it).
   */
  async read(bucket: string, key: string, r?: Concern, vouched = false): Promise<StoredRecord | undefined> {
    this.items.get(bucket, key); // a bad bucket or key is refused here, before anything travels
    if (r !== undefined) this.checkLevel(key, r);
    const targets = this.router.readTargets(partitionOf(key));
    if (targets.length > 0) {
      const req: ForwardRequest = { forwarded: true, op: "get", bucket, key };
      if (r !== undefined) req.r = r;
      const answer = await this.router.forward(req, targets, true);
      if (answer) return answer.record ?? undefined;
    }
    return this.mergeRead(bucket, key, r, vouched);
  }

  /**
   * `r=` above the key's owner count, refused before anything travels, as the owner
   * would refuse it (Consistency). Forwarded, the owner's UNAVAILABLE was taken for
   * an owner that could not serve (Router's cannotServe), the merge read followed,
   * and the client heard REPLICATION_TIMEOUT "1 of 2 owners answered" of a key with
   * one owner. A write needs no such check: its UNAVAILABLE is relayed as it is.
   */
  private checkLevel(key: string, r: Concern): void {
    const n = this.router.owners(key).length;
    const need = requiredOf(r.level, n);
    if (need > n) throw moreThanThereAre("r", r, need, n, !this.router.full, "nothing was read");
  }

  /**
   * Router.mergeRead, as a read answers it: the live record or undefined. With `r`,
   * at least that many of the key's owners' whole copies must have answered (this
   * node's counts when it owns the key and is not filling it), else
   * REPLICATION_TIMEOUT, or UNAVAILABLE when none did. Without `r`, a key found
   * nowhere while no copy that speaks for its partition answered (every owner and
   * holder out of reach or still filling, and this node's copy absent or partial)
   * is UNAVAILABLE, not a 404: the key may well exist. With `vouched`, so is a key
   * found only in such copies.
   */
  async mergeRead(bucket: string, key: string, r?: Concern, mustVouch = false): Promise<StoredRecord | undefined> {
    const { record, owners, vouched } = await this.router.mergeRead(bucket, key, r?.timeoutMs);
    if (r !== undefined) {
      const need = requiredOf(r.level, this.router.owners(key).length);
      if (owners < need) {
        const code = owners === 0 ? "UNAVAILABLE" : "REPLICATION_TIMEOUT";
        throw new MakhzenError(code, `r=${r.raw}: ${owners} of ${need} owners of the key answered`);
      }
    }
    if (vouched === 0 && (record === undefined || mustVouch)) {
      throw noOwner(key, "nothing was read (no whole copy of its partition answered)");
    }
    return record && record.value !== null && !isExpired(record, this.items.wallMs()) ? record : undefined;
  }

  /**
   * Before a write whose outcome depends on the key's current value (a DELETE's 204
   * or 404, If-Match, If-None-Match: *, and so every RESP read-modify-write) runs on
   * this node while it is still filling the key's partition: its copy may lack the
   * key, or hold an old version of it. So it first learns the current record as a
   * merge read does (asks the other owners and holders, and keeps the newest here),
   * then the write decides on that. When no copy that speaks for the partition
   * answered, nothing is known: UNAVAILABLE, writing nothing. Bounded by half the
   * request timeout, so a forwarding node's hop (one request timeout) hears this
   * answer rather than silence. Never on the hot path: only a filling owner runs it.
   */
  async learn(bucket: string, key: string): Promise<void> {
    const { vouched } = await this.router.mergeRead(bucket, key, this.router.requestTimeoutMs / 2);
    if (vouched > 0) return;
    throw new MakhzenError(
      "UNAVAILABLE",
      `this owner of key ${JSON.stringify(key)} is still filling its partition and no whole copy of it answered: whether the key exists cannot be known, so nothing was written`,
    );
  }

  async set(bucket: string, key: string, value: string, opts: Routed<SetOptions>): Promise<Item> {
    this.items.checkSet(bucket, key, value, opts); // as a local write is checked, before anything travels
    const { ttl, expiresAt, pastExpiryDeletes, ifMatch, ifAbsent, bytes, w } = opts;
    const req: ForwardRequest = { forwarded: true, op: "set", bucket, key, value };
    if (bytes === true) req.bytes = true;
    if (ttl !== undefined) req.ttl = ttl;
    if (expiresAt !== undefined) req.expiresAt = expiresAt;
    if (pastExpiryDeletes === true) req.pastExpiryDeletes = true;
    if (ifMatch !== undefined) req.ifMatch = ifMatch;
    if (ifAbsent === true) req.ifAbsent = true;
    if (w !== undefined) req.w = w;
    const conditional = ifMatch !== undefined || ifAbsent === true;
    if (conditional) this.withHeld(req);
    const unserved: string[] = [];
    const answer = await this.router.forward(req, this.router.writeTargets(partitionOf(key)), !conditional, unserved);
    if (answer) {
      if (!answer.record) throw new MakhzenError("UNAVAILABLE", `the owner of key ${JSON.stringify(key)} answered the write without its record`);
      // Kept here at once when this node owns the key, as replication keeps it a moment
      // later: a client that sent the write through this node reads it back here, and
      // this node's next write of the key is stamped after it (applyRemote moves the
      // clock). Left to replication, a SET sent right after an INCR on one connection
      // (the INCR decided by the first owner) was stamped by this node's clock, could
      // sort below the owner's stamp (the same millisecond, a higher node name), and
      // was lost though acknowledged; a GET or DEL right after the INCR missed it.
      this.router.keep(answer.record);
      return toItem(answer.record);
    }
    if (conditional) throw noOwner(key, "a conditional write is checked on an owner's copy, so it is refused", unserved);
    return this.hint(key, w, () => this.local.localSet(bucket, key, value, { ttl, expiresAt, pastExpiryDeletes, bytes }), unserved);
  }

  async delete(bucket: string, key: string, opts: Routed<DeleteOptions>): Promise<Version | undefined> {
    this.items.get(bucket, key);
    const req: ForwardRequest = { forwarded: true, op: "delete", bucket, key };
    if (opts.ifMatch !== undefined) req.ifMatch = opts.ifMatch;
    if (opts.w !== undefined) req.w = opts.w;
    const conditional = opts.ifMatch !== undefined;
    if (conditional) this.withHeld(req);
    const unserved: string[] = [];
    const answer = await this.router.forward(req, this.router.writeTargets(partitionOf(key)), !conditional, unserved);
    if (answer) {
      if (answer.version) this.router.keep({ bucket, key, value: null, version: answer.version }); // as set() keeps its record
      return answer.version ?? undefined;
    }
    if (conditional) throw noOwner(key, "a conditional delete is checked on an owner's copy, so it is refused", unserved);
    if (!this.store.get(bucket, key)) throw noOwner(key, NO_COPY_TO_DECIDE, unserved);
    return this.hint(key, opts.w, () => this.local.localDelete(bucket, key), unserved);
  }

  /**
   * Why a delete of `key` would be refused now, before anything is sent: no owner
   * reachable and no copy here to decide on (delete's last refusal), else undefined.
   * RESP's DEL asks it of every key first, so a refused DEL deletes none of them.
   */
  deleteRefusal(bucket: string, key: string): MakhzenError | undefined {
    if (this.router.writeTargets(partitionOf(key)).length > 0 || this.store.get(bucket, key)) return undefined;
    return noOwner(key, NO_COPY_TO_DECIDE);
  }

  /**
   * A conditional write carries this node's own record of the key to the owner that
   * decides it (the first), which merges it before it checks the condition and
   * stamps (Router.serve). An owner takes unconditional writes of the key itself,
   * and replication brings them to the first owner a moment later: a SET, DEL,
   * SETNX sent in that order on one connection through the second owner had the
   * SETNX decided on a copy without the DEL, stamped below it, and lost; a PUT
   * If-Match on the ETag this node had just answered was refused 412. An owner that
   * refuses the field (a release before it: 422) is asked again without it (Router.forward).
   */
  private withHeld(req: ForwardRequest): void {
    const held = this.store.getRecord(req.bucket, req.key);
    if (held === undefined) return;
    // Only while the forward stays within the peers' body limit, which holds one value at six bytes a character
    // (JSON's escapes): two values of that many characters at most, or (measured) JSON of at most three bytes a
    // character for twice the value limit. Past it a 413 sent the write nowhere; gated on the characters alone,
    // values over half the limit lost the order this field keeps (a recheck, --max-value-bytes 64kb).
    const max = this.items.maxValueBytes;
    const chars = (v: string | null | undefined): number => (v == null ? 0 : JSON.stringify(v).length);
    if ((req.value?.length ?? 0) + (held.value?.length ?? 0) > max && chars(req.value) + chars(held.value) > 2 * max) return;
    req.held = held;
  }

  /** Applies a write here as a hint (see the class comment); `w` above 1 is then UNAVAILABLE, the write standing. */
  private async hint<T>(key: string, w: Concern | undefined, apply: () => T | Promise<T>, unserved: readonly string[]): Promise<T> {
    const result = await apply();
    if (w !== undefined) {
      throw new MakhzenError(
        "UNAVAILABLE",
        `w=${w.raw} counts the owners of key ${JSON.stringify(key)} and none ${noneTook(unserved)}: the write stands as a hint on this node and will reach the owners when they come back`,
      );
    }
    return result;
  }
}

/** Why no owner took a write: none answered, or those that did could not serve it now (a fenced clock, leaving...). */
const noneTook = (unserved: readonly string[]): string => (unserved.length === 0 ? "is reachable" : `could take it now (${unserved.join(", ")})`);

const noOwner = (key: string, consequence: string, unserved: readonly string[] = []): MakhzenError =>
  new MakhzenError("UNAVAILABLE", `no owner of key ${JSON.stringify(key)} ${noneTook(unserved)}: ${consequence}`);
