import type { ClusterKeyPage } from "../cluster/listing.ts";
import type { Awaitable } from "../service.ts";
import { integer, text, then, word, type Ctx } from "./command.ts";
import { incompleteKeyspace, partialKeyspace, RespError, SYNTAX } from "./errors.ts";
import { globMatch, literalPrefix } from "./glob.ts";
import { array, bulk, bulkOrNil, bulks, NIL, type Reply } from "./reply.ts";

/**
 * What walks the keyspace in key order: SCAN, KEYS, RANDOMKEY (and FLUSHDB, in
 * keys.ts), all through the service's listing of keys (no values: in a partitioned
 * cluster the members send keys and versions only), a page at a time.
 *
 * A deleted key stays in the keyspace as a tombstone for --tombstone-ttl (24 h by
 * default), in key order among the live ones, and a page of the listing steps
 * over at most LIST_SCAN_FACTOR × its limit of them (core/keyspace.ts): a page
 * may come back with no item at all and a cursor to go on from. A walk that went
 * on until it found what it wanted could run over a million tombstones in one go
 * (a FLUSHDB of a million keys, then SCAN: ~20 ms per call, with every other
 * connection waiting), so every walk here is bounded by what it may cost:
 *
 * - SCAN reads a bounded number of pages (one per MAX_PAGE keys of COUNT) and
 *   answers the cursor where it stopped, even with no key: Redis too may answer
 *   an empty page with a cursor that is not 0, and clients loop until 0.
 * - KEYS is O(keys and tombstones), as Redis's is O(keys), but reads SLICE_PAGES
 *   pages at a time and lets the node's other work run between them. Its walk
 *   is then not one step: a key written or deleted by another connection during
 *   it may or may not be in the answer (as with a full SCAN), while every key
 *   that lived through it is there once. Inside EXEC it runs in one step, as
 *   EXEC promises.
 * - RANDOMKEY reads at most RANDOM_PAGES pages, in slices (see randomKey).
 */

/** Keys a walk asks of one page (the listing's largest page). */
const MAX_PAGE = 1000;
/** Pages a walk that may run long (KEYS) reads before it lets the node's other work run: at most ~40k keys, about a ms. */
export const SLICE_PAGES = 4;
/** Pages RANDOMKEY reads at most before it settles for a key it saw: up to ~250k keys looked at, ~5 ms in slices. */
const RANDOM_PAGES = 25;

export interface WalkOptions {
  /** Start strictly after this key. */
  from?: string;
  prefix?: string;
  /** Live keys to visit at most (default: to the end). */
  max?: number;
  /** Pages to read at most; the walk then stops where it got (default: no bound). */
  pages?: number;
  /** Read this many pages at a time, letting the node's other work run between (default: all in one step). */
  slice?: number;
  /** Told where each page starts, before it is read. */
  onPage?: (from: string | undefined) => void;
  /** Checked after each page: true ends the walk there (it answers where it got). */
  until?: () => boolean;
  bucket?: string;
}

