import { timingSafeEqual } from "node:crypto";
import type { WallClock } from "../../core/clock.ts";
import { MakhzenError } from "../../errors.ts";
import type { Logger } from "../../ops/log.ts";
import { LogLimiter } from "../../ops/log-limiter.ts";

/**
 * Peer signing under the cluster secret, in one place: PeerSigner makes and checks
 * HMAC signatures, and PeerGuard applies them to every peer request and answer,
 * counting and logging what it refuses. Nothing here knows HTTP frameworks: the
 * peer routes (src/http/peer.ts) and the HTTP transport pass headers and bodies in
 * and get a verdict out. Client tokens are another matter (src/ops/tokens.ts).
 */

export const SIGNATURE_HEADERS = {
  timestamp: "x-makhzen-timestamp",
  nonce: "x-makhzen-nonce",
  signature: "x-makhzen-signature",
  /** The SHA-256 of the body, which the signature covers: a receiver checks the signature before it reads the body, then the body against it. */
  bodyHash: "x-makhzen-body-sha256",
} as const;

export interface PeerSignerOptions {
  secret: string;
  /** A signed request older or newer than this, in ms, is refused (clock skew plus network delay). */
  replayWindowMs?: number;
  /**
   * Nonces remembered to refuse an exact replay inside the window. Bounds memory;
   * past it the oldest are forgotten early, which only matters above maxNonces
   * signed requests per window (100k per 30 s is far above replication's batch rate).
   */
  maxNonces?: number;
}

export type Verdict = { ok: true } | { ok: false; reason: string };

const HEX64 = /^[0-9a-f]{64}$/;
const sha256 = (text: string): string => new Bun.CryptoHasher("sha256").update(text).digest("hex");

/**
 * HMAC-SHA256 request signing between peers. The signature covers the method,
 * path (with query), a timestamp, a random nonce and the SHA-256 of the body, so a
 * captured request cannot be altered, and cannot be replayed: outside the window
 * its timestamp is refused, inside it its nonce has been seen. The secret itself
 * never crosses the wire.
 *
 * The body's hash travels in a header of its own, so the signature is proved from
 * the headers alone (verifyHead), before the body is read: headers that only look
 * signed had every stranger's body read and held against the peers' shared budget
 * of unverified bytes (http/peer.ts) until --body-timeout, and eight such
 * connections refused every real peer, which then declared the node dead. The body
 * is then checked against its hash (verifyBody).
 */
export class PeerSigner {
  private readonly windowMs: number;
  private readonly maxNonces: number;
  /** nonce -> timestamp; insertion order is age order, so trimming drops the oldest. */
  private readonly seen = new Map<string, number>();

  constructor(private readonly opts: PeerSignerOptions) {
    this.windowMs = opts.replayWindowMs ?? 30_000;
    this.maxNonces = opts.maxNonces ?? 100_000;
  }

  sign(method: string, pathAndQuery: string, body: string, nowMs: number): Record<string, string> {
    const ts = String(nowMs);
    const nonce = crypto.randomUUID();
    const bodyHash = sha256(body);
    return {
      [SIGNATURE_HEADERS.timestamp]: ts,
      [SIGNATURE_HEADERS.nonce]: nonce,
      [SIGNATURE_HEADERS.bodyHash]: bodyHash,
      [SIGNATURE_HEADERS.signature]: this.mac(method, pathAndQuery, ts, nonce, bodyHash),
    };
  }

  /**
   * What can be checked without the secret: the headers are there and well formed,
   * the timestamp is inside the window, the nonce is new.
   */
  precheck(headers: Headers, nowMs: number): Verdict {
    const ts = headers.get(SIGNATURE_HEADERS.timestamp);
    const nonce = headers.get(SIGNATURE_HEADERS.nonce);
    const sig = headers.get(SIGNATURE_HEADERS.signature);
    if (!ts || !nonce || !sig) return { ok: false, reason: "missing signature headers" };
    const bodyHash = headers.get(SIGNATURE_HEADERS.bodyHash);
    if (bodyHash === null) return { ok: false, reason: "signature without a body hash (a node of an older release?)" };
    if (!HEX64.test(sig) || !HEX64.test(bodyHash) || nonce.length > 64) return { ok: false, reason: "malformed signature headers" };
    const t = Number(ts);
    if (!Number.isSafeInteger(t) || Math.abs(nowMs - t) > this.windowMs) {
      return { ok: false, reason: "timestamp outside the replay window" };
    }
    if (this.seen.has(nonce)) return { ok: false, reason: "replayed request" };
    return { ok: true };
  }

