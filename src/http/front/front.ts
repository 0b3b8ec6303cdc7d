import type { Socket } from "bun";
import type { Logger } from "../../ops/log.ts";
import type { TlsMaterial } from "../../ops/tls.ts";
import { requestLimits } from "../limits.ts";
import { urlHost, type ServeConfig } from "../serve.ts";
import { InnerServer, startsPeerRequest } from "./inner.ts";
import type { FrontAnswer } from "./answer.ts";
import { MakhzenError } from "../../errors.ts";
import { dotSegmentRefusal, PARTIAL_HEAD, parseHead } from "./head.ts";
import { concat, Pipe } from "./pipe.ts";
import { refusal } from "./refuse.ts";
import { type ClientSlots, OpenConnections } from "../../ops/connections.ts";
import { drainFront, STOPPING, withConnectionClose } from "./stopping.ts";
import { closingErrorWire, domainErrorWire, isHeadRequest } from "./wire.ts";
import { admit, closeConn, HANDSHAKE_TIMEOUT_MS, released, welcome, type Conn, type Waiting } from "./conn.ts";

/**
 * The wire front end: the node's HTTP port, answering the item routes' plain
 * requests straight from the socket, and handing every other connection to
 * Bun.serve.
 *
 * Why: a store is judged on its GET and PUT, and under Bun.serve each of them pays
 * for a Request, its Headers, a body promise and a Response before and after our
 * own work; over a socket that was most of a PUT's CPU, and a server that only
 * read a PUT's body was already at 0.83x a bare one (docs/benchmarks.md, issue 13).
 * Here a request is a slice of the bytes read, and its answer one string written
 * back: what Bun.listen costs, plus the store.
 *
 * What keeps it safe: it answers only requests whose every byte it understands
 * (head.ts lists the rules), with the item routes' own operations (items.ts
 * itemOps), in the bytes Bun would write (wire.ts). At the first request it does
 * not take, the connection, from that request on, is piped to the node's
 * Bun.serve on 127.0.0.1 (pipe.ts), which then serves it exactly as it served
 * every connection before: Elysia, the token check, limits, deadlines, 4xx
 * envelopes, hostile input. A piped connection stays piped.
 *
 * A request split across reads is kept until the rest arrives, under deadlines of
 * its own: HEAD_TIMEOUT_MS for the head (or --idle-timeout if shorter; then the connection is closed, as Bun
 * closes one that never completes its head) and --body-timeout for the body (then
 * 408, as the item routes answer a late body, and the connection is closed).
 *
 * Answers keep the order of their requests: while one waits on the service (a
 * forward to an owner, `fsync=always`), or the client is not reading, later bytes
 * of the connection wait too, bounded by HOLD_MAX_BYTES (then the socket is paused:
 * TCP backpressure). A client that half-closes is answered what it sent, then closed.
 */

export interface Front {
  port: number;
  url: string;
  /** The client's address of a request Bun.serve took through a pipe (or directly), for refusal logs. */
  remoteAddress: (request: Request) => string | undefined;
  /** Requests answered here, and connections handed to Bun.serve, since the start (for /metrics). */
  counts: () => { wire: number; piped: number };
  /** A graceful stop (stopping.ts), within `graceMs`: resolves with the connections still open then (stop closes them). Idempotent. */
  drain: (graceMs: number) => Promise<number>;
  /** Closes the port and every connection, Bun.serve's included, at once (what drain left open). */
  stop: () => Promise<void>;
}

/** Answers to pipelined requests are written in batches of about this many characters. */
const OUT_BATCH_CHARS = 64 * 1024;
/** Held bytes past which the client is paused (TCP backpressure) until they are answered. */
const HOLD_MAX_BYTES = 64 * 1024;
/** How long a request head may take to arrive whole (Bun closes such a connection after about 10 s), or --idle-timeout if shorter. */
export const HEAD_TIMEOUT_MS = 10_000;

