import { Type, type Static } from "@sinclair/typebox";
import { MakhzenError } from "../../errors.ts";
import { STATUS } from "../../http/errors.ts";
import * as P from "./messages.ts";
import type { PeerGuard } from "../../ops/security.ts";

/**
 * The peer protocol as a table: one entry per operation, with the TypeBox models of
 * its request and its answer. The Elysia peer routes (src/http/peer.ts), the HTTP
 * transport and the in-memory transport are all generated from it, so the three
 * cannot drift apart.
 */
export const PEER_OPS = {
  join: { request: P.JoinRequest, answer: P.MembersAnswer },
  gossip: { request: P.GossipRequest, answer: P.MembersAnswer },
  leave: { request: P.LeaveRequest, answer: P.OkAnswer },
  /** The member list, read only: what a node checks its name against after a pause (see NameClaim). */
  members: { request: Type.Object({}), answer: P.MembersAnswer },
  records: { request: P.RecordsRequest, answer: P.RecordsAnswer },
  groups: { request: Type.Object({}), answer: P.GroupsAnswer },
  leaves: { request: P.LeavesRequest, answer: P.LeavesAnswer },
  keys: { request: P.KeysRequest, answer: P.KeysAnswer },
  fetch: { request: P.FetchRequest, answer: P.FetchAnswer },
  scan: { request: P.ScanRequest, answer: P.ScanAnswer },
} as const;

export type PeerOp = keyof typeof PEER_OPS;
export type PeerRequest<O extends PeerOp> = Static<(typeof PEER_OPS)[O]["request"]>;
export type PeerAnswer<O extends PeerOp> = Static<(typeof PEER_OPS)[O]["answer"]>;

/** The serving side of the peer protocol: what a node answers. Never sees HTTP. */
export type PeerService = { [O in PeerOp]: (req: PeerRequest<O>) => PeerAnswer<O> | Promise<PeerAnswer<O>> };

/**
 * The calling side. `body` may be a ready JSON string: replication serializes each
 * record once and splices the same strings into the batches of every peer.
 * Contract: resolves with a validated answer or rejects (timeout, refused, bad
 * answer, `signal` aborted: a PeerError with code ABORTED); never hangs past
 * `timeoutMs`, nor past the abort.
 */
export interface PeerTransport {
  call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal): Promise<PeerAnswer<O>>;
}

/** A peer answered with an error envelope (status > 0) or not at all (status 0). */
export class PeerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "PeerError";
  }
}

const requestCheckers = Object.fromEntries(
  Object.entries(PEER_OPS).map(([op, d]) => [op, P.checker(d.request, `peer ${op} request`)]),
) as { [O in PeerOp]: (v: unknown) => PeerRequest<O> };
const answerCheckers = Object.fromEntries(
  Object.entries(PEER_OPS).map(([op, d]) => [op, P.checker(d.answer, `peer ${op} answer`)]),
) as { [O in PeerOp]: (v: unknown) => PeerAnswer<O> };

/** Validates a request body for `op`; throws VALIDATION. */
export const checkRequest = <O extends PeerOp>(op: O, body: unknown): PeerRequest<O> => requestCheckers[op](body);

/** Domain codes a peer may answer that the caller must see as such. */
const PASS_THROUGH = new Set(["NAME_TAKEN", "PROTOCOL_VERSION"]);

export interface HttpTransportOptions {
  /** Signs every request and checks every answer under the cluster secret. */
  guard?: PeerGuard;
  /** Without a guard: the client token sent as a bearer token, for peers that require one on /internal/. */
  token?: string;
  /** PEM CA bundle trusted for https peers (--tls-ca); absent: the system's CAs. */
  ca?: string;
  /** Largest answer read, in bytes. Default: ANSWER_MAX_BYTES. */
  maxAnswerBytes?: number;
}

/**
 * The largest peer answer read. Answers are bounded by their senders (fetch, scan
 * and keys by the batch byte budget, members by the protocol), but a `keys` answer
 * always lists one whole leaf (~24k entries, ~2.4 MB, per leaf with 100M keys), a
 * peer may run with a larger budget than ours, and a stranger's answer (a seed
 * without the secret is read before it is refused) must not exhaust memory either.
 */
export const ANSWER_MAX_BYTES = 256 * 1024 * 1024;

/** The real transport: JSON over HTTP/1.1 (or https) with keep-alive (Bun's fetch pools connections). */
export class HttpTransport implements PeerTransport {
  private readonly tls: { ca: string } | undefined;
  private readonly maxAnswerBytes: number;

  constructor(private readonly opts: HttpTransportOptions = {}) {
    this.tls = opts.ca === undefined ? undefined : { ca: opts.ca };
    this.maxAnswerBytes = opts.maxAnswerBytes ?? ANSWER_MAX_BYTES;
  }