  /**
   * The signature, proved from the headers alone (over the body hash they carry):
   * before the body is read. Its nonce is spent here, so one captured set of headers
   * cannot hold two reads at once.
   */
  verifyHead(method: string, pathAndQuery: string, headers: Headers, nowMs: number): Verdict {
    const pre = this.precheck(headers, nowMs);
    if (!pre.ok) return pre;
    const ts = headers.get(SIGNATURE_HEADERS.timestamp)!;
    const nonce = headers.get(SIGNATURE_HEADERS.nonce)!;
    const sig = headers.get(SIGNATURE_HEADERS.signature)!;
    // Both are 64 hex digits (precheck checked `sig`), so an equal-length compare leaks nothing.
    const expected = this.mac(method, pathAndQuery, ts, nonce, headers.get(SIGNATURE_HEADERS.bodyHash)!);
    if (!timingSafeEqual(Buffer.from(sig, "hex"), Buffer.from(expected, "hex"))) {
      return { ok: false, reason: "bad signature (different cluster secret?)" };
    }
    this.remember(nonce, Number(ts), nowMs);
    return { ok: true };
  }

  /** The body against the hash its signed headers carry (verifyHead proved them). */
  verifyBody(body: string, headers: Headers): Verdict {
    const bodyHash = headers.get(SIGNATURE_HEADERS.bodyHash);
    if (bodyHash === null || bodyHash !== sha256(body)) return { ok: false, reason: "the body does not match its signed hash" };
    return { ok: true };
  }

  /** Headers and body together, both steps at once. */
  verify(method: string, pathAndQuery: string, body: string, headers: Headers, nowMs: number): Verdict {
    const head = this.verifyHead(method, pathAndQuery, headers, nowMs);
    return head.ok ? this.verifyBody(body, headers) : head;
  }

  private mac(method: string, path: string, ts: string, nonce: string, bodyHash: string): string {
    return new Bun.CryptoHasher("sha256", this.opts.secret)
      .update(`${method.toUpperCase()}\n${path}\n${ts}\n${nonce}\n${bodyHash}`)
      .digest("hex");
  }

  private remember(nonce: string, ts: number, nowMs: number): void {
    this.seen.set(nonce, ts);
    // Forget nonces whose timestamps fell out of the window: they are refused by time anyway.
    for (const [n, at] of this.seen) {
      if (this.seen.size <= this.maxNonces && nowMs - at <= this.windowMs) break;
      this.seen.delete(n);
    }
  }
}

/** What PeerGuard counts: a part of the node's Refusals. */
export interface PeerRefusals {
  peerRequests: number;
  peerAnswers: number;
}

export interface PeerGuardOptions {
  secret: string;
  wallClock: WallClock;
  /** Counters of refused peer requests and answers (ops/security.ts Refusals); only ever incremented. */
  refusals: PeerRefusals;
  /** One warning per refusal: route, from, reason (rate limited per peer and reason). */
  log: Logger;
  /** A signature this far from our clock is refused, in ms (clock skew plus transit). */
  replayWindowMs?: number;
}

/**
 * Authenticates the peer protocol with a shared secret. Requests are signed by
 * the caller and checked by the receiver before their body is parsed; answers are
 * signed by the receiver, bound to the request's nonce, and checked by the caller.
 * So a node that cannot prove the secret can neither join, nor inject records, nor
 * get anything out of a secured node: it is never told about members, and since it
 * never becomes one, no record is ever sent to it.
 * Contract: `check*` returns normally or throws CLUSTER_AUTH after counting and
 * logging the refusal; nothing else throws.
 */
export class PeerGuard {
  private readonly signer: PeerSigner;
  private readonly limiter: LogLimiter;