/** Lets the node's other work (other connections, heartbeats) run before going on. */
export const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Walks live keys of the bucket in key order from after `from`, visiting each;
 * answers the key where it stopped when more may follow (the last key looked at,
 * live or not: a cursor), undefined at the end. Synchronous over a replica that
 * holds every key, unless `slice` asks it to pause; in a partitioned cluster the
 * pages come from every member (the service's list), and the walk goes on as they
 * arrive.
 */
export function walk(ctx: Ctx, opts: WalkOptions, visit: (key: string) => void): Awaitable<string | undefined> {
  const bucket = opts.bucket ?? ctx.bucket;
  const max = opts.max ?? Infinity;
  const pages = opts.pages ?? Infinity;
  const prefix = opts.prefix || undefined;
  let after = opts.from;
  let seen = 0;
  let read = 0;
  const next = (): Awaitable<ClusterKeyPage> => {
    read++;
    opts.onPage?.(after);
    return ctx.service.listKeys(bucket, { prefix, after, limit: Math.min(MAX_PAGE, Math.max(1, max - seen)) });
  };
  // Whether the walk is over once `page` is visited.
  const take = (page: ClusterKeyPage): boolean => {
    // A walk over part of the keyspace would answer KEYS/SCAN short and leave keys behind a FLUSHDB, silently.
    if (page.incomplete) throw new RespError(incompleteKeyspace(page.incomplete.partitions, page.incomplete.members));
    for (const key of page.keys) visit(key);
    seen += page.keys.length;
    after = page.next ?? undefined;
    return page.next === null || seen >= max || read >= pages || opts.until?.() === true;
  };
  const sliceEnds = () => opts.slice !== undefined && read % opts.slice === 0;
  const rest = async (first: Awaitable<ClusterKeyPage>): Promise<string | undefined> => {
    for (let page = await first; !take(page); ) {
      if (sliceEnds()) await tick();
      page = await next();
    }
    return after;
  };
  for (;;) {
    const page = next();
    if (page instanceof Promise) return rest(page);
    if (take(page)) return after;
    if (sliceEnds()) return (async () => (await tick(), rest(next())))();
  }
}

/** Refuses a command that counts this node's keys in a partitioned cluster (keys.ts's comment). */
export function whole(ctx: Ctx, command: string): void {
  if (ctx.service.partitioned) throw new RespError(partialKeyspace(command));
}

/**
 * Live keys of a bucket: what DBSIZE says (refused while the node's copy may be
 * behind, ItemsService.buckets), and, `here`, INFO keyspace (this node's own counts, always).
 */
export function liveKeys(ctx: Ctx, bucket: string, here = false): number {
  return (here ? ctx.service.bucketsHere() : ctx.service.buckets()).find((b) => b.name === bucket)?.keys ?? 0;
}

/**
 * SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]: at most COUNT live keys
 * looked at per call (default 10), in key order, from at most ceil(COUNT / 1000)
 * pages, so a call steps over a bounded number of tombstones (see above).
 */
export function scan(ctx: Ctx, a: Buffer[]): Awaitable<Reply> {
  const raw = a[1]!.toString("latin1");
  if (!/^\d{1,20}$/.test(raw)) throw new RespError("ERR invalid cursor");
  let pattern: string | undefined;
  let count = 10;
  let type: string | undefined;
  for (let i = 2; i < a.length; i++) {
    const opt = word(a[i]!);
    if (i + 1 >= a.length) throw new RespError(SYNTAX);
    if (opt === "MATCH") pattern = text(a[++i]!);
    else if (opt === "COUNT") {
      count = integer(a[++i]!);
      if (count < 1) throw new RespError(SYNTAX);
    } else if (opt === "TYPE") type = a[++i]!.toString().toLowerCase();
    else throw new RespError(SYNTAX);
  }
  let after: string | undefined;
  if (raw !== "0") {
    after = ctx.shared.cursors.take(Number(raw), ctx.bucket);
    if (after === undefined) throw new RespError("ERR invalid cursor");
  }
  const keys: string[] = [];
  const max = Math.min(count, 100_000);
  const prefix = pattern === undefined ? "" : literalPrefix(pattern);
  const walked = walk(ctx, { from: after, prefix, max, pages: Math.ceil(max / MAX_PAGE) }, (key) => {
    if (type !== undefined && type !== "string") return;
    if (pattern === undefined || globMatch(pattern, key)) keys.push(key);
  });
  return then(walked, (last) => array([bulk(last === undefined ? "0" : String(ctx.shared.cursors.save(ctx.bucket, last))), bulks(keys)]));
}

/** KEYS pattern: every live key that matches, in slices outside a transaction (see above). */
export function keys(ctx: Ctx, a: Buffer[]): Awaitable<Reply> {
  const pattern = text(a[1]!);
  const out: string[] = [];
  const slice = ctx.atomic ? undefined : SLICE_PAGES;
  return then(
    walk(ctx, { prefix: literalPrefix(pattern), slice }, (key) => void (globMatch(pattern, key) && out.push(key))),
    () => bulks(out),
  );
}

/**
 * RANDOMKEY. makhzen keeps keys in order, with no random access, so this picks a
 * position among the bucket's live keys at random and walks to it, reading at most
 * RANDOM_PAGES pages (about 250,000 keys, live or deleted), in slices as KEYS does:
 * uniform when the bucket holds fewer. Past that it answers one of the live keys it
 * did walk over, uniformly among them (a bucket larger than that is sampled from its
 * start).
 *
 * When the first live key lies past the first page (the tombstones of a mass delete
 * ahead of every live key), it remembers where the page holding it began
 * (Shared.randomFrom): the next RANDOMKEY in that bucket reads one page from the
 * start, and when that holds no live key, starts from there, rather than walking
 * the run of tombstones again. When its pages held no live key at all, it walks on
 * to the first one, a slice at a time so that the node's other work goes on
 * meanwhile, and remembers that place the same way. The hint is only a place to
 * start from: a key written since in the run it skips is not picked until the hint
 * is dropped (when the walk from it finds no live key, or one is found ahead of
 * it), and an answer is always a live key when the walk finds one.
 * It exists for tools that probe with it, not for hot paths.
 */
export function randomKey(ctx: Ctx): Awaitable<Reply> {
  whole(ctx, "RANDOMKEY");
  const total = liveKeys(ctx, ctx.bucket);
  if (total === 0) return NIL;
  const hints = ctx.shared.randomFrom;
  const slice = ctx.atomic ? undefined : SLICE_PAGES;
  let left = Math.floor(Math.random() * total);
  let found: string | undefined;
  let sampled: string | undefined;
  let seen = 0;
  const visit = (key: string) => {
    // Reservoir sampling: each live key walked over is kept with probability 1/seen.
    if (Math.random() * ++seen < 1) sampled = key;
    if (left-- === 0) found = key;
  };
  const answer = () => bulkOrNil(found ?? sampled);
  // On to the first live key after `from`, in slices, remembering where its page began.
  const onward = (from: string): Awaitable<Reply> => {
    hints.delete(ctx.bucket);
    let start: string | undefined;
    const go = () => walk(ctx, { from, slice, onPage: (at) => void (start = at), until: () => sampled !== undefined }, (key) => void (sampled ??= key));
    // After a turn of the event loop when sliced: the walk before this one may have just read a slice.
    const first = slice === undefined ? go() : tick().then(go);
    return then(first, () => {
      if (sampled !== undefined && start !== undefined) hints.set(ctx.bucket, start);
      return answer();
    });
  };
  // The walk to the position picked, from `from`; with no live key in its pages, on from `back` (or where it stopped).
  const pick = (from: string | undefined, back?: string): Awaitable<Reply> => {
    // Full pages (each steps over up to 10,000 tombstones), up to the page that holds the position.
    let page: string | undefined;
    let firstLive: string | undefined;
    const onPage = (at: string | undefined) => void (page = at);
    const walked = walk(ctx, { from, pages: RANDOM_PAGES, slice, onPage, until: () => found !== undefined }, (key) => {
      if (seen === 0) firstLive = page;
      visit(key);
    });
    const settle = (last: string | undefined): Awaitable<Reply> => {
      if (sampled !== undefined) {
        // Live keys only past the first page: start there next time.
        if (firstLive !== undefined) hints.set(ctx.bucket, firstLive);
        else if (from === undefined) hints.delete(ctx.bucket);
        return answer();
      }
      const on = back ?? last;
      return on === undefined ? answer() : onward(on);
    };
    return walked instanceof Promise ? walked.then(settle) : settle(walked);
  };
  const hint = hints.get(ctx.bucket);
  if (hint === undefined) return pick(undefined);
  // One page from the start first: a live key there means the hint no longer describes the bucket.
  let live = false;
  const probe = walk(ctx, { pages: 1 }, () => void (live = true));
  const go = (last: string | undefined): Awaitable<Reply> => {
    if (live) {
      hints.delete(ctx.bucket);
      return pick(undefined);
    }
    if (last === undefined) return NIL;
    // A stale hint (nothing live after it) sends the walk on from the end of that page.
    const from = hint > last ? hint : last;
    return slice === undefined ? pick(from, last) : tick().then(() => pick(from, last));
  };
  return probe instanceof Promise ? probe.then(go) : go(probe);
}