export function startFront(
  config: ServeConfig,
  tls: TlsMaterial,
  fetch: (request: Request) => Response | Promise<Response>,
  answers: FrontAnswer,
  slots: ClientSlots,
  log: Logger,
): Front {
  const maxBody = requestLimits(config).itemBodyBytes;
  // Set by drain: a request that completes from then on is answered STOPPING (a piped one by the inner server).
  let stopping = false;
  const inner = new InnerServer(config, fetch);
  const idleSeconds = Math.ceil(config.idleTimeoutMs / 1000);
  const handshakeMs = tls.cert === undefined ? undefined : Math.min(HANDSHAKE_TIMEOUT_MS, config.idleTimeoutMs);
  const counts = { wire: 0, piped: 0 };
  const sockets = new OpenConnections<Socket<Conn>>();

  const write = (socket: Socket<Conn>, conn: Conn, wire: string): void => {
    if (conn.closed || wire.length === 0) return;
    if (conn.unsent !== undefined) {
      conn.unsent = concat(conn.unsent, Buffer.from(wire));
      return;
    }
    const n = socket.write(wire);
    // -1: the client is gone (a reset). Held as a short write, the socket was paused and never
    // told of the reset: it kept its descriptor, and its --max-clients slot, for two idle timeouts.
    if (n < 0) return void socket.terminate();
    if (n < wire.length || n < Buffer.byteLength(wire)) {
      conn.unsent = Buffer.from(wire).subarray(Math.max(n, 0));
      socket.pause();
    }
  };

  const handOff = (socket: Socket<Conn>, conn: Conn, rest: Uint8Array): void => {
    counts.piped++;
    clearPartial(conn);
    const remote = socket.remoteAddress;
    const pipe: Pipe = new Pipe(inner.port, Uint8Array.prototype.slice.call(rest), {
      // Bun's bytes wait for any answer of ours still unsent: the client reads them in order.
      toClient: (bytes) => (conn.closed ? bytes.length : conn.unsent !== undefined ? 0 : socket.write(bytes)),
      pauseClient: () => socket.pause(),
      resumeClient: () => socket.resume(),
      closeClient: () => closeConn(socket),
      opened: (at) => inner.opened(at, remote, pipe),
      closed: (at) => inner.closed(at, pipe),
      refused: (status) => answers.refused(status),
    });
    conn.pipe = pipe;
  };

  /** The held bytes, with any gathered since, as one run; nothing is held after. */
  const takeHeld = (conn: Conn): Buffer | undefined => {
    const held = conn.held;
    conn.held = undefined;
    if (conn.need === 0) return held;
    const all = Buffer.concat([held!, ...conn.more]);
    conn.need = 0;
    conn.more = [];
    conn.moreBytes = 0;
    return all;
  };

  const clearPartial = (conn: Conn): void => {
    if (conn.partial === undefined) return;
    clearTimeout(conn.partial);
    conn.partial = undefined;
    conn.partialKind = undefined;
  };

  /**
   * Keeps the partial request at `bytes[at]` until the rest arrives. Its deadline
   * runs from the first bytes of what it waits for: the head's from the request's
   * first byte, the body's from the head's completion.
   */
  const waitFor = (socket: Socket<Conn>, conn: Conn, bytes: Buffer, at: number, kind: Waiting, need = 0): void => {
    conn.held = Buffer.from(bytes.subarray(at));
    // A body trickling in is gathered, not joined and parsed again at every read (that was quadratic).
    conn.need = need;
    if (at > 0 || conn.partialKind !== kind) {
      clearPartial(conn);
      const ms = kind === "head" ? Math.min(HEAD_TIMEOUT_MS, config.idleTimeoutMs) : config.bodyTimeoutMs;
      conn.partial = setTimeout(() => partialExpired(socket, conn, kind), ms);
      conn.partialKind = kind;
    }
    // A client that half-closed will send no more: the rest can never come.
    if (conn.ended) socket.end();
  };

  /** A partial request did not complete in time: a late head costs the connection, a late body a 408 (as the item routes answer one). */
  const partialExpired = (socket: Socket<Conn>, conn: Conn, kind: Waiting): void => {
    conn.partial = undefined;
    conn.partialKind = undefined;
    if (conn.closed || conn.pipe !== undefined) return;
    // Bytes held behind an answer being made, or one the client has not read, are not
    // parsed yet: the request may be whole. The idle timeout deals with a client that does not read.
    if (conn.busy || conn.unsent !== undefined) {
      conn.partial = setTimeout(() => partialExpired(socket, conn, kind), 100);
      conn.partialKind = kind;
      return;
    }
    takeHeld(conn);
    if (kind === "head") return void socket.terminate();
    write(socket, conn, domainErrorWire(new MakhzenError("REQUEST_TIMEOUT", `request body did not arrive within ${config.bodyTimeoutMs} ms`)));
    conn.ended = true;
    if (conn.unsent === undefined) closeConn(socket);
  };

  /** Answers the requests in `bytes`, in order, until one is not ours, one must wait, one is not all here, or the client stops reading. */
  const serve = (socket: Socket<Conn>, conn: Conn, bytes: Buffer): void => {
    let at = 0;
    let out = "";
    const text = bytes.toString("latin1");
    while (at < bytes.length) {
      // A pipelining client is answered a batch at a time: once the socket takes no
      // more, the rest waits (held, the socket paused) until it drains.
      if (out.length >= OUT_BATCH_CHARS) {
        write(socket, conn, out);
        out = "";
        if (conn.unsent !== undefined) {
          conn.held = Buffer.from(bytes.subarray(at));
          return;
        }
      }
      const head = parseHead(text, at, maxBody);
      // A head Bun would refuse (refuse.ts), or a bucket that is a dot segment (head.ts), whole or not, is refused here, with the envelope.
      const refused = head === PARTIAL_HEAD || head === undefined ? (refusal(text, at) ?? dotSegmentRefusal(text, at)) : undefined;
      if (refused !== undefined) return refuse(socket, conn, out, refused, isHeadRequest(text, at));
      if (head === PARTIAL_HEAD) {
        write(socket, conn, out);
        return waitFor(socket, conn, bytes, at, "head");
      }
      // Stopping: a request that completes now was never run (a body on its way is waited for first); a peer's still runs (inner.ts).
      if (stopping && !(head !== undefined && head.next > bytes.length && answers.takes(head)) && !startsPeerRequest(bytes, at)) return refuse(socket, conn, out, STOPPING);
      // Decided on the head: a request Bun must take goes to it before its body arrives.
      if (head === undefined || !answers.takes(head)) {
        write(socket, conn, out);
        handOff(socket, conn, bytes.subarray(at));
        if (conn.ended) conn.pipe!.clientEnded();
        return;
      }
      if (head.next > bytes.length) {
        write(socket, conn, out);
        return waitFor(socket, conn, bytes, at, "body", head.next - at);
      }
      clearPartial(conn);
      const wire = answers.answer(head, bytes);
      at = head.next;
      counts.wire++;
      if (typeof wire === "string") {
        out += wire;
        continue;
      }
      write(socket, conn, out);
      out = "";
      conn.busy = true;
      conn.held = at < bytes.length ? Buffer.from(bytes.subarray(at)) : undefined;
      wire
        .then((w) => {
          // Stopping, with nothing behind it: the last answer of this connection says so.
          write(socket, conn, stopping && conn.held === undefined ? withConnectionClose(w) : w);
          conn.busy = false;
          resume(socket, conn);
        })
        .catch((e: unknown) => failed(socket, e));
      return;
    }
    write(socket, conn, out);
    if (conn.ended && conn.unsent === undefined) closeConn(socket);
  };

  /** Answers the answers so far, then the refusal, and closes the connection: nothing after a malformed head is read. */
  const refuse = (socket: Socket<Conn>, conn: Conn, out: string, r: { status: number; code: string; message: string }, head = false): void => {
    clearPartial(conn);
    takeHeld(conn);
    answers.refused(r.status);
    write(socket, conn, out + closingErrorWire(r.status, r.code, r.message, head));
    conn.ended = true;
    if (conn.unsent === undefined) closeConn(socket);
  };

  const run = (socket: Socket<Conn>, conn: Conn, bytes: Buffer): void => {
    try {
      serve(socket, conn, bytes);
    } catch (e) {
      failed(socket, e);
    }
  };

  // A bug here must cost one connection, never the node: every request answer's own
  // errors are answers already (answer.ts), so this is the last line.
  const failed = (socket: Socket<Conn>, e: unknown): void => {
    log.error("unexpected error in the wire front end; closing the connection", { error: e, stack: (e as Error)?.stack });
    socket.data.closed = true;
    socket.terminate();
  };

  /** Goes on with held bytes once nothing is pending and the client takes answers again. */
  const resume = (socket: Socket<Conn>, conn: Conn): void => {
    if (conn.closed || conn.busy || conn.unsent !== undefined || conn.pipe !== undefined) return;
    socket.resume();
    const held = takeHeld(conn);
    if (held !== undefined) run(socket, conn, held);
    else if (conn.ended || stopping) closeConn(socket);
  };

  const listener = inner.unlessFails(() => Bun.listen<Conn>({
    hostname: config.host,
    port: config.port,
    tls: tls.cert === undefined ? undefined : { cert: tls.cert, key: tls.key },
    // A client's FIN is `end`: what it sent is still answered (front end or Bun's).
    allowHalfOpen: true,
    socket: {
      open(socket) {
        admit(socket, slots, idleSeconds, handshakeMs);
        sockets.add(socket);
      },
      handshake(socket, success) {
        if (success) welcome(socket, slots, idleSeconds);
        else socket.terminate();
      },
      data(socket, bytes) {
        const conn = socket.data;
        conn.used = true;
        if (conn.lingering) return; // closing: read and dropped (closeConn)
        if (conn.pipe !== undefined) return conn.pipe.fromClient(bytes);
        // Only after a refusal (a client that half-closed sends nothing more): the rest is not read.
        if (conn.ended) return;
        if (conn.need > 0) {
          conn.more.push(Buffer.from(bytes));
          conn.moreBytes += bytes.length;
          const have = conn.held!.length + conn.moreBytes;
          if (conn.busy || conn.unsent !== undefined) {
            if (have > conn.need + HOLD_MAX_BYTES) socket.pause();
            return;
          }
          if (have < conn.need) return;
          return run(socket, conn, takeHeld(conn)!);
        }
        const held = takeHeld(conn);
        const all = held === undefined ? bytes : Buffer.concat([held, bytes]);
        if (conn.busy || conn.unsent !== undefined) {
          conn.held = all === bytes ? Buffer.from(bytes) : all;
          if (conn.held.length > HOLD_MAX_BYTES) socket.pause();
          return;
        }
        run(socket, conn, all);
      },
      drain(socket) {
        const conn = socket.data;
        // The client took bytes: it reads, if slowly (a long /dump), so it is not
        // idle (the socket's timer counts only what arrives from the client).
        conn.drained = true;
        const unsent = conn.unsent;
        if (unsent !== undefined) {
          const n = socket.write(unsent);
          if (n < 0) return void socket.terminate(); // gone: see write()
          if (n < unsent.length) {
            conn.unsent = unsent.subarray(Math.max(n, 0));
            return;
          }
          conn.unsent = undefined;
        }
        if (conn.pipe !== undefined) conn.pipe.clientDrained();
        else resume(socket, conn);
      },
      end(socket) {
        const conn = socket.data;
        conn.ended = conn.clientEnded = true;
        if (conn.lingering) socket.end(); // it read every answer: the staged close is done
        else if (conn.pipe !== undefined) conn.pipe.clientEnded();
        else if (!conn.busy && conn.unsent === undefined) socket.end();
      },
      timeout(socket) {
        const conn = socket.data;
        // Silent, but only because its answer is being made, or Bun.serve's (whose own
        // timeout closes the pipe), or a body still arriving (its deadline is --body-timeout's): not
        // idle. A client that does not read is, and one that reads is not, however slowly.
        const stalled = conn.unsent !== undefined || conn.pipe?.clientStalled() === true;
        const reading = conn.drained;
        conn.drained = false;
        if (stalled && !reading) socket.terminate();
        else if (stalled || conn.busy || conn.pipe !== undefined || conn.partialKind === "body") socket.timeout(idleSeconds);
        else socket.end();
      },
      close(socket) {
        const conn = socket.data;
        released(conn, slots); // undefined: a TLS client reset before `open` (Bun calls close or error all the same)
        if (conn !== undefined) {
          takeHeld(conn);
          clearPartial(conn);
          conn.pipe?.clientClosed();
        }
        sockets.delete(socket);
      },
      error(socket) {
        const conn = socket.data;
        released(conn, slots);
        if (conn !== undefined) {
          clearPartial(conn);
          conn.pipe?.clientClosed();
        }
        sockets.delete(socket);
      },
    },
  }));
  let draining: Promise<number> | undefined;
  // Idle between requests: closed. A request half here is waited for, then answered STOPPING.
  // A connection that has sent nothing yet is left its first request (answered STOPPING,
  // which says it was not run) unless `fresh` (the drain's second pass, a moment later).
  const closeIfIdle = (socket: Socket<Conn>, fresh: boolean): void => {
    const conn = socket.data;
    if (conn.lingering || conn.pipe !== undefined || conn.busy || conn.unsent !== undefined || conn.held !== undefined || (!conn.used && !fresh)) return;
    conn.ended = true;
    socket.end();
  };
  const url = `${tls.cert === undefined ? "http" : "https"}://${urlHost(config.host)}:${listener.port}`;
  return {
    port: listener.port,
    url,
    remoteAddress: (request) => inner.remoteAddress(request),
    counts: () => counts,
    drain(graceMs) {
      stopping = inner.stopping = true;
      return (draining ??= drainFront(listener, inner.server, sockets, closeIfIdle, graceMs));
    },
    async stop() {
      stopping = inner.stopping = true;
      listener.stop(true);
      await inner.server.stop(true);
    },
  };
}
