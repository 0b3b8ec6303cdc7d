import { readFileSync } from "node:fs";
import { PeerSigner, SIGNATURE_HEADERS } from "../cluster/protocol/signing.ts";
import type { WallClock } from "../core/clock.ts";
import type { NodeConfig } from "../config.ts";
import { MakhzenError } from "../errors.ts";
import type { Logger } from "./log.ts";
import { LogLimiter } from "./log-limiter.ts";

/**
 * What a node refuses and why, in one place: protected mode (what it will not
 * listen on without credentials), the TLS material it loads, and the PeerGuard
 * that signs and checks every peer request and answer under a cluster secret.
 * Nothing here knows HTTP frameworks; src/http/ and src/transport.ts call in.
 */

/** Live refusal counters, read by /cluster and by metrics. Only ever incremented. */
export interface Refusals {
  /** Client requests answered 401: no token, or a token that matches neither --token nor --read-token. */
  clientUnauthorized: number;
  /** Client requests answered 403: a read token on a write route. */
  clientForbidden: number;
  /** Peer requests refused: unsigned, badly signed (another secret), outside the replay window, or replayed. */
  peerRequests: number;
  /** Peer answers refused: a peer that answered without proving the cluster secret. */
  peerAnswers: number;
}

export const newRefusals = (): Refusals => ({ clientUnauthorized: 0, clientForbidden: 0, peerRequests: 0, peerAnswers: 0 });

// ---- protected mode ----

/** Loopback as protected mode means it: 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, "");
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  if (h.startsWith("::ffff:")) return isLoopbackHost(h.slice(7));
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

const urlIsLoopback = (u: string): boolean => isLoopbackHost(new URL(u).hostname);

/**
 * Redis's protected mode, made stricter for a cluster. Returns why the node must
 * not start, or undefined. A node reachable beyond loopback without --token would
 * let anyone read and write every key; one whose peer API is reachable (or whose
 * peers are) beyond loopback without --cluster-secret would let anyone join it,
 * feed it writes through /internal/records, or read it all through /internal/scan.
 * `insecure` accepts both risks. Pure: tested without sockets.
 */
export function protectedModeProblem(config: NodeConfig): string | undefined {
  if (config.insecure) return undefined;
  const exposed = !isLoopbackHost(config.host);
  if (exposed && config.token === undefined) {
    return (
      `refusing to listen on ${config.host} without --token: anyone who can reach this port could read and write every key. ` +
      `Set --token (env MAKHZEN_TOKEN), listen on 127.0.0.1, or pass --insecure to accept the risk`
    );
  }
  if (config.clusterSecret !== undefined) return undefined;
  const remote = [...config.peers, ...(config.advertise ? [config.advertise] : [])].find((u) => !urlIsLoopback(u));
  if (exposed || remote !== undefined) {
    const where = exposed ? `listening on ${config.host}` : `with the peer ${remote} beyond loopback`;
    return (
      `refusing to start ${where} without --cluster-secret: anyone who can reach the peer API could join the cluster, ` +
      `inject writes and read every key. Set the same --cluster-secret (env MAKHZEN_CLUSTER_SECRET) on every node, ` +
      `or pass --insecure to accept the risk`
    );
  }
  return undefined;
}

// ---- TLS ----

export interface TlsMaterial {
  /** PEM certificate chain and key served by this node; absent: plain http. */
  cert?: string;
  key?: string;
  /** PEM CA bundle trusted for peers' certificates; absent: the system's CAs. */
  ca?: string;
}

/** Reads the TLS files named in the config; throws INVALID_CONFIG naming the option and the path. */
export function loadTls(config: NodeConfig): TlsMaterial {
  const read = (field: string, path: string | undefined): string | undefined => {
    if (path === undefined) return undefined;
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      throw new MakhzenError("INVALID_CONFIG", `${field} "${path}" cannot be read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  };
  return { cert: read("tlsCertFile", config.tlsCertFile), key: read("tlsKeyFile", config.tlsKeyFile), ca: read("tlsCaFile", config.tlsCaFile) };
}

// ---- the cluster secret ----

export interface PeerGuardOptions {
  secret: string;
  wallClock: WallClock;
  refusals: Refusals;
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

  /** Cheap first check, before a body is read: a request without a signature is refused unread. */
  checkSigned(path: string, headers: Headers, from: string | undefined): void {
    if (headers.get(SIGNATURE_HEADERS.signature) === null) this.refuse("request", path, from, "unsigned request (no cluster secret?)");
    const pre = this.signer.precheck(headers, this.opts.wallClock());
    if (!pre.ok) this.refuse("request", path, from, pre.reason);
  }

  checkRequest(path: string, body: string, headers: Headers, from: string | undefined): void {
    const v = this.signer.verify("POST", path, body, headers, this.opts.wallClock());
    if (!v.ok) this.refuse("request", path, from, v.reason);
  }

  /** Headers that sign an answer to the request that carried `requestHeaders`. */
  signAnswer(path: string, requestHeaders: Headers, body: string): Record<string, string> {
    return this.signer.sign("ANSWER", answerPath(path, requestHeaders.get(SIGNATURE_HEADERS.nonce)), body, this.opts.wallClock());
  }

  /** Checks an answer against the nonce of the request we signed (`sent`). */
  checkAnswer(path: string, sent: Record<string, string>, body: string, headers: Headers, from: string): void {
    const v = this.signer.verify("ANSWER", answerPath(path, sent[SIGNATURE_HEADERS.nonce] ?? null), body, headers, this.opts.wallClock());
    if (!v.ok) this.refuse("answer", path, from, v.reason === "missing signature headers" ? "unsigned answer (no cluster secret?)" : v.reason);
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

/** An answer is signed over its route and the nonce of the request it answers, so it cannot be replayed to another request. */
const answerPath = (path: string, nonce: string | null): string => `${path}#${nonce ?? ""}`;
