/**
 * The Redis request parser: bytes in, commands (arrays of argument bytes) out.
 *
 * A client may send a command in any number of reads, or many commands in one
 * (pipelining), so the parser is incremental: it keeps the unparsed tail and the
 * state of a half-read multibulk (how many arguments are still due, the length of
 * the bulk it waits for), and never re-reads what it has already taken. A large
 * value that trickles in 64 KiB at a time is held as a list of chunks and joined
 * once, when all its bytes are there, not copied again on every read.
 *
 * Two request forms, as Redis takes them: a multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`,
 * what every client library sends) and an inline command (`GET k\r\n`, what telnet
 * and redis-benchmark's inline mode send), split like a shell line (see inline.ts).
 *
 * Everything is bounded (Limits): a bulk's length, the argument count, a whole
 * command's bytes and an inline line. A bulk past its bound but within the
 * command's is read and dropped as it arrives (`discarded`: the connection refuses
 * that command and goes on). Past a bound otherwise, or on a malformed frame, the
 * parser returns the commands it completed before it and then a protocol error,
 * worded as Redis words it; the connection answers those, then the error, and
 * closes. The parser is then dead: it never resynchronises on a stream it no
 * longer understands.
 */
import { splitInline } from "./inline.ts";

export interface Limits {
  /** Longest bulk argument, in bytes (a key or a value). */
  maxBulkBytes: number;
  /** Most arguments in one command. */
  maxArgs: number;
  /** Most bytes of one command, its arguments together: bounds what one connection buffers. */
  maxCommandBytes: number;
  /** Longest inline command line (Redis: 64 KiB). */
  maxInlineBytes: number;
  /** The limits of a client before AUTH: past them the error says `unauthenticated`, as Redis's does. */
  unauthenticated?: boolean;
}

/**
 * Before AUTH, as Redis: a client that has not proved a token may send only small
 * multibulk commands, at most 10 arguments of at most 16 KiB each (so at most
 * 160 KiB), and Redis's error then says `unauthenticated` (a length past what an
 * authenticated client may send is still `invalid`). An inline command is bounded
 * by its line only, as on Redis: it reaches AUTH's check and is answered -NOAUTH.
 */
export const UNAUTHENTICATED_LIMITS: Limits = { maxBulkBytes: 16 * 1024, maxArgs: 10, maxCommandBytes: 10 * 16 * 1024, maxInlineBytes: 64 * 1024, unauthenticated: true };

/** Longest argument count Redis reads as a count at all (INT_MAX): past it the multibulk length is `invalid` even before AUTH. */
const MAX_MULTIBULK = 2 ** 31 - 1;
/** Redis's proto-max-bulk-len default (512 MB): past it a bulk length is `invalid` even before AUTH. */
const MAX_BULK = 512 * 1024 * 1024;

export interface Parsed {
  commands: Buffer[][];
  /** Set when the stream is malformed or over a limit: answer it (`-ERR <error>`) after `commands`, then close. */
  error?: string;
}

const CR = 13;
const LF = 10;

export class RespParser {
  /** Unparsed bytes; `pos` is where parsing resumes. */
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Chunks of a bulk too large for the current buffer, gathered until complete. */
  private parked: Buffer[] = [];
  private parkedBytes = 0;
  /** Arguments still due in the current multibulk; 0 when between commands. */
  private due = 0;
  private args: Buffer[] = [];
  private commandBytes = 0;
  /** Length of the bulk being waited for; -1 while its `$` header is due. */
  private bulkLen = -1;
  private dead = false;
  /** Bytes still to be read and dropped of a bulk over maxBulkBytes (see `discarded`). */
  private skip = 0;
  /**
   * The length of the longest bulk of the command next() just answered that was
   * over `maxBulkBytes` but within `maxCommandBytes`: its bytes were read and
   * dropped (never held), an empty argument stands in its place, and the command
   * must be refused rather than run. 0 for a command whose every bulk was kept.
   */
  discarded = 0;
  /** Which argument that longest dropped bulk was (0 is the command's name): a key's is refused as a key. */
  discardedAt = 0;
  /** Set once the stream is malformed or over a limit: answer it (`-ERR <error>`) after the commands before it, then close. */
  error: string | undefined;

