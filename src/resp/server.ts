import type { Socket, TCPSocketListener } from "bun";
import type { NodeConfig } from "../config.ts";
import type { Logger } from "../ops/log.ts";
import type { Refusals } from "../ops/security.ts";
import { tokenAccess } from "../ops/tokens.ts";
import type { ItemsService } from "../service.ts";
import { Cursors, type Session, type Shared } from "./command.ts";
import { dispatch } from "./dispatch.ts";
import { RespParser, UNAUTHENTICATED_LIMITS, type Limits } from "./parser.ts";
import { errorReply, Out, type Proto, type Reply } from "./reply.ts";

/**
 * The Redis-protocol listener (`--resp-port`): TCP on the node's host, one
 * Connection per client, every command run through the same ItemsService as HTTP.
 *
 * Ordering: a connection runs its commands one after another as they are parsed,
 * and answers them in that order. A reply that is not ready yet (a write waiting
 * for fsync=always or `w=`) holds back the replies behind it, never the commands:
 * those already ran, as a pipelined client expects of Redis.
 *
 * Backpressure: a client that sends faster than it reads would make the node
 * buffer replies without end. Past OUTPUT_HIGH_WATER bytes unsent, or
 * MAX_WAITING replies not yet ready, the connection stops reading (TCP pushes back
 * on the client) until the socket drains.
 */
export interface RespServerOptions {
  service: ItemsService;
  config: NodeConfig;
  version: string;
  log: Logger;
  refusals: Refusals;
  /** When the node started, epoch ms (INFO's uptime). */
  startedMs: number;
}

/** Unsent reply bytes past which a connection stops reading: 1 MiB, ~10k small replies. */
export const OUTPUT_HIGH_WATER = 1024 * 1024;
/** Replies waiting on a write (fsync, `w=`) past which a connection stops reading. */
export const MAX_WAITING = 10_000;

/** The parser's bounds on this node: a bulk as large as the largest key or value, a command as large as a big MSET. */
export function limitsFor(config: Pick<NodeConfig, "maxValueBytes" | "maxKeyBytes">): Limits {
  const maxBulkBytes = Math.max(config.maxValueBytes, config.maxKeyBytes);
  return {
    maxBulkBytes,
    // As Redis's 1M-argument ceiling; MSET of a million small keys still fits.
    maxArgs: 1024 * 1024,
    // A few values' worth, and at least 64 MiB, so a bulk MSET works while one connection holds a bounded buffer.
    maxCommandBytes: Math.max(64 * 1024 * 1024, 4 * maxBulkBytes),
    maxInlineBytes: 64 * 1024,
  };
}

interface Waiting {
  reply: Reply | Promise<Reply>;
  proto: Proto;
}

class Connection {
  private readonly parser: RespParser;
  private readonly out = new Out();
  /** Replies behind one that is not ready, in order; empty on the fast path. */
  private readonly waiting: Waiting[] = [];
  private head = 0;
  private unsent: Uint8Array[] = [];
  private unsentBytes = 0;
  private closeAfterFlush = false;
  private closed = false;

  constructor(
    private readonly socket: Socket<Connection>,
    private readonly shared: Shared,
    readonly session: Session,
    private readonly limits: Limits,
    private readonly log: Logger,
  ) {
    this.parser = new RespParser(session.access === undefined ? UNAUTHENTICATED_LIMITS : limits);
  }

  onData(chunk: Uint8Array): void {
    if (this.closeAfterFlush || this.closed) return;
    const { commands, error } = this.parser.feed(chunk);
    for (const args of commands) {
      const reply = dispatch(this.shared, this.session, args);
      // In the protocol as the command left it: HELLO 3's own answer is RESP3.
      this.answer(reply, this.session.proto);
      if (this.session.closing) {
        this.closeAfterFlush = true;
        break;
      }
    }
    if (this.session.access !== undefined) this.parser.limits = this.limits;
    if (error !== undefined && !this.closeAfterFlush) {
      this.log.debug("protocol error: closing the connection", { client: this.session.addr, error });
      this.answer(errorReply(`ERR ${error}`), this.session.proto);
      this.closeAfterFlush = true;
    }
    this.pump();
  }

  onDrain(): void {
    this.flush();
    if (this.socket.readyState === 1 && this.unsentBytes < OUTPUT_HIGH_WATER && this.pending() < MAX_WAITING) this.socket.resume();
  }

  onClose(): void {
    this.closed = true;
    this.shared.sessions.delete(this.session.id);
  }