  constructor(private readonly opts: PeerGuardOptions) {
    this.signer = new PeerSigner({ secret: opts.secret, replayWindowMs: opts.replayWindowMs });
    this.limiter = new LogLimiter(opts.wallClock);
  }

  /** Headers that sign a POST of `body` to `path` (e.g. /internal/records). */
  signRequest(path: string, body: string): Record<string, string> {
    return this.signer.sign("POST", path, body, this.opts.wallClock());
  }

  /**
   * The first check, before a body is read: the signature, proved over the body hash
   * the headers carry. A request that does not prove the secret is refused unread.
   */
  checkSigned(path: string, headers: Headers, from: string | undefined): void {
    if (headers.get(SIGNATURE_HEADERS.signature) === null) this.refuse("request", path, from, "unsigned request (no cluster secret?)");
    const v = this.signer.verifyHead("POST", path, headers, this.opts.wallClock());
    if (!v.ok) this.refuse("request", path, from, v.reason);
  }

  /** The body of a request checkSigned passed, against its signed hash. */
  checkRequest(path: string, body: string, headers: Headers, from: string | undefined): void {
    const v = this.signer.verifyBody(body, headers);
    if (!v.ok) this.refuse("request", path, from, v.reason);
  }

  /** Headers that sign an answer to the request that carried `requestHeaders`. */
  signAnswer(path: string, requestHeaders: Headers, body: string): Record<string, string> {
    return this.signer.sign("ANSWER", answerPath(path, requestHeaders.get(SIGNATURE_HEADERS.nonce)), body, this.opts.wallClock());
  }

  /**
   * An answer's signature, proved from its headers alone (over the body hash they
   * carry and the nonce of the request we signed, `sent`), before its body is read.
   * Headers that only looked signed had a stranger's answer read whole, up to the
   * transport's cap, and only then refused: a stranger on a dead member's address,
   * or on a seed's, answering 250 MB to every call took a node past 2 GB.
   */
  checkAnswerHead(path: string, sent: Record<string, string>, headers: Headers, from: string, status: number): void {
    const v = this.signer.verifyHead("ANSWER", answerPath(path, sent[SIGNATURE_HEADERS.nonce] ?? null), headers, this.opts.wallClock());
    if (!v.ok) this.refuse("answer", path, from, v.reason === "missing signature headers" ? unsignedAnswer(status) : v.reason);
  }

  /** The body of an answer checkAnswerHead passed, against its signed hash. */
  checkAnswerBody(path: string, body: string, headers: Headers, from: string): void {
    const v = this.signer.verifyBody(body, headers);
    if (!v.ok) this.refuse("answer", path, from, v.reason);
  }

  private refuse(kind: "request" | "answer", path: string, from: string | undefined, reason: string): never {
    if (kind === "request") this.opts.refusals.peerRequests++;
    else this.opts.refusals.peerAnswers++;
    this.limiter.line("peer.auth-refused", `${kind} ${from ?? "unknown"} ${reason}`, (alsoRefusedSinceLastLine) =>
      this.opts.log.warn(`refused peer ${kind}`, { route: path, from: from ?? "unknown", reason, alsoRefusedSinceLastLine }),
    );
    throw new MakhzenError("CLUSTER_AUTH", `peer ${kind} refused: ${reason}`);
  }
}

/**
 * Why an unsigned answer is refused. A success can only be a stranger's (a peer signs
 * them all); an error may be a peer's own refusal made before it could check the
 * request's signature (503 while its peer bodies are all being read, 413, a timeout),
 * which it cannot sign: the status is said, so a busy peer is not taken for a
 * missing secret, and a 401 (our signature refused) is said to be one.
 */
const unsignedAnswer = (status: number): string => {
  if (status >= 200 && status <= 299) return "unsigned answer (no cluster secret?)";
  // A 401 is the peer refusing our signature: nearly always a different secret there (its own log says "bad signature").
  if (status === 401) return "unsigned HTTP 401 answer (the peer refused our signature: a different cluster secret there, or none)";
  return `unsigned HTTP ${status} answer (refused before our signature was checked, or no cluster secret there)`;
};

/** An answer is signed over its route and the nonce of the request it answers, so it cannot be replayed to another request. */
const answerPath = (path: string, nonce: string | null): string => `${path}#${nonce ?? ""}`;