  constructor(public limits: Limits) {}

  /** Parses what `chunk` completes. Never throws on any input. */
  feed(chunk: Uint8Array): Parsed {
    const commands: Buffer[][] = [];
    // The error is reported once, by the feed that met it.
    if (this.dead) return { commands };
    this.push(chunk);
    for (let args = this.next(); args !== undefined; args = this.next()) commands.push(args);
    return this.error === undefined ? { commands } : { commands, error: this.error };
  }

  /**
   * Adds bytes without parsing them: next() takes the commands out one at a
   * time, so a connection can stop between two commands (its output is full)
   * and leave the rest unparsed, or change the limits (AUTH) before the next
   * command of the same read is parsed.
   */
  push(chunk: Uint8Array): void {
    if (!this.dead) this.append(chunk);
  }

  /**
   * The next complete command, or undefined when the bytes held complete none
   * (or the stream failed: then `error` is set, and stays). Never throws.
   */
  next(): Buffer[] | undefined {
    if (this.dead) return undefined;
    const out: Buffer[][] = [];
    const error = this.parse(out);
    if (error !== undefined) {
      this.dead = true;
      this.error = `Protocol error: ${error}`;
      this.buf = Buffer.alloc(0);
      this.pos = 0;
      this.parked = [];
      this.parkedBytes = 0;
      this.skip = 0;
    }
    // A step completes one command or fails, never both: those before an error were handed out already.
    return out[0];
  }

  /** Bytes held for an incomplete command: what a bound on buffering per connection looks at. */
  get buffered(): number {
    return this.buf.length - this.pos + this.parkedBytes;
  }

  private append(chunk: Uint8Array): void {
    let bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    // Dropping a bulk too large to keep: what it still owes goes, the rest is parsed.
    if (this.skip > 0) {
      if (bytes.length <= this.skip) {
        this.skip -= bytes.length;
        return;
      }
      bytes = bytes.subarray(this.skip);
      this.skip = 0;
    }
    // Waiting for a bulk larger than what is held: park the chunk, join once complete.
    if (this.bulkLen >= 0 && this.buf.length - this.pos + this.parkedBytes + bytes.length < this.bulkLen + 2) {
      this.parked.push(bytes);
      this.parkedBytes += bytes.length;
      return;
    }
    const rest = this.buf.subarray(this.pos);
    if (rest.length === 0 && this.parked.length === 0) this.buf = bytes;
    else this.buf = Buffer.concat([rest, ...this.parked, bytes]);
    this.parked = [];
    this.parkedBytes = 0;
    this.pos = 0;
  }

