import type { Socket } from "bun";
import { AnswerReader, RequestReader, UNSURE } from "./frame.ts";
import { bareRefusal, refusal } from "./refuse.ts";
import { dotSegmentRefusal } from "./head.ts";
import { closingErrorWire, isHeadRequest } from "./wire.ts";

/**
 * A client connection handed to Bun.serve: from the first request the front end
 * does not answer itself, every byte the client sends goes to the node's own
 * Bun.serve listener on loopback, and every byte it answers goes back, for the
 * rest of the connection, unchanged. Nothing is judged here: Bun parses the
 * requests, and keeps its own limits, deadlines and idle timeout (its closing the
 * upstream connection closes the client's); the pipe only finds where each
 * request and answer ends (below).
 *
 * Both directions respect backpressure: a side that cannot take more pauses the
 * other (socket.pause), so a client uploading a large /load, or not reading a
 * large /dump, holds at most a chunk or two here.
 *
 * One request at a time: Bun.serve (uWS) does not take asynchronous pipelining. A
 * request that arrives while its answer to the one before is still being made (a
 * handler that awaits: `--fsync always`, `w=quorum`, a forward to an owner) closes
 * the connection with no answer to either, though the first may have been applied.
 * So the pipe frames the requests and the answers (frame.ts) and sends a request
 * up only once the answer to the one before has fully come back; until then its
 * bytes wait here, counted with the rest of what waits to go up (past
 * UP_CHUNK_BYTES the client is paused). A request's own bytes go up as they come:
 * a large upload streams, and one that `Expect`s `100-continue` gets it. Whenever
 * the framing is unsure of a byte it stops for the rest of the connection, and
 * bytes pass through raw as they did before (Bun's parser answers a malformed
 * request 400 and closes); the answers before it have come back by then.
 *
 * Bytes go up at most UP_CHUNK_BYTES per turn of the event loop: handed megabytes of
 * pipelined requests at once, Bun.serve answers them all before the pipe reads one
 * back, and resets a connection whose answers pile up unread (a 5 MB burst was cut
 * after a few hundred answers). 64 kB takes a peer's batch (~40 kB) in one write; at
 * 16 kB a receiving peer paid ~0.15 µs a record more (docs/benchmarks.md, 13, §11).
 */
export interface PipeEnds {
  /** Writes to the client; the bytes it took. */
  toClient: (bytes: Uint8Array) => number;
  pauseClient: () => void;
  resumeClient: () => void;
  closeClient: () => void;
  /** The upstream connection's "address:port", once connected: Bun.serve's requestIP of a piped request names it. */
  opened: (at: string) => void;
  closed: (at: string) => void;
  /** A refusal the pipe answered itself (Bun's bare ones, a dot segment, a head the front end refuses): counted as the front end counts its own. */
  refused: (status: number) => void;
}

/** How long the answers to a half-closed client must have stopped before both ends close. */
const HALF_CLOSE_QUIET_MS = 250;
/** Client bytes written up per turn of the event loop. */
const UP_CHUNK_BYTES = 64 * 1024;

export class Pipe {
  private up: Socket | undefined;
  private upClosed = false;
  /** The client half-closed: the upstream is half-closed too once it has every byte, and answers still flow back. */
  private clientDone = false;
  /** The client is gone: nothing more flows either way. */
  private clientGone = false;
  /** Client bytes the upstream has not taken yet (while connecting, past its buffer, or waiting for the next turn). */
  private toUp: Uint8Array[] = [];
  private queued = 0;
  private flushLater = false;
  /** Upstream bytes the client has not taken yet. */
  private pendingClient: Uint8Array | undefined;
  private at: string | undefined;
  private quiet: ReturnType<typeof setTimeout> | undefined;
  /** Requests go up one at a time; false once the framing was unsure: bytes pass through raw. */
  private framing = true;
  private readonly request = new RequestReader();
  private readonly answer = new AnswerReader();
  /** Bytes at the front of `toUp` (or of the read being written) that the framing gave to the request being sent: they may go up. */
  private sendable = 0;
  /** The final answer to the request being sent has come back (before its end, if Bun answered early). */
  private answered = false;
  /** Answers Bun.serve is still making for this connection (answerOwed): what a raw pipe knows of them. */
  private owed = 0;
  /**
   * The next bytes from Bun.serve start the answer to the request being sent (set
   * for each request while framing; raw, only until the first answer begins). Bun's
   * bare refusals arrive there (refuse.ts, bareRefusal), and are answered with the
   * envelope instead, as the front end answers the malformed heads it sees first.
   */
  private answerStarts = true;
  /** The current request's line has been looked at (checkLine); set by the pipe's own refusal of one. */
  private lineChecked = false;
  private refusedOwn = false;

