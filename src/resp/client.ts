import type { Socket } from "bun";
import type { Logger } from "../ops/log.ts";
import type { Session, Shared } from "./command.ts";
import { dispatch, refuseTooLarge } from "./dispatch.ts";
import { RespParser, UNAUTHENTICATED_LIMITS, type Limits } from "./parser.ts";
import { errorReply, Out, replyBytes, type Proto, type Reply } from "./reply.ts";

/**
 * One client connection: bytes in, commands run one after another, replies out
 * in the order the commands came.
 *
 * Ordering: a reply that is not ready yet (a write waiting for fsync=always or
 * `w=`) holds back the replies behind it, never the commands: those already
 * ran, as a pipelined client expects of Redis.
 *
 * Memory: a client that sends faster than it reads would make the node buffer
 * replies without end (2,000 pipelined GETs of a 1 MB value are 2 GB). So a
 * connection runs the commands of a read one at a time and stops as soon as
 * OUTPUT_HIGH_WATER bytes of replies are unsent (or MAX_WAITING replies are not
 * ready): the rest of the read stays unparsed in the parser, the socket is
 * paused (TCP pushes back on the client), and when the socket drains the
 * connection goes on where it stopped, so answers stay in order. What one
 * connection holds is then about the high-water mark plus one reply. A reply
 * that would leave more than `maxOutputBytes` unsent (an MGET of a large value
 * named thousands of times) is measured before it is written (replyBytes: stored
 * lengths, nothing decoded or copied) and answered with an error instead, and the
 * connection goes on; Redis would close the client (client-output-buffer-limit).
 * Should output still pass the limit, the client is closed and everything freed.
 *
 * Output goes to the socket in slices of at most WRITE_SLICE bytes: a partial
 * write keeps the socket watched for writability, so a peer that resets a
 * paused connection is noticed (Bun's `close` fires) and the connection is
 * released. (A single multi-gigabyte write could leave a paused socket watched
 * for nothing, and its `close` never came.)
 *
 * A write the kernel refuses is the end of the connection, and we close it
 * ourselves. When the peer resets while the node is still sending (a client
 * that asked for a large reply and went away), Bun's `write` answers -1 and
 * leaves the socket open: the failed send consumed the socket's pending error,
 * and a paused socket does not read, so nothing would ever fire `close` and the
 * connection, its output and its descriptor were held until the node stopped.
 */

/** Unsent reply bytes past which a connection stops running commands and reading: 1 MiB, ~10k small replies. */
export const OUTPUT_HIGH_WATER = 1024 * 1024;
/** Replies waiting on a write (fsync, `w=`) past which a connection stops running commands and reading. */
export const MAX_WAITING = 10_000;
/** Largest single socket write: 1 MiB, so a write is partial rather than refused, and never copies gigabytes. */
const WRITE_SLICE = 1024 * 1024;

/** What bounds one connection: the parser's limits, and the output past which the client is closed. */
export interface ClientLimits extends Limits {
  /** Unsent reply bytes past which the client is closed (Redis's client-output-buffer-limit hard limit). */
  maxOutputBytes: number;
}

/**
 * The error answered in place of a reply too large for the connection's output
 * limit. `applied`: the reply of commands that already ran (EXEC's), which the
 * error must not let a client take for a failure: their writes stand.
 */
export const outputLimitError = (bytes: number, limit: number, applied = false): string =>
  applied
    ? `ERR EXEC ran and its commands were applied, but its reply of ${bytes} bytes exceeds this connection's output limit of ${limit} bytes, so it is not sent`
    : `ERR reply of ${bytes} bytes exceeds this connection's output limit of ${limit} bytes`;

interface Waiting {
  reply: Reply | Promise<Reply>;
  proto: Proto;
  /** A pending reply's settle handler is attached (once). */
  watched?: boolean;
}

export class Client {
  private parser: RespParser;
  private readonly out = new Out();
  /** Replies behind one that is not ready, in order; empty on the fast path. */
  private readonly waiting: Waiting[] = [];
  private head = 0;
  private unsent: Uint8Array[] = [];
  private unsentBytes = 0;
  private closeAfterFlush = false;
  /** The client half-closed (onEnd): what it sent is all there will be. */
  private ended = false;
  private closed = false;
  private paused = false;

  constructor(
    private readonly socket: Socket<Client>,
    private readonly shared: Shared,
    readonly session: Session,
    private readonly limits: ClientLimits,
    private readonly log: Logger,
  ) {
    this.parser = new RespParser(this.parserLimits());
  }

  onData(chunk: Uint8Array): void {
    if (this.closeAfterFlush || this.closed) return;
    this.parser.push(chunk);
    this.run();
  }

  onDrain(): void {
    this.run();
  }

