/**
 * Where a request ends, and where its answer ends, in the bytes a pipe carries
 * (pipe.ts): just enough HTTP/1.1 framing (RFC 9112 §6) for the pipe to send
 * Bun.serve one request at a time.
 *
 * Why: Bun.serve (uWS) does not take asynchronous pipelining. A request that
 * arrives while its answer to the one before is still being made (a handler that
 * awaits the disk, replicas or another node) closes the connection with no answer
 * to either. So the pipe holds a request's successors until its answer has fully
 * come back, and needs to know where each one ends.
 *
 * What it costs: a replica receives every replication batch (~40 kB) through a
 * pipe. The framing finds the head's end, reads it (a few hundred bytes), and then
 * skips a Content-Length body by count; only chunked sizes are read inside a body.
 *
 * What it does not do: judge a request. Anything it is not sure of (a head it
 * cannot read, both or bad length headers, a line ending alone, Upgrade, an answer
 * framed by the connection's close) is UNSURE, and the pipe then stops framing and
 * passes bytes through for the rest of the connection, as it did before: Bun's
 * parser answers the bad request (400) and closes, as always. Being unsure is
 * always safe; being wrong about a length would not be, so the rules are strict.
 */

/** The framing cannot tell: the pipe passes the rest of the connection through raw. */
export const UNSURE = -1;

/** Head bytes (request or answer) past which, still without an end, the framing gives up. Bun refuses a request head over 16 kB (431). */
const HEAD_LIMIT_BYTES = 64 * 1024;
/** A chunk-size line or trailer line longer than this is not one the framing reads. */
const LINE_LIMIT_BYTES = 4 * 1024;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REQUEST_LINE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP\/1\.[01]$/;
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: [^\r\n]*)?$/;
const DIGITS = /^\d{1,15}$/;
const CHUNK_SIZE = /^([0-9A-Fa-f]{1,12})(?:[ \t]*;[^\r\n]*)?$/;

const buf = (bytes: Uint8Array): Buffer => (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));

/** How a message's body is delimited, read from its head's framing headers; UNSURE when they are odd. */
interface Framing {
  chunked: boolean;
  /** The Content-Length, or -1 for none. */
  length: number;
  upgrade: boolean;
}

/** The framing headers of a head (the lines after its first), or UNSURE. */
function framingOf(lines: string[]): Framing | typeof UNSURE {
  let chunked = false;
  let length = -1;
  let upgrade = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(":");
    // No colon, a folded line, a stray CR or LF: not a head the framing reads.
    if (colon <= 0 || line.includes("\n") || line.includes("\r")) return UNSURE;
    const name = line.slice(0, colon);
    if (!TOKEN.test(name)) return UNSURE;
    if (name.length !== 14 && name.length !== 17 && name.length !== 7) continue;
    const lower = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (lower === "content-length") {
      // Given twice with one value, as Bun takes it (refuse.ts); two values are Bun's to refuse.
      if (!DIGITS.test(value) || (length !== -1 && Number(value) !== length)) return UNSURE;
      length = Number(value);
    } else if (lower === "transfer-encoding") {
      if (chunked || value.toLowerCase() !== "chunked") return UNSURE;
      chunked = true;
    } else if (lower === "upgrade") upgrade = true;
  }
  if (chunked && length !== -1) return UNSURE;
  return { chunked, length, upgrade };
}

/**
 * A head arriving in pieces: the bytes up to its blank line. `feed` returns how
 * many of the bytes given are the head's (its end reached if `text` is then set),
 * or UNSURE once it grows past HEAD_LIMIT_BYTES.
 */
class HeadReader {
  private partial: Buffer | undefined;
  /** The whole head, without its final CRLFCRLF, once read. */
  text: string | undefined;

  reset(): void {
    this.partial = undefined;
    this.text = undefined;
  }

  /** What has arrived of the head, as latin1 (whole: with its blank line), or undefined before its first byte. */
  soFar(): string | undefined {
    if (this.text !== undefined) return this.text + "\r\n\r\n";
    return this.partial?.toString("latin1");
  }

  feed(bytes: Buffer, at: number): number {
    const prior = this.partial;
    if (prior === undefined) {
      const end = bytes.indexOf("\r\n\r\n", at, "latin1");
      if (end !== -1 && end - at <= HEAD_LIMIT_BYTES) {
        this.text = bytes.toString("latin1", at, end);
        return end + 4 - at;
      }
      if (end !== -1 || bytes.length - at > HEAD_LIMIT_BYTES) return UNSURE;
      this.partial = Buffer.from(bytes.subarray(at));
      return bytes.length - at;
    }
    // Rare (a head split across reads): the piece so far and at most what could finish it.
    const more = bytes.subarray(at, Math.min(bytes.length, at + HEAD_LIMIT_BYTES + 4 - prior.length));
    const joined = Buffer.concat([prior, more]);
    const end = joined.indexOf("\r\n\r\n", Math.max(0, prior.length - 3), "latin1");
    if (end === -1) {
      if (joined.length > HEAD_LIMIT_BYTES) return UNSURE;
      this.partial = joined;
      return more.length;
    }
    this.partial = undefined;
    this.text = joined.toString("latin1", 0, end);
    return end + 4 - prior.length;
  }
}

/**
 * A chunked body (RFC 9112 §7.1): sizes and their CRLFs are read, chunk data is
 * skipped by count. Chunk extensions are allowed (Bun reads past them); a trailer
 * field is UNSURE, as Bun does not read trailers (measured: it ends the body at the
 * last chunk and refuses the trailer line as the next request, 400); so is a line
 * ending alone, or a size line past LINE_LIMIT_BYTES.
 */
