import type { Socket } from "bun";
import { PeerError } from "./peer-ops.ts";

/**
 * Replication batches over plain http, on connections kept open between them.
 *
 * Why not `fetch`: a node taking writes sends a batch to each peer every few
 * milliseconds, and a Bun fetch of one costs its caller ~100 µs of CPU (its
 * Request and Response objects, the promise chain, an AbortSignal pair, its HTTP
 * client thread), where writing the same request on a socket kept open and
 * reading the answer costs ~75 µs (docs/benchmarks.md, issue 13, section 11). The
 * requests are ours and so are the answers (a peer's Bun.serve, through its front
 * end's pipe): one POST with a Content-Length, answered with a status line, a few
 * headers and a body of known length (or chunked). So this client is small: one
 * request at a time per connection, idle connections kept per peer, and every
 * limit `fetch` had: the timeout, the caller's abort, the answer size cap.
 *
 * A kept connection the peer has closed meanwhile (its idle timeout, a restart)
 * fails the next request before any byte of an answer: that request is sent once
 * more on a new connection. Only `records` goes this way, whose merge is
 * idempotent, so even a request the peer did take and could not answer is safe to
 * send again; https and the other operations keep `fetch`.
 */

/** Where a peer listens: `host` as its URL writes it (the Host header), `hostname` as a socket connects to it. */
export interface Origin {
  hostname: string;
  port: number;
  host: string;
}

export interface RawAnswer {
  status: number;
  headers: Headers;
  text: string;
  /** Where the answer ended in the bytes read. */
  end: number;
}

/** Idle connections kept per peer; more requests at once open more, which close once done. */
const IDLE_PER_PEER = 4;
const CRLF2 = Buffer.from("\r\n\r\n");

interface Pending {
  resolve: (a: RawAnswer) => void;
  reject: (e: unknown) => void;
  /** Bytes of the answer read so far (a kept connection that fails before any is retried). */
  got: number;
}

interface Conn {
  socket: Socket<Conn> | undefined;
  pending: Pending | undefined;
  chunks: Buffer[];
  size: number;
  /** The answer's whole length once its head said (0: not known yet): nothing is joined or parsed before it is all here. */
  need: number;
  /** Request bytes the socket has not taken yet. */
  unsent: Uint8Array | undefined;
  closed: boolean;
}

export class KeptConnections {
  private readonly idle = new Map<string, Conn[]>();

  constructor(private readonly maxAnswerBytes: number) {}

