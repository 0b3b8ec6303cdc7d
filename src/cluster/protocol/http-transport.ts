import { MakhzenError } from "../../errors.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "./messages.ts";
import { aborted, checkAnswer, noAnswer, NOT_SENT, PASS_THROUGH, PeerError, type PeerOp, type PeerRequest, type PeerTransport } from "./peer-ops.ts";
import type { PeerGuard } from "./signing.ts";
import { answerTooLarge, KeptConnections, type Origin } from "./http-client.ts";

export interface HttpTransportOptions {
  /** Signs every request and checks every answer under the cluster secret. */
  guard?: PeerGuard;
  /** Without a guard: the client token sent as a bearer token, for peers that require one on /internal/. */
  token?: string;
  /**
   * Which peer URLs the token may go to (absent: any). Protected mode checks the
   * peers a node is started with, but a member learned later (from a seed's
   * answer, unsigned without a secret) could be anywhere: the write token went to
   * it in clear. node.ts passes loopback only, unless --insecure.
   */
  tokenTo?: (url: string) => boolean;
  /** PEM CA bundle trusted for https peers (--tls-ca); absent: the system's CAs. */
  ca?: string;
  /** Largest answer read, in bytes. Default: ANSWER_MAX_BYTES. */
  maxAnswerBytes?: number;
}

/**
 * The largest peer answer read. Answers are bounded by their senders (fetch, scan
 * and keys by the batch byte budget, members by the protocol), but a `keys` answer
 * always lists one whole leaf (~24k entries, ~2.4 MB, per leaf with 100M keys), a
 * peer may run with a larger budget than ours, and a stranger's answer (to a node
 * without a secret; under one, an answer is refused from its headers, unread) must
 * not exhaust memory either.
 */
export const ANSWER_MAX_BYTES = 256 * 1024 * 1024;
/**
 * Largest answer read on a kept connection, which carries only `records` (an
 * acknowledgement: two counts and at most 100,000 indices, under 1 MB). Its answer
 * is read whole before its signature is checked, so a stranger on a member's
 * address can make a node hold no more than this per call.
 */
export const KEPT_ANSWER_MAX_BYTES = 2 * 1024 * 1024;

/**
 * Ops whose answers are small whatever the data, capped below ANSWER_MAX_BYTES. A
 * signature covers an answer's body hash, not its length, so without TLS a process
 * on a dead member's address can relay a live member's signed answer with a longer
 * body, which is read to its cap before its hash fails; heartbeats go to that
 * address every interval. A member list is at most 10,000 members of a few hundred
 * bytes each; `records` and `leave` answer counts.
 */
const SMALL_ANSWERS: Partial<Record<PeerOp, number>> = {
  join: 32 * 1024 * 1024,
  gossip: 32 * 1024 * 1024,
  members: 32 * 1024 * 1024,
  leave: 1024 * 1024,
  records: KEPT_ANSWER_MAX_BYTES,
};

/**
 * The real transport: JSON over HTTP/1.1 (or https) with keep-alive. Replication
 * batches (`records`) to an http peer go on connections of our own
 * (http-client.ts: the hot path, every few ms to each peer under load); the rest,
 * and everything over https, through Bun's fetch, which pools its connections.
 */
export class HttpTransport implements PeerTransport {
  private readonly tls: { ca: string } | undefined;
  private readonly maxAnswerBytes: number;
  private readonly kept: KeptConnections;
  /** Host and port of each http peer URL seen, parsed once. */
  private readonly origins = new Map<string, Origin | null>();
  private readonly closing = new AbortController();

  constructor(private readonly opts: HttpTransportOptions = {}) {
    this.tls = opts.ca === undefined ? undefined : { ca: opts.ca };
    this.maxAnswerBytes = opts.maxAnswerBytes ?? ANSWER_MAX_BYTES;
    // The kept connections carry `records` only: its cap, as the fetch path reads it.
    this.kept = new KeptConnections(this.answerCap("records"));
  }

  /**
   * Closes the connections kept open for replication batches, and ends every call
   * still waiting (aborted): a read waiting on a silent peer kept an embedded app's
   * items().get, and its process, alive until its timeout, after close().
   */
  close(): void {
    this.closing.abort();
    this.kept.close();
  }