  /** Parses complete commands into `out`; a string is a protocol error. */
  private parse(out: Buffer[][]): string | undefined {
    const buf = this.buf;
    if (this.parkedBytes > 0 || this.skip > 0) return undefined;
    for (;;) {
      if (this.due === 0) {
        if (this.pos >= buf.length) return this.reset(buf);
        if (buf[this.pos] !== 0x2a /* '*' */) {
          const inline = this.inline(buf, out);
          if (inline !== true) return inline === false ? this.reset(buf) : inline;
          if (out.length > 0) return undefined;
          continue;
        }
        const eol = buf.indexOf(LF, this.pos);
        if (eol < 0) return buf.length - this.pos > this.limits.maxInlineBytes ? "too big mbulk count string" : this.reset(buf);
        const n = parseLength(buf, this.pos + 1, eol);
        if (n === undefined || n > MAX_MULTIBULK) return "invalid multibulk length";
        if (n > this.limits.maxArgs) return this.limits.unauthenticated ? "unauthenticated multibulk length" : "invalid multibulk length";
        this.pos = eol + 1;
        if (n <= 0) continue; // `*0` and `*-1` are nothing, as Redis reads them
        this.due = n;
        this.args = [];
        this.commandBytes = 0;
        this.discarded = 0;
      }
      if (this.bulkLen < 0) {
        if (this.pos >= buf.length) return this.reset(buf);
        if (buf[this.pos] !== 0x24 /* '$' */) return `expected '$', got '${String.fromCharCode(buf[this.pos]!)}'`;
        const eol = buf.indexOf(LF, this.pos);
        if (eol < 0) return buf.length - this.pos > this.limits.maxInlineBytes ? "too big bulk count string" : this.reset(buf);
        const n = parseLength(buf, this.pos + 1, eol);
        if (n === undefined || n < 0) return "invalid bulk length";
        this.commandBytes += n;
        this.pos = eol + 1;
        if (n > this.limits.maxBulkBytes) {
          // Within the command's bound, an authenticated client's bulk is read and dropped, and the command
          // refused (a value a little over --max-value-bytes need not cost the connection); past it, or
          // before AUTH (as Redis), the stream ends here.
          if (this.limits.unauthenticated || this.commandBytes > this.limits.maxCommandBytes) {
            return this.limits.unauthenticated && n <= MAX_BULK ? "unauthenticated bulk length" : "invalid bulk length";
          }
          if (n > this.discarded) [this.discarded, this.discardedAt] = [n, this.args.length];
          const held = Math.min(n, buf.length - this.pos);
          this.pos += held;
          this.skip = n - held;
          // Then its CRLF, and an empty argument in its place.
          this.bulkLen = 0;
          if (this.skip > 0) return this.reset(buf);
        } else {
          if (this.commandBytes > this.limits.maxCommandBytes) return `command larger than ${this.limits.maxCommandBytes} bytes`;
          this.bulkLen = n;
        }
      }
      if (buf.length - this.pos < this.bulkLen + 2) return this.reset(buf);
      const end = this.pos + this.bulkLen;
      if (buf[end] !== CR || buf[end + 1] !== LF) return "expected CRLF after a bulk string";
      this.args.push(buf.subarray(this.pos, end));
      this.pos = end + 2;
      this.bulkLen = -1;
      if (--this.due === 0) {
        out.push(this.args);
        this.args = [];
        return undefined; // one command a step: next() hands it out
      }
    }
  }

  /**
   * One inline command at `pos`: true when taken (or a blank line skipped), false
   * when its line is not complete yet, a string on a protocol error.
   */
  private inline(buf: Buffer, out: Buffer[][]): boolean | string {
    const eol = buf.indexOf(LF, this.pos);
    if (eol < 0) return buf.length - this.pos > this.limits.maxInlineBytes ? "too big inline request" : false;
    if (eol - this.pos > this.limits.maxInlineBytes) return "too big inline request";
    const lineEnd = eol > this.pos && buf[eol - 1] === CR ? eol - 1 : eol;
    const args = splitInline(buf.subarray(this.pos, lineEnd));
    this.pos = eol + 1;
    this.discarded = 0;
    if (args === undefined) return "unbalanced quotes in request";
    // No count limit, as Redis's inline reading has none: the line's length bounds it.
    if (args.length > 0) out.push(args);
    return true;
  }

  /** Drops what was parsed, keeping only the tail, so a long pipelined stream does not pin old buffers. */
  private reset(buf: Buffer): undefined {
    if (this.pos >= buf.length) {
      this.buf = EMPTY;
      this.pos = 0;
    }
    return undefined;
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The decimal between `from` and `to` (a line end, with or without its CR): a
 * signed integer of at most 12 digits, or undefined when it is not one. 12 digits
 * are far past any limit, so the arithmetic stays exact.
 */
function parseLength(buf: Buffer, from: number, to: number): number | undefined {
  let end = to;
  if (end > from && buf[end - 1] === CR) end--;
  let i = from;
  let negative = false;
  if (buf[i] === 0x2d /* '-' */) {
    negative = true;
    i++;
  }
  if (i >= end || end - i > 12) return undefined;
  let n = 0;
  for (; i < end; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return undefined;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}
