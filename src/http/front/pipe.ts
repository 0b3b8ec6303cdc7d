import type { Socket } from "bun";

/**
 * A client connection handed to Bun.serve: from the first request the front end
 * does not answer itself, every byte the client sends goes to the node's own
 * Bun.serve listener on loopback, and every byte it answers goes back, for the
 * rest of the connection. Nothing is parsed here: Bun frames the requests, and
 * keeps its own limits, deadlines and idle timeout (its closing the upstream
 * connection closes the client's).
 *
 * Both directions respect backpressure: a side that cannot take more pauses the
 * other (socket.pause), so a client uploading a large /load, or not reading a
 * large /dump, holds at most one chunk here.
 */
export interface PipeEnds {
  /** Writes to the client; the bytes it took. */
  toClient: (bytes: Uint8Array) => number;
  pauseClient: () => void;
  resumeClient: () => void;
  closeClient: () => void;
  /** The upstream connection's local port, known once connected: Bun.serve's requestIP of a piped request names it. */
  opened: (localPort: number) => void;
  closed: (localPort: number | undefined) => void;
}

export class Pipe {
  private up: Socket | undefined;
  private upClosed = false;
  private clientGone = false;
  /** Client bytes the upstream has not taken yet (while connecting, or past its buffer). */
  private toUp: Uint8Array[] = [];
  /** Upstream bytes the client has not taken yet. */
  private pendingClient: Uint8Array | undefined;
  private localPort: number | undefined;

  constructor(
    port: number,
    first: Uint8Array,
    private readonly ends: PipeEnds,
  ) {
    this.toUp.push(first);
    const pipe = this;
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(up) {
          pipe.up = up;
          pipe.localPort = up.localPort;
          ends.opened(up.localPort);
          pipe.flushUp();
        },
        data(_up, bytes) {
          pipe.fromUp(bytes);
        },
        drain() {
          pipe.flushUp();
        },
        close() {
          pipe.upEnded();
        },
        error() {
          pipe.upEnded();
        },
        connectError() {
          pipe.upEnded();
        },
      },
    }).catch(() => this.upEnded());
  }

  /** Bytes from the client (copied: Bun may reuse its read buffer). */
  fromClient(bytes: Uint8Array): void {
    if (this.upClosed) return;
    if (this.up === undefined || this.toUp.length > 0) {
      this.toUp.push(Uint8Array.prototype.slice.call(bytes));
      this.ends.pauseClient();
      return;
    }
    const n = this.up.write(bytes);
    if (n < bytes.length) {
      this.toUp.push(Uint8Array.prototype.slice.call(bytes, Math.max(n, 0)));
      this.ends.pauseClient();
    }
  }

  /** The client can take more. */
  clientDrained(): void {
    const pending = this.pendingClient;
    if (pending === undefined) return;
    this.pendingClient = undefined;
    this.fromUp(pending);
  }

  /** The client went away: so does the upstream connection, once it has what the client sent. */
  clientEnded(): void {
    this.clientGone = true;
    if (this.up !== undefined && this.toUp.length === 0) this.up.end();
  }

  private fromUp(bytes: Uint8Array): void {
    if (this.clientGone) return;
    const n = this.ends.toClient(bytes);
    if (n < bytes.length) {
      this.pendingClient = Uint8Array.prototype.slice.call(bytes, Math.max(n, 0));
      this.up?.pause();
    } else {
      this.up?.resume();
      if (this.upClosed) this.ends.closeClient();
    }
  }

  private flushUp(): void {
    const up = this.up;
    if (up === undefined) return;
    while (this.toUp.length > 0) {
      const chunk = this.toUp[0]!;
      const n = up.write(chunk);
      if (n < chunk.length) {
        this.toUp[0] = chunk.subarray(Math.max(n, 0));
        return;
      }
      this.toUp.shift();
    }
    if (this.clientGone) up.end();
    else this.ends.resumeClient();
  }

  private upEnded(): void {
    if (this.upClosed) return;
    this.upClosed = true;
    this.ends.closed(this.localPort);
    // What Bun answered last still goes out before the client's connection closes.
    if (this.pendingClient === undefined) this.ends.closeClient();
  }
}
