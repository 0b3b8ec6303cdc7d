
/**
 * The merge behind a listing of the whole cluster, without I/O (listing.ts does
 * the calls). In a partitioned cluster no node holds every key, so a page of the
 * cluster's keys is built from a page of each member's records (the `list` peer
 * op), and the problem is to answer each key once, with its newest record, in key
 * order, and never to skip one.
 *
 * Each member answers up to a limit of its records after a cursor. A member whose
 * page was full (`more`) vouches only for the keys up to its last one: past it, it
 * may hold keys nobody else sent. So a round may only answer keys up to the
 * smallest such last key over the members that answered a full page (the
 * horizon); keys past it come again in the next round, which starts at the
 * horizon. A member whose page was not full vouches for everything it holds.
 * The member with the smallest horizon sent `limit` distinct keys below it, so a
 * round always moves on by at least that many keys; only tombstones and expired
 * records (which a listing drops) can leave a page short, and then another round
 * goes on from the horizon, up to a bound, after which the page answers what it
 * found with a cursor (as a page of one node does after many deleted keys).
 *
 * Every key is merged by the merge order (compareRecords; compareStamps for a
 * listing of keys, whose members send records without values), so a tombstone
 * newer than a value another member still holds hides it, as a read would. The
 * cursor is the last key answered, so the next page holds exactly the keys after
 * it, however many writes happened in between: each key once across pages.
 */

/** A position in (bucket, key) order; a bucket's start is `key: ""` (no key is empty). */
export interface ListCursor {
  bucket: string;
  key: string;
}

/** What one member answered to a `list` request: records, or stamps (records without values). */
export interface SourcePage<T extends ListCursor> {
  records: readonly T[];
  /** The member may hold records past the last one it sent. */
  more: boolean;
}

/** A round's merge: the newest record of each key up to `horizon`, in order; `horizon` null: every member sent all it holds. */
export interface MergedRound<T> {
  records: T[];
  horizon: ListCursor | null;
}

/** (bucket, key) order: negative when `a` comes first. Keys in JavaScript string order, as the store keeps them. */
export function compareIds(a: ListCursor, b: ListCursor): number {
  if (a.bucket !== b.bucket) return a.bucket < b.bucket ? -1 : 1;
  return a.key === b.key ? 0 : a.key < b.key ? -1 : 1;
}

/**
 * Merges one round of member pages: keeps, for every key at or before the horizon,
 * the record that wins the merge order (`compare`), and answers them in (bucket, key) order.
 * A page's own order is not trusted (it came from the network): its horizon is the
 * largest key it sent, and the output is sorted here. Pure.
 */
export function mergeRound<T extends ListCursor>(pages: readonly SourcePage<T>[], compare: (a: T, b: T) => number): MergedRound<T> {
  let horizon: ListCursor | null = null;
  for (const page of pages) {
    if (!page.more || page.records.length === 0) continue;
    let last = page.records[0]!;
    for (const r of page.records) if (compareIds(r, last) > 0) last = r;
    if (horizon === null || compareIds(last, horizon) < 0) horizon = { bucket: last.bucket, key: last.key };
  }
  const newest = new Map<string, T>();
  for (const page of pages) {
    for (const r of page.records) {
      if (horizon !== null && compareIds(r, horizon) > 0) continue;
      const id = `${r.bucket}\u0000${r.key}`;
      const held = newest.get(id);
      if (held === undefined || compare(r, held) > 0) newest.set(id, r);
    }
  }
  return { records: [...newest.values()].sort(compareIds), horizon };
}

/** A page of the cluster: the records kept, and where the next page starts (null: the end). */
export interface CollectedPage<T> {
  records: T[];
  next: ListCursor | null;
}

/**
 * Builds one page of up to `limit` records that `keep` accepts (a listing keeps
 * live values, a dump everything), from rounds of `ask`: each round asks every
 * member for its records after the cursor and merges them (mergeRound, by `compare`). Stops at
 * `limit` records, at the end of every member's records, or after `maxRounds`
 * rounds; in the last case the page may be short, even empty, and `next` goes on
 * from the last key looked at. `next` is set whenever more may follow.
 */
export async function collectPage<T extends ListCursor>(
  ask: (after: ListCursor | undefined) => Promise<readonly SourcePage<T>[]>,
  start: ListCursor | undefined,
  limit: number,
  keep: (r: T) => boolean,
  maxRounds: number,
  compare: (a: T, b: T) => number,
): Promise<CollectedPage<T>> {
  const records: T[] = [];
  let after = start;
  for (let round = 0; round < maxRounds; round++) {
    const merged = mergeRound(await ask(after), compare);
    for (const r of merged.records) {
      if (!keep(r)) continue;
      if (records.length === limit) return { records, next: idOf(records[limit - 1]!) };
      records.push(r);
    }
    if (merged.horizon === null) return { records, next: null };
    if (records.length === limit) return { records, next: idOf(records[limit - 1]!) };
    after = merged.horizon;
  }
  return { records, next: after ?? null };
}

const idOf = (r: ListCursor): ListCursor => ({ bucket: r.bucket, key: r.key });
