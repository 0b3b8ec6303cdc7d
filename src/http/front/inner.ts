import { startServer, type Server, type ServeConfig } from "../serve.ts";
import type { Pipe } from "./pipe.ts";
import { stoppingResponse } from "./stopping.ts";

/**
 * The node's own Bun.serve on 127.0.0.1, which every piped connection reaches
 * (pipe.ts), and the map from each upstream connection back to its client's
 * address and its pipe: refusal logs name the client, and a pipe learns from it
 * which of its requests Bun.serve is still answering.
 */
export class InnerServer {
  readonly server: Server;
  /**
   * Set by the front end's drain: a client's request that completes from then on is
   * answered STOPPING. A peer's (`/internal/`: a replication batch, a forward) is
   * still run: the node is a member until its leave, which comes after the drain,
   * and a forward refused here would leave a conditional write's outcome unknown
   * to the node that sent it, and `w=all` writes elsewhere waiting on this one.
   */
  stopping = false;
  /** "address:port" of an upstream connection → the client's address and its pipe. */
  private readonly piped = new Map<string, { remote: string; pipe: Pipe }>();

  constructor(
    config: ServeConfig,
    private readonly fetch: (request: Request) => Response | Promise<Response>,
  ) {
    // Bun's idle timer keeps running while a request's body streams in: a body still
    // arriving was cut at --idle-timeout (rounded up to Bun's 4 s steps) with no answer,
    // where --body-timeout allowed it longer, and a restore that never paused was cut
    // too. A body is bounded by its route instead (http/limits.ts: --body-timeout in
    // all; /load per read and no total, http/transfer.ts), a second past it here.
    const bodySeconds = Math.ceil(config.bodyTimeoutMs / 1000) + 1;
    const idleSeconds = Math.ceil(config.idleTimeoutMs / 1000);
    const bodyOutlastsIdle = bodySeconds > idleSeconds;
    this.server = startServer({ ...config, host: "127.0.0.1", port: 0 }, {}, (request) => {
      const answer = this.stopping && !isPeerRequest(request) ? stoppingResponse() : this.answer(request);
      if (request.body === null) return answer;
      const lifted = isPath(request, "/load") ? 0 : bodyOutlastsIdle ? bodySeconds : undefined;
      if (lifted === undefined) return answer;
      this.server.timeout(request, lifted);
      // The idle timer again once answered: what is set for a request outlives it (a connection
      // silent after a PUT was kept for --body-timeout, after a /load for good).
      return Promise.resolve(answer).finally(() => this.server.timeout(request, idleSeconds));
    }).server;
  }

  /**
   * What `listen` gives (the front end's Bun.listen); when it throws (the public port
   * taken), this server is stopped first: it was left serving on its 127.0.0.1 port,
   * acknowledging writes for a node `listen()` had closed, and the process never exited.
   */
  unlessFails<T>(listen: () => T): T {
    try {
      return listen();
    } catch (e) {
      void this.server.stop(true);
      throw e;
    }
  }

  get port(): number {
    return this.server.port!;
  }

  /** A pipe's upstream connection opened at `at` ("address:port"), for the client at `remote`. */
  opened(at: string, remote: string, pipe: Pipe): void {
    this.piped.set(at, { remote, pipe });
  }

  /**
   * A pipe's upstream connection closed. Bun.serve may still be reading the last
   * request (a client that sent and left): the address stays known a while, unless
   * a new pipe took its port.
   */
  closed(at: string, pipe: Pipe): void {
    setTimeout(() => {
      if (this.piped.get(at)?.pipe === pipe) this.piped.delete(at);
    }, 5_000).unref();
  }

  /** The client's address of a request Bun.serve took through a pipe (or its own peer's). */
  remoteAddress(request: Request): string | undefined {
    const ip = this.server.requestIP(request);
    if (ip === null) return undefined;
    return this.piped.get(`${ip.address}:${ip.port}`)?.remote ?? ip.address;
  }

  /** The pipe a request came through, if it came through one. */
  private pipeOf(request: Request): Pipe | undefined {
    const ip = this.server.requestIP(request);
    return ip === null ? undefined : this.piped.get(`${ip.address}:${ip.port}`)?.pipe;
  }

  /**
   * Bun.serve's answer, counted on its pipe while it is being made (Pipe.answerOwed):
   * a pipe that stopped framing learns so that an answer is still owed to a client
   * that half-closed (a handler waiting on replicas is silent for seconds).
   */
  private answer(request: Request): Response | Promise<Response> {
    const answer = this.fetch(request);
    if (!(answer instanceof Promise)) return answer;
    const pipe = this.pipeOf(request);
    if (pipe === undefined) return answer;
    pipe.answerOwed(1);
    return answer.finally(() => pipe.answerOwed(-1));
  }
}

/** Where a request's path starts in its URL, whatever origin it has (-1: none). */
function pathAt(url: string): number {
  return url.charCodeAt(0) === 47 /* / */ ? 0 : url.indexOf("/", url.indexOf("//") + 2);
}

/** A request of the peer protocol (`/internal/...`). */
function isPeerRequest(request: Request): boolean {
  const url = request.url;
  const path = pathAt(url);
  return path !== -1 && url.startsWith("/internal/", path);
}

/** A request for exactly `path`, with or without a query. */
function isPath(request: Request, path: string): boolean {
  const url = request.url;
  const at = pathAt(url);
  if (at === -1 || !url.startsWith(path, at)) return false;
  const end = at + path.length;
  return end === url.length || url.charCodeAt(end) === 63 /* ? */;
}

/** The request at `at` of bytes a client sent is one of the peer protocol's (always a POST to /internal/). */
export const startsPeerRequest = (bytes: Buffer, at: number): boolean => bytes.toString("latin1", at, at + 15) === "POST /internal/";