  async call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal) {
    const path = `/internal/${op}`;
    const text = typeof body === "string" ? body : JSON.stringify(body);
    const signature = this.opts.guard?.signRequest(path, text);
    const bearer = !signature && this.opts.token !== undefined ? { authorization: `Bearer ${this.opts.token}` } : undefined;
    let res: Response;
    try {
      res = await fetch(url + path, {
        method: "POST",
        headers: { "content-type": "application/json", [P.PROTOCOL_HEADER]: P.PROTOCOL_VERSION, ...signature, ...bearer },
        body: text,
        signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs),
        tls: this.tls,
      });
    } catch (e) {
      if (signal?.aborted) throw new PeerError(0, "ABORTED", `${url} ${op}: aborted`);
      const why = e instanceof Error && e.name === "TimeoutError" ? `no answer within ${timeoutMs} ms` : String(e);
      throw new PeerError(0, "UNREACHABLE", `${url} ${op}: ${why}`);
    }
    let answer: string;
    try {
      answer = await readCapped(res, this.maxAnswerBytes);
    } catch (e) {
      if (e instanceof PeerError) throw new PeerError(res.status, e.code, `${url} ${op}: ${e.message}`);
      throw new PeerError(res.status, "UNREACHABLE", `${url} ${op}: answer cut off: ${String(e)}`);
    }
    if (signature) {
      // A peer that cannot prove the secret is not trusted with anything it says:
      // not its members (so it never becomes one), not its records, not its errors
      // (an unsigned NAME_TAKEN from a stranger on a seed URL must not stop a join).
      try {
        this.opts.guard!.checkAnswer(path, signature, answer, res.headers, url);
      } catch (e) {
        throw new PeerError(res.status, "CLUSTER_AUTH", `${url} ${op}: ${(e as Error).message}`);
      }
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer);
    } catch (e) {
      throw new PeerError(res.status, "BAD_ANSWER", `${url} ${op}: answer is not JSON (HTTP ${res.status})`);
    }
    if (!res.ok) {
      const err = (parsed as { error?: { code?: unknown; message?: unknown } })?.error;
      const code = typeof err?.code === "string" ? err.code : `HTTP_${res.status}`;
      const message = typeof err?.message === "string" ? err.message : `HTTP ${res.status}`;
      if (PASS_THROUGH.has(code)) throw new MakhzenError(code as "NAME_TAKEN", message);
      throw new PeerError(res.status, code, `${url} ${op}: ${message}`);
    }
    return answerCheckers[op](parsed);
  }
}

/** An answer's text, refused past `maxBytes` before it is all buffered. */
async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const declared = res.headers.get("content-length");
  const tooLarge = () => new PeerError(res.status, "ANSWER_TOO_LARGE", `answer exceeds ${maxBytes} bytes`);
  if (declared !== null && /^\d+$/.test(declared)) {
    // The usual case: our peers answer with a length, and the body cannot outgrow it.
    if (Number(declared) > maxBytes) {
      await res.body?.cancel();
      throw tooLarge();
    }
    return res.text();
  }
  if (!res.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += chunk.byteLength;
    if (size > maxBytes) throw tooLarge(); // leaving the loop cancels the stream
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * Peers in one process, for unit tests of the core without sockets. Messages are
 * round-tripped through JSON and the same validation as over HTTP. `cut(url)`
 * makes a node unreachable (a partition or a crash), `heal(url)` brings it back.
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

  async call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, _timeoutMs: number, signal?: AbortSignal) {
    this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
    await Promise.resolve(); // never answer synchronously, as a network would not
    const { failRate, maxDelayMs, random } = this.chaos;
    if (maxDelayMs > 0) await Bun.sleep(random() * maxDelayMs);
    if (signal?.aborted) throw new PeerError(0, "ABORTED", `${url} ${op}: aborted`);
    const service = this.nodes.get(url);
    if (!service || this.down.has(url)) throw new PeerError(0, "UNREACHABLE", `${url} ${op}: unreachable`);
    if (failRate > 0 && random() < failRate / 2) throw new PeerError(0, "UNREACHABLE", `${url} ${op}: request lost`);
    let answer: unknown;
    try {
      const req = checkRequest(op, JSON.parse(typeof body === "string" ? body : JSON.stringify(body)));
      if (op === "records") this.recordsCarried += (req as PeerRequest<"records">).records.length;
      const served = Promise.resolve(service[op](req));
      // An abort ends the wait for the answer, as it ends a fetch; the peer may still finish.
      answer = JSON.parse(JSON.stringify(await (signal ? raceAbort(served, signal, `${url} ${op}`) : served)));
    } catch (e) {
      // What the HTTP transport would see: the peer's error envelope, with its status.
      if (e instanceof MakhzenError && !PASS_THROUGH.has(e.code)) throw new PeerError(STATUS[e.code] ?? 400, e.code, `${url} ${op}: ${e.message}`);
      throw e;
    }
    if (failRate > 0 && random() < failRate / 2) throw new PeerError(0, "UNREACHABLE", `${url} ${op}: answer lost`);
    if (op === "fetch" || op === "scan") this.recordsCarried += (answer as { records: unknown[] }).records.length;
    return answerCheckers[op](answer);
  }
}

function raceAbort<T>(work: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new PeerError(0, "ABORTED", `${what}: aborted`));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