  private pending(): number {
    return this.waiting.length - this.head;
  }

  private answer(reply: Reply | Promise<Reply>, proto: Proto): void {
    if (this.pending() === 0 && !(reply instanceof Promise)) this.out.write(reply, proto);
    else this.waiting.push({ reply, proto });
  }

  /** Writes every reply that is ready, in order, up to the first that is not; then sends. */
  private pump(): void {
    while (this.head < this.waiting.length) {
      const w = this.waiting[this.head]!;
      if (w.reply instanceof Promise) {
        const p = w.reply;
        p.then(
          (r) => this.settle(w, p, r),
          (e) => this.settle(w, p, errorReply(`ERR internal error: ${String(e)}`)),
        );
        break;
      }
      this.out.write(w.reply, w.proto);
      this.head++;
    }
    if (this.head === this.waiting.length) {
      this.waiting.length = 0;
      this.head = 0;
    }
    this.flush();
    if (this.pending() === 0 && this.closeAfterFlush && this.unsentBytes === 0) this.socket.end();
    else if (this.unsentBytes >= OUTPUT_HIGH_WATER || this.pending() >= MAX_WAITING) this.socket.pause();
  }

  private settle(w: Waiting, p: Promise<Reply>, r: Reply): void {
    // Only the head's promise is watched, once: a reply settles once.
    if (w.reply !== p || this.closed) return;
    w.reply = r;
    this.pump();
  }

  private flush(): void {
    if (!this.out.empty) {
      const data = this.out.take();
      if (this.unsentBytes > 0) this.queue(typeof data === "string" ? Buffer.from(data) : data);
      else {
        const written = Math.max(0, this.socket.write(data));
        const length = typeof data === "string" ? Buffer.byteLength(data) : data.length;
        if (written < length) this.queue((typeof data === "string" ? Buffer.from(data) : data).subarray(written));
      }
    }
    while (this.unsent.length > 0) {
      const next = this.unsent[0]!;
      const written = this.socket.write(next);
      if (written >= next.length) {
        this.unsent.shift();
        this.unsentBytes -= next.length;
        continue;
      }
      if (written > 0) {
        this.unsent[0] = next.subarray(written);
        this.unsentBytes -= written;
      }
      return;
    }
    if (this.closeAfterFlush && this.pending() === 0) this.socket.end();
  }

  private queue(bytes: Uint8Array): void {
    this.unsent.push(bytes);
    this.unsentBytes += bytes.length;
  }
}

export interface RespServer {
  readonly port: number;
  stop(): void;
}

/** Starts listening on config.host and `port` (0: a free one); throws as Bun.listen does (EADDRINUSE). */
export function startRespServer(opts: RespServerOptions, port: number): RespServer {
  const { config, log } = opts;
  const access = config.token === undefined ? undefined : tokenAccess(config.token, config.readToken);
  const shared: Shared = {
    service: opts.service,
    config,
    version: opts.version,
    startedMs: opts.startedMs,
    port,
    sessions: new Map(),
    cursors: new Cursors(),
    stats: { connections: 0, commands: 0, rejected: 0 },
    refused: (kind) => {
      if (kind === "unauthorized") opts.refusals.clientUnauthorized++;
      else opts.refusals.clientForbidden++;
    },
    authenticate: (password) => access?.(password),
  };
  const limits = limitsFor(config);
  let nextId = 1;
  const listener: TCPSocketListener<Connection> = Bun.listen<Connection>({
    hostname: config.host,
    port,
    socket: {
      open(socket) {
        shared.stats.connections++;
        const session: Session = {
          id: nextId++,
          addr: `${socket.remoteAddress}:${socket.remotePort}`,
          createdMs: opts.service.wallMs(),
          proto: 2,
          db: 0,
          access: config.token === undefined ? "write" : undefined,
          name: "",
          libName: "",
          libVer: "",
          closing: false,
        };
        shared.sessions.set(session.id, session);
        socket.setNoDelay(true);
        socket.data = new Connection(socket, shared, session, limits, log);
      },
      data(socket, chunk) {
        socket.data.onData(chunk);
      },
      drain(socket) {
        socket.data.onDrain();
      },
      close(socket) {
        socket.data?.onClose();
      },
      error(socket, e) {
        log.debug("connection error", { error: e });
        socket.data?.onClose();
      },
    },
  });
  shared.port = listener.port;
  return {
    port: listener.port,
    stop: () => listener.stop(true),
  };
}