class ChunkedReader {
  /** What comes next: a size line, chunk data, the CRLF after it, or (after the last chunk) the blank line. */
  private state: "size" | "data" | "crlf" | "trailer" = "size";
  private left = 0;
  private line = "";
  done = false;

  reset(): void {
    this.state = "size";
    this.left = 0;
    this.line = "";
    this.done = false;
  }

  /** Reads from `at`: the bytes that are the body's (its end reached if `done`), or UNSURE. */
  feed(bytes: Buffer, at: number): number {
    let i = at;
    while (i < bytes.length && !this.done) {
      if (this.state === "data") {
        const take = Math.min(this.left, bytes.length - i);
        this.left -= take;
        i += take;
        if (this.left === 0) this.state = "crlf";
        continue;
      }
      const eol = bytes.indexOf(10, i);
      const piece = bytes.toString("latin1", i, eol === -1 ? bytes.length : eol + 1);
      i = eol === -1 ? bytes.length : eol + 1;
      this.line += piece;
      if (this.line.length > LINE_LIMIT_BYTES) return UNSURE;
      if (eol === -1) continue;
      if (!this.line.endsWith("\r\n")) return UNSURE;
      const line = this.line.slice(0, -2);
      this.line = "";
      if (line.includes("\r")) return UNSURE;
      if (this.state === "crlf") {
        if (line !== "") return UNSURE;
        this.state = "size";
      } else if (this.state === "size") {
        const m = CHUNK_SIZE.exec(line);
        if (m === null) return UNSURE;
        this.left = parseInt(m[1]!, 16);
        this.state = this.left === 0 ? "trailer" : "data";
      } else if (line === "") this.done = true;
      else return UNSURE;
    }
    return i - at;
  }
}

/**
 * A message: head, then a body by Content-Length, chunked, or none. `noBody` says
 * a head-only message (set by the subclass when it reads the head).
 */
abstract class MessageReader {
  protected readonly head = new HeadReader();
  private readonly chunks = new ChunkedReader();
  private body: "none" | "length" | "chunked" = "none";
  private left = 0;
  /** The message's last byte has been read. */
  ended = false;

  reset(): void {
    this.head.reset();
    this.chunks.reset();
    this.body = "none";
    this.left = 0;
    this.ended = false;
  }

  /** The head is whole: its framing, or UNSURE; "again" for an interim head another follows (a 1xx). */
  protected abstract readHead(text: string): Framing | "again" | typeof UNSURE;

  /**
   * Reads `bytes` as the rest of the current message: how many of them are its
   * (all, unless it ended within them), or UNSURE. Not called once it ended.
   */
  feed(bytes: Uint8Array): number {
    const b = buf(bytes);
    let i = 0;
    while (i < b.length && !this.ended) {
      if (this.head.text === undefined) {
        const n = this.head.feed(b, i);
        if (n === UNSURE) return UNSURE;
        i += n;
        const text = this.head.text;
        if (text === undefined) continue;
        const framing = this.readHead(text);
        if (framing === UNSURE) return UNSURE;
        if (framing === "again") {
          this.head.reset();
          continue;
        }
        if (framing.chunked) this.body = "chunked";
        else if (framing.length > 0) {
          this.body = "length";
          this.left = framing.length;
        } else this.ended = true;
      } else if (this.body === "length") {
        const take = Math.min(this.left, b.length - i);
        this.left -= take;
        i += take;
        if (this.left === 0) this.ended = true;
      } else {
        const n = this.chunks.feed(b, i);
        if (n === UNSURE) return UNSURE;
        i += n;
        if (this.chunks.done) this.ended = true;
      }
    }
    return i;
  }
}

/** The client's requests, one at a time: `feed` to its end, then `reset` for the next. */
export class RequestReader extends MessageReader {
  /** The current request is a HEAD: its answer has no body. */
  isHead = false;

  /** The current request's head has been read whole (Bun answers nothing before that, but a refusal of a head it cannot read). */
  get headRead(): boolean {
    return this.head.text !== undefined;
  }

  /** What has arrived of the current request's head (pipe.ts: what a refusal of it names). */
  headSoFar(): string | undefined {
    return this.head.soFar();
  }

  override reset(): void {
    super.reset();
    this.isHead = false;
  }

  protected readHead(text: string): Framing | typeof UNSURE {
    const lines = text.split("\r\n");
    if (!REQUEST_LINE.test(lines[0]!)) return UNSURE;
    const framing = framingOf(lines);
    // An Upgrade (`curl --http2` sends h2c on plain HTTP) changes nothing: no route
    // upgrades (server.upgrade is never called), so Bun answers it as HTTP/1.1; were
    // an answer ever a 101, the AnswerReader is unsure of it.
    if (framing === UNSURE) return UNSURE;
    this.isHead = lines[0]!.startsWith("HEAD ");
    return framing;
  }
}

/**
 * Bun.serve's answer to the current request: interim 1xx heads (`100 Continue`)
 * are read past, the final answer to its end. No body for a HEAD's, a 204's or a
 * 304's (RFC 9112 §6.3); an answer framed by the close of the connection, or a 101,
 * is UNSURE.
 */
export class AnswerReader extends MessageReader {
  /** Set before the answer's first byte: the request was a HEAD. */
  toHead = false;

  protected readHead(text: string): Framing | "again" | typeof UNSURE {
    const lines = text.split("\r\n");
    const m = STATUS_LINE.exec(lines[0]!);
    if (m === null) return UNSURE;
    const status = Number(m[1]);
    if (status === 101) return UNSURE;
    if (status < 200) return "again";
    const framing = framingOf(lines);
    if (framing === UNSURE) return UNSURE;
    if (this.toHead || status === 204 || status === 304) return { chunked: false, length: 0, upgrade: false };
    if (!framing.chunked && framing.length === -1) return UNSURE;
    return framing;
  }
}
