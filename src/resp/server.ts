import type { Socket, TCPSocketListener } from "bun";
import type { NodeConfig } from "../config.ts";
import { ClientSlots, OpenConnections, settledWithin } from "../ops/connections.ts";
import type { Logger } from "../ops/log.ts";
import { LogLimiter } from "../ops/log-limiter.ts";
import type { Refusals } from "../ops/security.ts";
import { tokenAccess } from "../ops/tokens.ts";
import type { ItemsService } from "../service.ts";
import { Cursors, type Session, type Shared } from "./command.ts";
import { Client, hostOf, type ClientLimits } from "./client.ts";

/**
 * The Redis-protocol listener (`--resp-port`): TCP on the node's host, one
 * Client (client.ts) per connection, every command run through the same ItemsService as HTTP.
 *
 * A connection runs its commands in order and answers them in
 * that order, holding a bounded amount of output.
 */
export interface RespServerOptions {
  service: ItemsService;
  config: NodeConfig;
  version: string;
  log: Logger;
  refusals: Refusals;
  /** When the node started, epoch ms (INFO's uptime). */
  startedMs: number;
  /** The node's client connections, shared with HTTP (--max-clients); by default this server's own. */
  slots?: ClientSlots;
  /** The node's wall clock, epoch ms (the refusal log's budget counts on it); Date.now by default. */
  wallMs?: () => number;
}

/**
 * A connection's bounds on this node: a bulk as large as the largest key or
 * value, a command as large as a big MSET, and the unread output past which a
 * client is closed.
 */
export function limitsFor(config: Pick<NodeConfig, "maxValueBytes" | "maxKeyBytes">): ClientLimits {
  const maxBulkBytes = Math.max(config.maxValueBytes, config.maxKeyBytes);
  return {
    maxBulkBytes,
    // As Redis's 1M-argument ceiling; MSET of a million small keys still fits.
    maxArgs: 1024 * 1024,
    // A few values' worth, and at least 64 MiB, so a bulk MSET works while one connection holds a bounded buffer.
    maxCommandBytes: Math.max(64 * 1024 * 1024, 4 * maxBulkBytes),
    maxInlineBytes: 64 * 1024,
    // A connection stops running commands past 1 MiB unsent (client.ts), so only one reply can pass this:
    // an MGET of 64 of the largest values still goes out; one of gigabytes closes the client, not the node.
    maxOutputBytes: Math.max(128 * 1024 * 1024, 64 * maxBulkBytes),
  };
}

export interface RespServer {
  readonly port: number;
  /**
   * A graceful stop: new connections are refused, an idle connection is closed, and
   * one with commands in flight is closed once their replies are sent; a command
   * that arrives meanwhile is not run. Resolves when every connection has closed,
   * or `graceMs` passed, with the number still open (stop closes them). Idempotent.
   *
   * Why close rather than answer `-ERR ... stopping`: a reset or closed connection
   * is what every Redis client expects of a server going away (redis-server closes
   * its clients on SHUTDOWN), and each has its answer ready: reconnect with backoff,
   * and ioredis (autoResendUnfulfilledCommands) and go-redis (MaxRetries) send the
   * unanswered commands again, which is right here since a command left unanswered
   * was never run. An error reply would instead reach the application as the
   * command's failure, which most clients do not retry.
   */
  drain(graceMs: number): Promise<number>;
  /** Closes the listener and every connection at once. */
  stop(): void;
}

const MAX_CLIENTS_REACHED = "-ERR max number of clients reached\r\n";

