import { HTTP_STATUS, MakhzenError } from "../../errors.ts";
import {
  aborted,
  checkAnswer,
  checkRequest,
  noAnswer,
  PASS_THROUGH,
  PeerError,
  type PeerAnswer,
  type PeerOp,
  type PeerRequest,
  type PeerService,
  type PeerTransport,
} from "./peer-ops.ts";

/**
 * Peers in one process, for unit tests of the cluster without sockets. Messages are
 * round-tripped through JSON and the same validation as over HTTP, errors come back
 * as the PeerError the HTTP transport would give, and a call ends at its timeout or
 * its abort as a fetch does (the peer may still finish the work). `cut(url)` makes
 * a node unreachable (a partition or a crash), `heal(url)` brings it back.
 */
export class MemoryTransport implements PeerTransport {
  private readonly nodes = new Map<string, PeerService>();
  private readonly down = new Set<string>();
  /** Requests attempted per op, for tests that bound the work of a protocol. */
  readonly calls = new Map<PeerOp, number>();
  /** Records carried by `records`, `fetch` and `scan` answers and requests. */
  recordsCarried = 0;
  /**
   * Chaos for tests: the share of calls that fail (before or after the peer
   * processed them, at random, as a lost request or a lost answer would), and the
   * most a call is delayed, in ms. `random` is injectable for reproducible runs.
   */
  chaos = { failRate: 0, maxDelayMs: 0, random: Math.random };

  register(url: string, service: PeerService): void {
    this.nodes.set(url, service);
  }
  unregister(url: string): void {
    this.nodes.delete(url);
  }
  cut(url: string): void {
    this.down.add(url);
  }
  heal(url: string): void {
    this.down.delete(url);
  }

  call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal): Promise<PeerAnswer<O>> {
    this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
    return withDeadline(this.exchange(url, op, body), timeoutMs, signal, `${url} ${op}`);
  }

  /** One request and its answer, however long the peer takes: `call` bounds it. */
  private async exchange<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string): Promise<PeerAnswer<O>> {
    await Promise.resolve(); // never answer synchronously, as a network would not
    const { failRate, maxDelayMs, random } = this.chaos;
    if (maxDelayMs > 0) await Bun.sleep(random() * maxDelayMs);
    const service = this.nodes.get(url);
    if (!service || this.down.has(url)) throw new PeerError(0, "UNREACHABLE", `${url} ${op}: unreachable`);
    if (failRate > 0 && random() < failRate / 2) throw new PeerError(0, "UNREACHABLE", `${url} ${op}: request lost`);
    let answer: unknown;
    try {
      const req = checkRequest(op, JSON.parse(typeof body === "string" ? body : JSON.stringify(body)));
      if (op === "records") this.recordsCarried += (req as PeerRequest<"records">).records.length;
      answer = JSON.parse(JSON.stringify(await service[op](req)));
    } catch (e) {
      // What the HTTP transport would see: the peer's error envelope, with its status.
      if (e instanceof MakhzenError && !PASS_THROUGH.has(e.code)) throw new PeerError(HTTP_STATUS[e.code] ?? 400, e.code, `${url} ${op}: ${e.message}`);
      throw e;
    }
    if (failRate > 0 && random() < failRate / 2) throw new PeerError(0, "UNREACHABLE", `${url} ${op}: answer lost`);
    if (op === "fetch" || op === "scan") this.recordsCarried += (answer as { records: unknown[] }).records.length;
    return checkAnswer(op, answer);
  }
}

/**
 * `work`, or the PeerError a fetch would give when `timeoutMs` passes first (no
 * answer) or `signal` aborts first (aborted, at once if it already has). The work
 * goes on unwatched, as a peer goes on with a request whose caller gave up.
 */
function withDeadline<T>(work: Promise<T>, timeoutMs: number, signal: AbortSignal | undefined, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal?.aborted) {
      work.catch(() => {}); // its outcome is no longer anyone's
      return reject(aborted(what));
    }
    const onAbort = () => reject(aborted(what));
    const timer = setTimeout(() => reject(noAnswer(what, timeoutMs)), timeoutMs);
    signal?.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    });
  });
}
