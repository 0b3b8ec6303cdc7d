import { readFileSync } from "node:fs";

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

  has(c: T): boolean {
    return this.open.has(c);
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

/**
 * The node's client connections, HTTP and RESP together, bounded as Redis bounds
 * them (maxclients): a connection past the bound is answered with a refusal and
 * closed by its listener, before it holds anything more. Without it, idle
 * connections used up the process's file descriptors; accept then failed in a loop,
 * and the node answered no one, its peers included, until they closed.
 */
export class ClientSlots {
  private used = 0;
  /** Connections refused for want of a slot, since start (/metrics). */
  refused = 0;

  constructor(readonly max: number) {}

  /** A slot for a connection just accepted; false when all are taken (refuse it, and give nothing back). */
  take(): boolean {
    if (this.used >= this.max) {
      this.refused++;
      return false;
    }
    this.used++;
    return true;
  }

  /** Gives back a slot `take` gave. */
  give(): void {
    this.used--;
  }

  get open(): number {
    return this.used;
  }
}

/** Descriptors kept for what is not a client connection: the data dir, peers' outgoing connections, logs. */
const RESERVED_FILES = 256;
/** What one client connection may hold: its own socket, and both ends of the pipe to the inner Bun.serve (front/pipe.ts). */
const FILES_PER_CLIENT = 3;

/**
 * `wanted` (--max-clients), lowered to what the open-files limit can hold, as
 * Redis lowers maxclients to its ulimit: past it, accept would fail instead of
 * the refusal being answered. `limit` is the soft limit in force (openFilesLimit).
 */
export function clientsWithin(wanted: number, limit: number | undefined): number {
  if (limit === undefined) return wanted;
  return Math.max(1, Math.min(wanted, Math.floor((limit - RESERVED_FILES) / FILES_PER_CLIENT)));
}

/** This process's soft limit on open files, where the OS tells it (/proc on Linux); else undefined. */
export function openFilesLimit(): number | undefined {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "latin1"));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}