/** Starts listening on config.host and `port` (0: a free one); throws as Bun.listen does (EADDRINUSE). */
export function startRespServer(opts: RespServerOptions, port: number): RespServer {
  const { config, log } = opts;
  const access = config.token === undefined ? undefined : tokenAccess(config.token, config.readToken);
  const limits = limitsFor(config);
  const refusalLines = new LogLimiter(opts.wallMs ?? Date.now);
  const shared: Shared = {
    service: opts.service,
    lines: refusalLines,
    config,
    slots: opts.slots ?? new ClientSlots(config.maxClients),
    version: opts.version,
    startedMs: opts.startedMs,
    port,
    // A transaction may queue as much as one command may carry (dispatch.ts).
    maxQueuedBytes: limits.maxCommandBytes,
    sessions: new Map(),
    cursors: new Cursors(),
    randomFrom: new Map(),
    rmwTails: new Map(),
    stats: { connections: 0, commands: 0, rejected: 0, outputBytes: 0, removedBefore: { evicted: 0, expired: 0 } },
    refused: (reply, command, addr) => {
      if (reply === "NOPERM") opts.refusals.clientForbidden++;
      else opts.refusals.clientUnauthorized++;
      // One line per client address (its host, whatever its port) every 10 s, as HTTP's refusals: a client retrying a bad password must not flood the log.
      const remote = hostOf(addr);
      refusalLines.line("resp.auth-refused", remote, (alsoRefusedSinceLastLine) =>
        log.warn("auth refusal", { reply, command, remote, alsoRefusedSinceLastLine }),
      );
    },
    authenticate: (password) => access?.(password),
  };
  let nextId = 1;
  // Bun counts a socket's timeout in whole seconds (in steps of about 4).
  const unauthenticatedSeconds = Math.max(1, Math.round(config.idleTimeoutMs / 1000));
  const open = new OpenConnections<Socket<Client>>();
  let draining: Promise<number> | undefined;
  const listener: TCPSocketListener<Client> = Bun.listen<Client>({
    hostname: config.host,
    port,
    // A client that half-closes (shuts its sending side: `nc -N`, a script's last
    // write) is owed the replies of every command it sent, as redis-server answers
    // them: Bun would otherwise close both ends at its FIN (Client.onEnd).
    allowHalfOpen: true,
    socket: {
      open(socket) {
        if (!shared.slots.take()) {
          // Redis's answer and close, before anything of this connection is read or kept.
          shared.stats.rejected++;
          socket.end(MAX_CLIENTS_REACHED);
          return;
        }
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
        if (session.access === undefined) socket.timeout(unauthenticatedSeconds);
        socket.data = new Client(socket, shared, session, limits, log);
        open.add(socket);
        // A connection made as the stop begins is owed nothing yet.
        if (draining) socket.data.finish();
      },
      data(socket, chunk) {
        socket.data?.onData(chunk); // none on a connection refused at open: what it sends is dropped
      },
      drain(socket) {
        socket.data?.onDrain();
      },
      // A connection that has not authenticated within --idle-timeout of its start is closed (Bun's socket
      // timeout is not put off by what the client sends), as PostgreSQL's authentication_timeout closes one:
      // it held one of the --max-clients slots that HTTP and the peers share, and twenty silent ones cut a
      // node off from its cluster. Closed at once, its NOAUTH replies dropped: one that never reads them
      // would hold a close that waits for them for good. Once authenticated, a connection may idle as long
      // as it likes, as Redis's `timeout 0` lets it.
      timeout(socket) {
        if (socket.data === undefined) return;
        if (socket.data.session.access !== undefined) return void socket.timeout(0);
        socket.terminate();
      },
      end(socket) {
        socket.data?.onEnd();
      },
      close(socket) {
        if (socket.data === undefined) return; // refused at open: it held no slot
        socket.data.onClose();
        if (open.has(socket)) shared.slots.give();
        open.delete(socket);
      },
      error(socket, e) {
        // A handler threw (a bug) or the socket failed: close this connection, keep the node.
        log.warn("connection error: closing it", { error: String(e) });
        if (socket.data === undefined) return void socket.terminate();
        socket.data.onClose();
        if (open.has(socket)) shared.slots.give();
        open.delete(socket);
        socket.terminate();
      },
    },
  });
  shared.port = listener.port;
  return {
    port: listener.port,
    drain(graceMs) {
      draining ??= (async () => {
        listener.stop(false);
        for (const socket of open) socket.data.finish();
        await settledWithin(open.allClosed(), graceMs);
        return open.size;
      })();
      return draining;
    },
    stop: () => listener.stop(true),
  };
}