  /** POSTs `body` to `path` of `host:port`; rejects with a TimeoutError, an AbortError, or a PeerError. */
  async post(to: Origin, path: string, headers: Record<string, string>, body: string, timeoutMs: number, signal?: AbortSignal): Promise<RawAnswer> {
    const { hostname, port, host: origin } = to;
    const bodyBytes = Buffer.byteLength(body);
    let head = `POST ${path} HTTP/1.1\r\nHost: ${origin}\r\nContent-Length: ${bodyBytes}\r\n`;
    for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
    // Written as a string (Bun encodes it on the way out); bytes are made only for a remainder the socket did not take.
    const request = `${head}\r\n${body}`;
    const requestBytes = Buffer.byteLength(head) + 2 + bodyBytes;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const kept = this.idle.get(origin)?.pop();
      try {
        return await this.exchange(kept ?? (await this.open(hostname, port, deadline, signal)), origin, request, requestBytes, deadline, signal);
      } catch (e) {
        // A kept connection closed under us before any answer: the next kept one, else a new one.
        if (kept === undefined || !(e instanceof Stale)) throw e;
      }
    }
  }

  /** Closes every idle connection. */
  close(): void {
    for (const conns of this.idle.values()) for (const c of conns) c.socket?.end();
    this.idle.clear();
  }

  private async open(hostname: string, port: number, deadline: number, signal?: AbortSignal): Promise<Conn> {
    const conn: Conn = { socket: undefined, pending: undefined, chunks: [], size: 0, need: 0, unsent: undefined, closed: false };
    const self = this;
    const connecting = Bun.connect<Conn>({
      hostname,
      port,
      data: conn,
      socket: {
        data(_s, bytes) {
          self.read(conn, bytes);
        },
        drain(s) {
          if (conn.unsent === undefined) return;
          const n = Math.max(s.write(conn.unsent), 0);
          conn.unsent = n < conn.unsent.length ? conn.unsent.subarray(n) : undefined;
        },
        close() {
          self.ended(conn);
        },
        error() {
          self.ended(conn);
        },
      },
    });
    let timeout: ReturnType<typeof setTimeout> | undefined;
    let onAbort: (() => void) | undefined;
    try {
      // A connect that hangs (a dropped SYN) gives way to the deadline and to the caller's abort alike.
      const socket = await Promise.race([
        connecting,
        new Promise<never>((_, reject) => {
          timeout = setTimeout(() => reject(timeoutError()), Math.max(0, deadline - Date.now()));
          if (signal?.aborted) return reject(abortError());
          signal?.addEventListener("abort", (onAbort = () => reject(abortError())));
        }),
      ]);
      // An idle connection does not keep the process alive (a request in flight has its timer).
      socket.unref();
      conn.socket = socket;
    } catch (e) {
      void connecting.then((s) => s.end(), () => {});
      if (e instanceof Error && (e.name === "TimeoutError" || e.name === "AbortError")) throw e;
      throw new PeerError(0, "UNREACHABLE", String(e));
    } finally {
      clearTimeout(timeout);
      if (onAbort) signal?.removeEventListener("abort", onAbort);
    }
    return conn;
  }

  private exchange(conn: Conn, origin: string, request: string, requestBytes: number, deadline: number, signal?: AbortSignal): Promise<RawAnswer> {
    return new Promise<RawAnswer>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        conn.pending = undefined;
      };
      const fail = (e: unknown) => {
        done();
        conn.closed = true;
        conn.socket?.terminate();
        reject(e);
      };
      const onAbort = () => fail(abortError());
      const timer = setTimeout(() => fail(timeoutError()), Math.max(0, deadline - Date.now()));
      if (signal?.aborted) return fail(abortError());
      signal?.addEventListener("abort", onAbort);
      conn.pending = {
        got: 0,
        reject: fail,
        resolve: (answer) => {
          done();
          // A peer may answer (a 413, a 401) before it has read the whole body: the
          // stream is then mid-request, and the next request must not follow it.
          if (conn.unsent !== undefined) {
            conn.closed = true;
            conn.socket?.terminate();
          } else if (conn.closed || answer.headers.get("connection")?.toLowerCase() === "close") conn.socket?.end();
          else this.keep(origin, conn);
          resolve(answer);
        },
      };
      if (conn.closed) return fail(new Stale());
      const n = Math.max(conn.socket!.write(request), 0);
      if (n < requestBytes) conn.unsent = Buffer.from(request).subarray(n);
    });
  }

  private keep(origin: string, conn: Conn): void {
    let conns = this.idle.get(origin);
    if (conns === undefined) this.idle.set(origin, (conns = []));
    if (conns.length < IDLE_PER_PEER) conns.push(conn);
    else conn.socket?.end();
  }

  /** Answer bytes: once the head and the whole body are here, the answer is done. */
  private read(conn: Conn, bytes: Buffer): void {
    const p = conn.pending;
    if (p === undefined) {
      // Nothing was asked: a peer that talks out of turn is not kept.
      conn.closed = true;
      conn.socket?.terminate();
      return;
    }
    p.got += bytes.length;
    conn.chunks.push(Buffer.from(bytes));
    conn.size += bytes.length;
    if (conn.size < conn.need) return;
    const all = conn.chunks.length === 1 ? conn.chunks[0]! : Buffer.concat(conn.chunks);
    conn.chunks = [all];
    const answer = parseAnswer(all, this.maxAnswerBytes);
    if (typeof answer === "number") {
      conn.need = answer;
      return;
    }
    if (answer === undefined) return;
    conn.chunks = [];
    conn.size = 0;
    conn.need = 0;
    if (answer instanceof PeerError) return p.reject(answer);
    // Bytes past the answer were never asked for: the connection is not kept.
    if (answer.end < all.length) conn.closed = true;
    p.resolve(answer);
  }

  private ended(conn: Conn): void {
    conn.closed = true;
    for (const [origin, conns] of this.idle) {
      const at = conns.indexOf(conn);
      if (at >= 0) conns.splice(at, 1);
      if (conns.length === 0) this.idle.delete(origin);
    }
    const p = conn.pending;
    if (p === undefined) return;
    p.reject(p.got === 0 ? new Stale() : new PeerError(0, "UNREACHABLE", "answer cut off: the connection closed"));
  }
}