  async call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, caller?: AbortSignal) {
    const signal = caller ? AbortSignal.any([caller, this.closing.signal]) : this.closing.signal;
    const path = `/internal/${op}`;
    const text = typeof body === "string" ? body : JSON.stringify(body);
    const signature = this.opts.guard?.signRequest(path, text);
    const sendToken = !signature && this.opts.token !== undefined && (this.opts.tokenTo?.(url) ?? true);
    const bearer = sendToken ? { authorization: `Bearer ${this.opts.token}` } : undefined;
    const headers = { "content-type": "application/json", "accept-encoding": "identity", [PROTOCOL_HEADER]: PROTOCOL_VERSION, ...signature, ...bearer };
    const origin = op === "records" ? this.origin(url) : null;
    if (origin !== null) {
      let raw;
      try {
        raw = await this.kept.post(origin, path, headers, text, timeoutMs, signal);
      } catch (e) {
        throw noAnswerError(e, `${url} ${op}`, timeoutMs, signal);
      }
      return this.answered(url, op, path, signature, raw.status, raw.headers, raw.text);
    }
    let res: Response;
    try {
      res = await fetch(url + path, {
        method: "POST",
        headers,
        body: text,
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        tls: this.tls,
        // A peer never redirects: one that does is answered as the 3xx it is, not followed elsewhere.
        redirect: "manual",
      });
    } catch (e) {
      throw noAnswerError(e, `${url} ${op}`, timeoutMs, signal);
    }
    if (signature) {
      try {
        this.opts.guard!.checkAnswerHead(path, signature, res.headers, url, res.status);
      } catch (e) {
        void res.body?.cancel().catch(() => {});
        throw new PeerError(res.status, "CLUSTER_AUTH", `${url} ${op}: ${(e as Error).message}`);
      }
    }
    let answer: string;
    try {
      answer = await readCapped(res, this.answerCap(op));
    } catch (e) {
      if (e instanceof PeerError) throw new PeerError(res.status, e.code, `${url} ${op}: ${e.message}`);
      throw new PeerError(res.status, "UNREACHABLE", `${url} ${op}: answer cut off: ${String(e)}`);
    }
    return this.answered(url, op, path, signature, res.status, res.headers, answer, true);
  }

  /**
   * An answer read whole, by either way: its signature checked (its head already, on
   * the fetch path, before the body was read; a kept connection's answers are small,
   * capped at KEPT_ANSWER_MAX_BYTES), parsed, an error thrown as the peer meant it.
   */
  private answered<O extends PeerOp>(url: string, op: O, path: string, signature: Record<string, string> | undefined, status: number, headers: Headers, answer: string, headChecked = false) {
    if (signature) {
      // A peer that cannot prove the secret is not trusted with anything it says:
      // not its members (so it never becomes one), not its records, not its errors
      // (an unsigned NAME_TAKEN from a stranger on a seed URL must not stop a join).
      try {
        if (!headChecked) this.opts.guard!.checkAnswerHead(path, signature, headers, url, status);
        this.opts.guard!.checkAnswerBody(path, answer, headers, url);
      } catch (e) {
        throw new PeerError(status, "CLUSTER_AUTH", `${url} ${op}: ${(e as Error).message}`);
      }
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer);
    } catch (e) {
      throw new PeerError(status, "BAD_ANSWER", `${url} ${op}: answer is not JSON (HTTP ${status})`);
    }
    if (status < 200 || status > 299) {
      const err = (parsed as { error?: { code?: unknown; message?: unknown } })?.error;
      const code = typeof err?.code === "string" ? err.code : `HTTP_${status}`;
      const message = typeof err?.message === "string" ? err.message : `HTTP ${status}`;
      if (PASS_THROUGH.has(code)) throw new MakhzenError(code as "NAME_TAKEN", message);
      throw new PeerError(status, code, `${url} ${op}: ${message}`);
    }
    return checkAnswer(op, parsed);
  }

  /** The largest answer to `op` read: its own cap (SMALL_ANSWERS), never past the transport's. */
  private answerCap(op: PeerOp): number {
    return Math.min(this.maxAnswerBytes, SMALL_ANSWERS[op] ?? Infinity);
  }

  /** Where an http peer URL points; null for https (fetch, with its TLS) or one that does not parse. */
  private origin(url: string): Origin | null {
    let o = this.origins.get(url);
    if (o === undefined) {
      let u: URL | undefined;
      try {
        u = new URL(url);
      } catch {
        u = undefined;
      }
      o = u?.protocol === "http:" ? { hostname: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || 80), host: u.host } : null;
      // Peer URLs are members' addresses: few, but a bound keeps a churning cluster's map small.
      if (this.origins.size >= 1024) this.origins.clear();
      this.origins.set(url, o);
    }
    return o;
  }
}

/**
 * What a call that got no answer throws, by either way (fetch or a kept
 * connection): the caller's abort, the timeout, a PeerError named with the call,
 * or UNREACHABLE.
 */
function noAnswerError(e: unknown, what: string, timeoutMs: number, signal?: AbortSignal): Error {
  if (signal?.aborted) return aborted(what);
  if (e instanceof Error && e.name === "TimeoutError") return noAnswer(what, timeoutMs);
  if (e instanceof PeerError) return new PeerError(e.status, e.code, `${what}: ${e.message}`);
  // Refused at connect (a node stopped, or stopping: its port closed): nothing was sent.
  if ((e as { code?: unknown } | null)?.code === "ECONNREFUSED") return new PeerError(0, NOT_SENT, `${what}: ${String(e)}`);
  return new PeerError(0, "UNREACHABLE", `${what}: ${String(e)}`);
}

/** An answer's text, refused past `maxBytes` before it is all buffered. */
async function readCapped(res: Response, maxBytes: number): Promise<string> {
  // fetch inflates a compressed body whatever we asked for, past any cap counted on the wire (0.6 MB of
  // gzip made 600 MiB): peers never compress, so an answer that says it is compressed is no peer's.
  const encoding = res.headers.get("content-encoding");
  if (encoding !== null && encoding.trim().toLowerCase() !== "identity") {
    await res.body?.cancel().catch(() => {});
    throw new PeerError(res.status, "BAD_ANSWER", `answer is compressed (Content-Encoding: ${encoding.slice(0, 40)}), which no peer sends`);
  }
  const declared = res.headers.get("content-length");
  const tooLarge = () => answerTooLarge(res.status, maxBytes);
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