  constructor(
    port: number,
    first: Uint8Array,
    private readonly ends: PipeEnds,
  ) {
    this.toUp.push(first);
    this.queued = first.length;
    const pipe = this;
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(up) {
          pipe.up = up;
          // The client left while this connected: nothing is to go up.
          if (pipe.clientGone) {
            up.end();
            return pipe.upEnded();
          }
          pipe.at = `${up.localAddress}:${up.localPort}`;
          ends.opened(pipe.at);
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

  /** Bytes from the client: written up at once when nothing waits before them, else copied into the queue. */
  fromClient(bytes: Uint8Array): void {
    if (this.upClosed || this.clientGone) return;
    const up = this.up;
    if (up !== undefined && this.toUp.length === 0 && !this.flushLater && bytes.length <= UP_CHUNK_BYTES) {
      const allowed = this.allowed(bytes);
      const n = allowed === 0 ? 0 : this.sent(Math.max(up.write(allowed === bytes.length ? bytes : bytes.subarray(0, allowed)), 0));
      if (n === bytes.length) return;
      bytes = bytes.subarray(n);
    }
    this.toUp.push(Uint8Array.prototype.slice.call(bytes));
    this.queued += bytes.length;
    if (this.queued > UP_CHUNK_BYTES) this.ends.pauseClient();
    this.flushUp();
  }

  /** The client can take more. */
  clientDrained(): void {
    const pending = this.pendingClient;
    if (pending === undefined) return;
    this.pendingClient = undefined;
    this.toClient(pending);
  }

  /**
   * The client half-closed (FIN): it is still answered. The FIN is not passed on:
   * Bun.serve drops the answers of a connection whose FIN arrives with its last
   * request (measured: 2 of 3 lost). Instead both ends close once every byte went
   * up, no answer is owed, and the answers have stopped for HALF_CLOSE_QUIET_MS.
   */
  clientEnded(): void {
    this.clientDone = true;
    this.flushUp();
    if (!this.closedIfDone()) this.closeWhenQuiet();
  }

  /**
   * A half-closed client with nothing in flight, framed (each answer known whole,
   * and taken), is closed at once: no more answers can come, and waiting out the
   * quiet period held its --max-clients slot for a client long gone (a client
   * opening a connection per request met 503 TOO_MANY_CLIENTS with none open).
   * Raw bytes (the framing stopped) still wait for the answers to stop.
   */
  private closedIfDone(): boolean {
    if (!this.clientDone || this.upClosed || this.clientGone || !this.framing) return false;
    if (this.toUp.length > 0 || this.pendingClient !== undefined || this.request.headSoFar() !== undefined) return false;
    this.up?.end();
    this.upEnded();
    return true;
  }

  /** The client went away: so does the upstream connection. */
  clientClosed(): void {
    this.clientGone = true;
    this.toUp = [];
    this.up?.end();
  }

  /**
   * Bun.serve began (+1) or finished (-1) making an answer for this connection
   * (front.ts counts them). With the framing on, the pipe knows this already; once
   * it stopped, this is how a half-closed client is known to be owed an answer.
   */
  answerOwed(delta: 1 | -1): void {
    this.owed += delta;
    if (this.owed === 0 && this.clientDone) this.closeWhenQuiet();
  }

  /** Whether answers wait for a client that does not read them. */
  clientStalled(): boolean {
    return this.pendingClient !== undefined;
  }

  private closeWhenQuiet(): void {
    if (!this.clientDone || this.upClosed || this.clientGone) return;
    clearTimeout(this.quiet);
    this.quiet = setTimeout(() => {
      // An answer still being made (a slow handler is quiet) is waited for too.
      if (this.toUp.length > 0 || this.pendingClient !== undefined || this.awaitingAnswer()) return this.closeWhenQuiet();
      this.up?.end();
      this.upEnded();
    }, HALF_CLOSE_QUIET_MS);
  }

  private fromUp(bytes: Uint8Array): void {
    if (this.clientGone || this.refusedOwn) return;
    if (this.answerStarts) {
      this.answerStarts = false;
      const refused = bareRefusal(bytes, () => this.request.headSoFar());
      // Bun closes the connection after it: so does the client's (upEnded), once this is out.
      if (refused !== undefined) return this.toClient(refusalWire(refused, this.request.headSoFar(), this.ends));
    }
    const framed = this.framing;
    const next = framed && this.frameAnswer(bytes);
    this.toClient(bytes);
    // The next request may go up; or, the framing just ended, every byte held back.
    if (next || framed !== this.framing) this.flushUp();
  }

  private toClient(bytes: Uint8Array): void {
    if (this.clientGone) return;
    if (this.clientDone) this.closeWhenQuiet();
    if (this.pendingClient !== undefined) {
      // pause() may let one more read through: keep it behind what already waits.
      this.pendingClient = concat(this.pendingClient, bytes);
      return;
    }
    const n = this.ends.toClient(bytes);
    if (n < bytes.length) {
      this.pendingClient = Uint8Array.prototype.slice.call(bytes, Math.max(n, 0));
      this.up?.pause();
      return;
    }
    this.up?.resume();
    if (this.upClosed) this.ends.closeClient();
    else this.closedIfDone();
  }

  private flushUp(): void {
    const up = this.up;
    if (up === undefined || this.flushLater || this.clientGone) return;
    let budget = UP_CHUNK_BYTES;
    while (this.toUp.length > 0) {
      if (budget <= 0) {
        this.flushLater = true;
        setImmediate(() => {
          this.flushLater = false;
          this.flushUp();
        });
        return;
      }
      const chunk = this.toUp[0]!;
      const allowed = Math.min(this.allowed(chunk), budget);
      if (allowed === 0) break; // the next request waits for the answer before it
      const n = this.sent(Math.max(up.write(allowed === chunk.length ? chunk : chunk.subarray(0, allowed)), 0));
      this.queued -= n;
      budget -= n;
      if (n === chunk.length) this.toUp.shift();
      else this.toUp[0] = chunk.subarray(n);
      if (n < allowed) return; // the upstream is full: `drain` goes on
    }
    if (!this.clientDone && this.queued <= UP_CHUNK_BYTES) this.ends.resumeClient();
  }

  /**
   * How many bytes at the start of `chunk` (the next client bytes to go up) may go
   * up now: all of them when raw; else those of the request being sent, and none
   * once it has all gone up and its answer is still to come.
   */
  private allowed(chunk: Uint8Array): number {
    if (!this.framing) return chunk.length;
    if (this.sendable === 0) {
      if (this.request.ended) return 0;
      const n = this.request.feed(chunk);
      if (!this.lineChecked && this.refusedLine()) return 0;
      if (n === UNSURE) {
        this.framing = false;
        return chunk.length;
      }
      this.sendable = n;
      if (this.request.ended && this.answered) this.nextRequest();
    }
    return Math.min(this.sendable, chunk.length);
  }

  /** `n` client bytes went up; returns n. */
  private sent(n: number): number {
    if (this.framing) this.sendable -= n;
    return n;
  }

  /**
   * Reads Bun's bytes as the answer to the request being sent; true if its final
   * answer is complete and the request has gone up whole (the next may go). Bytes
   * that fit no request (Bun refusing a head the framing has not seen whole, a
   * second answer) or an answer it cannot frame end the framing.
   */
  private frameAnswer(bytes: Uint8Array): boolean {
    if (!this.request.headRead || this.answered) return this.unframe();
    this.answer.toHead = this.request.isHead;
    const n = this.answer.feed(bytes);
    if (n === UNSURE || (this.answer.ended && n < bytes.length)) return this.unframe();
    if (!this.answer.ended) return false;
    this.answered = true;
    if (!this.request.ended) return false;
    this.nextRequest();
    return true;
  }

  private unframe(): false {
    this.framing = false;
    return false;
  }

  /**
   * A request whose bucket or key holds a dot segment (head.ts dotSegmentRefusal: Bun would
   * serve it as another route), or whose whole head the front end would refuse on
   * a connection's first request (refuse.ts: two Host headers, a NUL, a fragment...,
   * which Bun served or answered bare), is refused here as it would be there:
   * answered with the envelope, and both ends closed. Bun.serve never gets it whole
   * (a head split across reads has gone up in part, which the close drops), and the
   * answers before it have all come back (one request at a time). Looked at as the
   * head arrives, from its first line, until it is whole.
   */
  private refusedLine(): boolean {
    const head = this.request.headSoFar();
    if (head === undefined || head.indexOf("\r\n") === -1) return false;
    const whole = this.request.headRead;
    if (whole) this.lineChecked = true;
    const refused = dotSegmentRefusal(head, 0) ?? (whole ? refusal(head, 0) : undefined);
    if (refused === undefined) return false;
    this.toClient(refusalWire(refused, head, this.ends));
    this.refusedOwn = true;
    this.framing = false;
    this.toUp = [];
    this.queued = 0;
    this.up?.terminate();
    this.up = undefined;
    this.upEnded();
    return true;
  }

  private nextRequest(): void {
    this.lineChecked = false;
    this.request.reset();
    this.answer.reset();
    this.answered = false;
    this.answerStarts = true;
  }

  /** A request has gone up whole and its answer is still to come (raw: one is being made). */
  private awaitingAnswer(): boolean {
    return this.framing ? this.request.ended && !this.answered : this.owed > 0;
  }

  private upEnded(): void {
    if (this.upClosed) return;
    this.upClosed = true;
    clearTimeout(this.quiet);
    if (this.at !== undefined) this.ends.closed(this.at);
    // Bun closes without a word on a method it does not know (FOO, a lowercase get):
    // a head the front end would have refused gets that refusal.
    const head = this.answerStarts && this.framing && !this.clientGone ? this.request.headSoFar() : undefined;
    const refused = head === undefined ? undefined : refusal(head, 0);
    if (refused !== undefined) {
      this.answerStarts = false;
      this.toClient(refusalWire(refused, head, this.ends));
    }
    // What Bun answered last still goes out before the client's connection closes.
    if (this.pendingClient === undefined) this.ends.closeClient();
  }
}

function refusalWire(r: { status: number; code: string; message: string }, head: string | undefined, ends: PipeEnds): Uint8Array {
  ends.refused(r.status);
  return Buffer.from(closingErrorWire(r.status, r.code, r.message, head !== undefined && isHeadRequest(head)));
}

/** Two byte runs as one (a new array). */
export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