  /**
   * The node is stopping (server.ts drain): run no more commands, and close once the
   * replies of those already run are sent. A command read and not yet run is dropped
   * unanswered, as are later reads. Idempotent.
   */
  finish(): void {
    if (this.closed) return;
    this.closeAfterFlush = true;
    this.pump();
  }

  /**
   * The client half-closed: nothing more will be read. The commands it sent still
   * run, in order (one may be waiting for a walk or a forward to settle), and the
   * connection ends once their replies are sent (run, at the end of what was read).
   */
  onEnd(): void {
    if (this.closed) return;
    this.ended = true;
    this.run();
  }

  /** The connection is gone (closed by either side, or failed): forget it and free what it held. Idempotent. */
  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.shared.sessions.delete(this.session.id);
    this.shared.stats.outputBytes -= this.unsentBytes;
    this.unsent = [];
    this.unsentBytes = 0;
    this.waiting.length = 0;
    this.head = 0;
    this.out.take();
    this.parser = new RespParser(UNAUTHENTICATED_LIMITS);
  }

  /** Bytes of replies written but not yet taken by the socket. */
  get buffered(): number {
    return this.unsentBytes;
  }

  /** Before AUTH the parser takes only small commands; after it (and until RESET), the node's limits. */
  private parserLimits(): Limits {
    return this.session.access === undefined ? UNAUTHENTICATED_LIMITS : this.limits;
  }

  private pending(): number {
    return this.waiting.length - this.head;
  }

  /** Whether the output has no room for another command's reply. */
  private full(): boolean {
    return this.unsentBytes + this.out.bytes >= OUTPUT_HIGH_WATER || this.pending() >= MAX_WAITING;
  }

  /**
   * Runs the commands held, one at a time, while the output has room, sending
   * as it goes; stops when it is full (drain or a reply settling calls again)
   * or when nothing complete is left.
   */
  private run(): void {
    for (;;) {
      let stoppedFull = false;
      while (!this.closeAfterFlush && !this.closed) {
        if (this.full()) {
          stoppedFull = true;
          break;
        }
        // A command the connection's next ones must wait for (dispatch.ts: a walk in slices, a
        // forward) is pending: take no more until it settles (settle runs this again). Its effect
        // on the session (MULTI, HELLO 3, QUIT, AUTH's limits) must be in place before the next
        // command is parsed and dispatched, not only before it runs.
        if (this.session.tail !== undefined) break;
        const args = this.parser.next();
        if (args === undefined) {
          if (this.parser.error !== undefined) this.protocolError(this.parser.error);
          // Half-closed, and every command it sent has been taken: end once their replies are out.
          else if (this.ended) this.closeAfterFlush = true;
          break;
        }
        if (isHttpLine(args[0]!)) return this.crossProtocol();
        // In the protocol as the command left it: HELLO 3's own answer is RESP3.
        const discarded = this.parser.discarded;
        this.answer(discarded === 0 ? dispatch(this.shared, this.session, args) : refuseTooLarge(this.shared, this.session, discarded, args, this.parser.discardedAt), this.session.proto);
        // AUTH (or RESET) in this read sets the limits the next command of the same read is parsed under.
        this.parser.limits = this.parserLimits();
        if (this.session.closing) this.closeAfterFlush = true;
        if (this.unsentBytes + this.out.bytes > this.limits.maxOutputBytes) return this.overflow();
      }
      if (this.closed) return;
      this.pump();
      // The socket took the output at once: go on with what the read still holds.
      if (!stoppedFull || this.full() || this.closed) return;
    }
  }

  private protocolError(error: string): void {
    this.log.debug("protocol error: closing the connection", { client: this.session.addr, error });
    this.answer(errorReply(`ERR ${error}`), this.session.proto);
    this.closeAfterFlush = true;
  }

  /** Past the output hard limit: the client does not read what it asks for. Close it and free everything. */
  private overflow(): void {
    const bytes = this.unsentBytes + this.out.bytes;
    this.shared.lines.line("resp.output-limit", hostOf(this.session.addr), (suppressed) =>
      this.log.warn("closing a client whose unread replies passed the output limit", { client: this.session.addr, bytes, limit: this.limits.maxOutputBytes, suppressed }),
    );
    this.onClose();
    this.socket.terminate();
  }

  /**
   * HTTP on the RESP port: a browser page can POST to localhost without a preflight,
   * and each line of its body ran as a command (`SET`, `FLUSHDB`). As Redis does for a
   * command named POST or `Host:`, the connection is closed, its commands unrun.
   */
  private crossProtocol(): void {
    this.shared.lines.line("resp.cross-protocol", hostOf(this.session.addr), (suppressed) =>
      this.log.warn("Possible SECURITY ATTACK detected: HTTP (POST or Host:) sent to the RESP port, as in cross-protocol scripting; connection closed", { client: this.session.addr, suppressed }),
    );
    this.onClose();
    this.socket.terminate();
  }

  private answer(reply: Reply | Promise<Reply>, proto: Proto): void {
    if (this.pending() === 0 && !(reply instanceof Promise)) this.out.write(this.bounded(reply, proto), proto);
    else this.waiting.push({ reply, proto });
  }

  /**
   * `reply`, or an error in its place when writing it would leave more than the
   * output limit unsent. Only a container can be that large (a single bulk is at
   * most the bulk limit, 1/64 of the output limit), so GET's path measures nothing.
   */
  private bounded(reply: Reply, proto: Proto): Reply {
    if (reply.t !== "array" && reply.t !== "set" && reply.t !== "map") return reply;
    const room = this.limits.maxOutputBytes - this.unsentBytes - this.out.bytes;
    const bytes = replyBytes(reply, proto);
    if (bytes <= room) return reply;
    this.shared.lines.line("resp.output-limit", hostOf(this.session.addr), (suppressed) =>
      this.log.warn("refused a reply past the output limit", { client: this.session.addr, bytes, limit: this.limits.maxOutputBytes, suppressed }),
    );
    return errorReply(outputLimitError(bytes, this.limits.maxOutputBytes, reply.t === "array" && reply.applied === true));
  }

  /** Writes every reply that is ready, in order, up to the first that is not; sends; then pauses, resumes or ends. */
  private pump(): void {
    while (this.head < this.waiting.length) {
      const w = this.waiting[this.head]!;
      if (w.reply instanceof Promise) {
        // Watched once: pump runs at every read and drain while the head waits.
        if (w.watched) break;
        w.watched = true;
        const p = w.reply;
        p.then(
          (r) => this.settle(w, p, r),
          (e) => this.settle(w, p, errorReply(`ERR internal error: ${String(e)}`)),
        );
        break;
      }
      this.out.write(this.bounded(w.reply, w.proto), w.proto);
      this.head++;
    }
    if (this.head === this.waiting.length) {
      this.waiting.length = 0;
      this.head = 0;
    }
    this.flush();
    if (this.closed) return;
    if (this.closeAfterFlush) {
      if (this.pending() === 0 && this.unsentBytes === 0) this.socket.end();
    } else if (this.full()) {
      if (!this.paused) this.socket.pause();
      this.paused = true;
    } else if (this.paused && this.socket.readyState === 1) {
      this.socket.resume();
      this.paused = false;
    }
  }

  private settle(w: Waiting, p: Promise<Reply>, r: Reply): void {
    // Only the head's promise is watched, once: a reply settles once.
    if (w.reply !== p || this.closed) return;
    w.reply = r;
    this.run();
  }

  private flush(): void {
    if (!this.out.empty) {
      const data = this.out.take();
      if (this.unsentBytes === 0 && data.length <= WRITE_SLICE) {
        const result = this.socket.write(data);
        if (result < 0) return this.broken();
        const written = result;
        const length = typeof data === "string" ? Buffer.byteLength(data) : data.length;
        if (written < length) this.queue((typeof data === "string" ? Buffer.from(data) : data).subarray(written));
      } else this.queue(typeof data === "string" ? Buffer.from(data) : data);
    }
    while (this.unsent.length > 0) {
      const next = this.unsent[0]!;
      const slice = next.length > WRITE_SLICE ? next.subarray(0, WRITE_SLICE) : next;
      const written = this.socket.write(slice);
      if (written < 0) return this.broken();
      if (written > 0) this.sent(written);
      if (written >= next.length) this.unsent.shift();
      else if (written > 0) this.unsent[0] = next.subarray(written);
      if (written < slice.length) return;
    }
  }

  /** A write was refused: the peer is gone (reset). Free what the client held and close the socket (fires `close` now). */
  private broken(): void {
    this.log.debug("a write failed: the client is gone, closing the connection", { client: this.session.addr });
    this.onClose();
    this.socket.terminate();
  }

  private queue(bytes: Uint8Array): void {
    this.unsent.push(bytes);
    this.unsentBytes += bytes.length;
    this.shared.stats.outputBytes += bytes.length;
  }

  private sent(bytes: number): void {
    this.unsentBytes -= bytes;
    this.shared.stats.outputBytes -= bytes;
  }
}

/** A client's host, without its port: the log budgets count per address. */
export const hostOf = (addr: string): string => addr.slice(0, addr.lastIndexOf(":"));

/** A command named POST or `Host:` (any case): an HTTP request's first line or a header, as Redis checks. */
function isHttpLine(name: Buffer): boolean {
  if (name.length !== 4 && name.length !== 5) return false;
  const s = name.toString("latin1").toLowerCase();
  return s === "post" || s === "host:";
}
