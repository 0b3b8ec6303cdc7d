/**
 * The open connections of a listener, for a graceful stop (the HTTP front end's
 * and the RESP server's drain): the listener stops accepting, each connection
 * finishes what it owes and closes, and the stop waits until none is left, or its
 * grace runs out (`settledWithin`), then closes what is left. Bun's listeners
 * keep no such list of their own; this costs an add and a delete per connection,
 * nothing per request.
 */
export class OpenConnections<T> implements Iterable<T> {
  private readonly open = new Set<T>();
  private empty: PromiseWithResolvers<void> | undefined;

  add(c: T): void {
    this.open.add(c);
  }

  delete(c: T): void {
    this.open.delete(c);
    if (this.open.size === 0) this.empty?.resolve();
  }

  get size(): number {
    return this.open.size;
  }

  [Symbol.iterator](): Iterator<T> {
    return this.open[Symbol.iterator]();
  }

  /** Resolves once no connection is open (at once if none is). */
  allClosed(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    this.empty ??= Promise.withResolvers<void>();
    return this.empty.promise;
  }
}

/**
 * Resolves when `p` settles or `ms` passes, whichever is first: true if `p`
 * settled. The timer is cleared either way, so it never holds a stopping process.
 */
export function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  return Promise.race([p.then(() => true, () => true), late]).finally(() => clearTimeout(timer));
}