/** A kept connection that closed before any answer came back (PeerError for the caller, retried once by `post`). */
class Stale extends PeerError {
  constructor() {
    super(0, "UNREACHABLE", "the connection closed before an answer");
  }
}

const timeoutError = (): Error => Object.assign(new Error("the peer did not answer in time"), { name: "TimeoutError" });
const abortError = (): Error => Object.assign(new Error("aborted"), { name: "AbortError" });

/** The longest answer head read, and the longest chunk-size line. */
const HEAD_MAX_BYTES = 64 * 1024;
const CHUNK_LINE_MAX_BYTES = 1024;

/** An answer past the cap (ANSWER_MAX_BYTES or the transport's own), by either way of reading it. */
export const answerTooLarge = (status: number, maxBytes: number): PeerError => new PeerError(status, "ANSWER_TOO_LARGE", `answer exceeds ${maxBytes} bytes`);

/**
 * The answer in `bytes` once it is whole; while more is to come, the length it
 * will have when known (a Content-Length), else undefined; a PeerError for an
 * answer over `maxBytes` or one that is not HTTP/1.1 as Bun writes it.
 */
export function parseAnswer(bytes: Buffer, maxBytes: number): RawAnswer | PeerError | number | undefined {
  // What arrives is bounded, not only the body it makes: a chunk-size line that never ended was kept
  // whole (a stranger on a member's address sent 136 MB in one records call), and framing can outweigh
  // its chunks. Bun writes large chunks, so twice the body and a head is room enough for a peer.
  if (bytes.length > 2 * maxBytes + HEAD_MAX_BYTES) return answerTooLarge(0, maxBytes);
  const end = bytes.indexOf(CRLF2);
  if (end < 0) return bytes.length > HEAD_MAX_BYTES ? new PeerError(0, "BAD_ANSWER", "answer head too large") : undefined;
  const lines = bytes.toString("latin1", 0, end).split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
  if (!status) return new PeerError(0, "BAD_ANSWER", "not an HTTP/1.1 answer");
  const headers = new Headers();
  for (let i = 1; i < lines.length; i++) {
    const at = lines[i]!.indexOf(":");
    if (at <= 0) return new PeerError(0, "BAD_ANSWER", "malformed answer header");
    try {
      headers.append(lines[i]!.slice(0, at).trim(), lines[i]!.slice(at + 1).trim());
    } catch {
      return new PeerError(0, "BAD_ANSWER", "malformed answer header"); // a name or value Headers refuses (a space, a NUL)
    }
  }
  const code = Number(status[1]);
  const tooLarge = () => answerTooLarge(code, maxBytes);
  const start = end + 4;
  if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") return chunked(bytes, start, code, headers, maxBytes, tooLarge);
  const declared = headers.get("content-length");
  if (declared === null || !/^\d+$/.test(declared)) return new PeerError(code, "BAD_ANSWER", "answer without a length");
  const length = Number(declared);
  if (length > maxBytes) return tooLarge();
  if (bytes.length < start + length) return start + length;
  return { status: code, headers, text: bytes.toString("utf8", start, start + length), end: start + length };
}

function chunked(bytes: Buffer, at: number, status: number, headers: Headers, maxBytes: number, tooLarge: () => PeerError): RawAnswer | PeerError | undefined {
  const parts: Buffer[] = [];
  let size = 0;
  for (;;) {
    const eol = bytes.indexOf("\r\n", at);
    // A size line is a few hex digits (and extensions no peer sends): one that runs on is no peer's.
    if ((eol < 0 ? bytes.length : eol) - at > CHUNK_LINE_MAX_BYTES) return new PeerError(status, "BAD_ANSWER", "malformed chunk");
    if (eol < 0) return undefined;
    const n = parseInt(bytes.toString("latin1", at, eol).split(";")[0]!, 16);
    if (!Number.isFinite(n) || n < 0) return new PeerError(status, "BAD_ANSWER", "malformed chunk");
    size += n;
    if (size > maxBytes) return tooLarge();
    if (n === 0) {
      // The last chunk, then (no trailers from our peers) an empty line.
      if (bytes.length < eol + 4) return undefined;
      return { status, headers, text: Buffer.concat(parts).toString("utf8"), end: eol + 4 };
    }
    if (bytes.length < eol + 2 + n + 2) return undefined;
    parts.push(bytes.subarray(eol + 2, eol + 2 + n));
    at = eol + 2 + n + 2;
  }
}
