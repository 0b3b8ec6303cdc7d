import type { Socket } from "bun";
import type { Logger } from "../../ops/log.ts";
import type { TlsMaterial } from "../../ops/tls.ts";
import { requestLimits } from "../limits.ts";
import { startServer, urlHost, type Server, type ServeConfig } from "../serve.ts";
import type { FrontAnswer } from "./answer.ts";
import { parseHead } from "./head.ts";
import { Pipe } from "./pipe.ts";

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
 * Answers keep the order of their requests: while one waits on the service (a
 * forward to an owner, `fsync=always`), later bytes of the connection wait too.
 */

export interface Front {
  port: number;
  url: string;
  /** The client's address of a request Bun.serve took through a pipe (or directly), for refusal logs. */
  remoteAddress: (request: Request) => string | undefined;
  /** Requests answered here, and connections handed to Bun.serve, since the start (for /metrics). */
  counts: () => { wire: number; piped: number };
  /** Closes the port and every connection, Bun.serve's included. */
  stop: () => Promise<void>;
}

interface Conn {
  pipe: Pipe | undefined;
  /** Bytes read while an answer was pending or the client was not reading; processed in order once it settles. */
  held: Buffer | undefined;
  busy: boolean;
  /** Answer bytes the client has not taken yet. */
  unsent: Uint8Array | undefined;
  closed: boolean;
}

/** Answers to pipelined requests are written in batches of about this many characters. */
const OUT_BATCH_CHARS = 64 * 1024;
/** Held bytes past which the client is paused (TCP backpressure) until they are answered. */
const HOLD_MAX_BYTES = 1024 * 1024;

export function startFront(config: ServeConfig, tls: TlsMaterial, fetch: (request: Request) => Response | Promise<Response>, answer: FrontAnswer, log: Logger): Front {
  const maxBody = requestLimits(config).itemBodyBytes;
  const inner: Server = startServer({ ...config, host: "127.0.0.1", port: 0 }, {}, fetch).server;
  const innerPort = inner.port!;
  /** Upstream local port → the client's address, while a pipe is open. */
  const piped = new Map<number, string>();
  const idleSeconds = Math.ceil(config.idleTimeoutMs / 1000);
  const counts = { wire: 0, piped: 0 };

  const write = (socket: Socket<Conn>, conn: Conn, wire: string): void => {
    if (conn.closed || wire.length === 0) return;
    if (conn.unsent !== undefined) {
      conn.unsent = concat(conn.unsent, Buffer.from(wire));
      return;
    }
    const n = socket.write(wire);
    if (n < wire.length || n < Buffer.byteLength(wire)) {
      conn.unsent = Buffer.from(wire).subarray(Math.max(n, 0));
      socket.pause();
    }
  };

  const handOff = (socket: Socket<Conn>, conn: Conn, rest: Uint8Array): void => {
    counts.piped++;
    socket.timeout(0); // Bun.serve's idle timeout applies from here: its closing the pipe closes the client.
    const remote = socket.remoteAddress;
    conn.pipe = new Pipe(innerPort, Uint8Array.prototype.slice.call(rest), {
      // Bun's bytes wait for any answer of ours still unsent: the client reads them in order.
      toClient: (bytes) => (conn.closed ? bytes.length : conn.unsent !== undefined ? 0 : socket.write(bytes)),
      pauseClient: () => socket.pause(),
      resumeClient: () => socket.resume(),
      closeClient: () => socket.end(),
      opened: (port) => piped.set(port, remote),
      closed: (port) => port !== undefined && piped.delete(port),
    });
  };

  /** Answers the requests in `bytes` from `start`, in order, until one is not ours or one must wait. */
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
      const wire = head && answer(head, bytes);
      if (wire === undefined) {
        write(socket, conn, out);
        handOff(socket, conn, bytes.subarray(at));
        return;
      }
      at = head!.next;
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
          write(socket, conn, w);
          conn.busy = false;
          resume(socket, conn);
        })
        .catch((e: unknown) => failed(socket, e));
      return;
    }
    write(socket, conn, out);
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
    const held = conn.held;
    if (held === undefined) return;
    conn.held = undefined;
    try {
      serve(socket, conn, held);
    } catch (e) {
      failed(socket, e);
    }
  };

  const listener = Bun.listen<Conn>({
    hostname: config.host,
    port: config.port,
    tls: tls.cert === undefined ? undefined : { cert: tls.cert, key: tls.key },
    socket: {
      open(socket) {
        socket.data = { pipe: undefined, held: undefined, busy: false, unsent: undefined, closed: false };
        socket.timeout(idleSeconds);
      },
      data(socket, bytes) {
        const conn = socket.data;
        if (conn.pipe !== undefined) return conn.pipe.fromClient(bytes);
        if (conn.busy || conn.unsent !== undefined || conn.held !== undefined) {
          conn.held = conn.held === undefined ? Buffer.from(bytes) : Buffer.concat([conn.held, bytes]);
          if (conn.held.length > HOLD_MAX_BYTES) socket.pause();
          return;
        }
        try {
          serve(socket, conn, bytes);
        } catch (e) {
          failed(socket, e);
        }
      },
      drain(socket) {
        const conn = socket.data;
        const unsent = conn.unsent;
        if (unsent !== undefined) {
          const n = socket.write(unsent);
          if (n < unsent.length) {
            conn.unsent = unsent.subarray(Math.max(n, 0));
            return;
          }
          conn.unsent = undefined;
          if (conn.pipe === undefined) resume(socket, conn);
        }
        conn.pipe?.clientDrained();
      },
      timeout(socket) {
        const conn = socket.data;
        if (conn.pipe !== undefined) return;
        // Silent, but only because its answer is still being made: not idle.
        if (conn.busy) socket.timeout(idleSeconds);
        else socket.end();
      },
      close(socket) {
        const conn = socket.data;
        conn.closed = true;
        conn.held = undefined;
        conn.pipe?.clientEnded();
      },
      error(socket) {
        socket.data.closed = true;
        socket.data.pipe?.clientEnded();
      },
    },
  });
  const url = `${tls.cert === undefined ? "http" : "https"}://${urlHost(config.host)}:${listener.port}`;
  return {
    port: listener.port,
    url,
    remoteAddress: (request) => {
      const ip = inner.requestIP(request);
      if (ip === null) return undefined;
      return piped.get(ip.port) ?? ip.address;
    },
    counts: () => counts,
    async stop() {
      listener.stop(true);
      await inner.stop(true);
    },
  };
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
