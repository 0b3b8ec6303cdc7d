import { base64Bytes } from "../core/binary.ts";

/**
 * Replies: what a command answers, as a small tree, and how it is written in
 * RESP2 or RESP3. A handler builds the tree once; the connection writes it in
 * the protocol its client chose with HELLO. RESP3's types fold onto RESP2's as
 * Redis folds them: a map is a flat array of key, value, ...; a set an array; a
 * double a bulk string; null `$-1` (or `*-1` for a null array).
 */
export type Reply =
  | { t: "simple"; s: string }
  | { t: "error"; s: string }
  | { t: "int"; n: number | bigint }
  | { t: "bulk"; v: string | Uint8Array }
  /**
   * A binary value as it is stored, base64 (core/binary.ts), decoded only when
   * written: a reply holds a reference to the stored string, not a copy, and its
   * size is known without decoding. `decoded` keeps the bytes once written, so a
   * reply object repeated in one answer (MGET k k k) is decoded once.
   */
  | { t: "bulk64"; b64: string; decoded?: Buffer }
  /** Text for people (INFO, CLIENT LIST): RESP3's verbatim string `=N\r\ntxt:...`, a bulk string in RESP2, as Redis's addReplyVerbatim. */
  | { t: "verbatim"; v: string }
  | { t: "nil" }
  | { t: "nilArray" }
  /**
   * `applied`: the reply of commands that already ran (EXEC's), so a refusal of the
   * reply itself must say they were applied (client.ts, outputLimitError).
   */
  | { t: "array"; items: Reply[]; applied?: true }
  | { t: "set"; items: Reply[] }
  | { t: "map"; entries: [Reply, Reply][] }
  | { t: "double"; n: number };

export type Proto = 2 | 3;

export const OK: Reply = { t: "simple", s: "OK" };
export const NIL: Reply = { t: "nil" };
export const NIL_ARRAY: Reply = { t: "nilArray" };
export const ZERO: Reply = { t: "int", n: 0 };
export const ONE: Reply = { t: "int", n: 1 };
export const simple = (s: string): Reply => ({ t: "simple", s });
export const int = (n: number | bigint): Reply => ({ t: "int", n });
export const bulk = (v: string | Uint8Array): Reply => ({ t: "bulk", v });
export const bulk64 = (b64: string): Reply => ({ t: "bulk64", b64 });
export const verbatim = (v: string): Reply => ({ t: "verbatim", v });
export const bulkOrNil = (v: string | Uint8Array | undefined | null): Reply => (v === undefined || v === null ? NIL : { t: "bulk", v });
export const array = (items: Reply[]): Reply => ({ t: "array", items });
export const bulks = (items: readonly string[]): Reply => ({ t: "array", items: items.map(bulk) });
export const set = (items: Reply[]): Reply => ({ t: "set", items });
export const double = (n: number): Reply => ({ t: "double", n });
/** A map from names to replies (HELLO, COMMAND DOCS); strings become bulk strings. */
export const map = (entries: [string, Reply | string | number][]): Reply => ({
  t: "map",
  entries: entries.map(([k, v]) => [bulk(k), typeof v === "string" ? bulk(v) : typeof v === "number" ? int(v) : v]),
});
/** An error reply: `line` starts with its code, `ERR syntax error`. */
/**
 * An error reply. Its line cannot hold a line break (Redis turns them into spaces
 * too): a message that echoes an argument (`-ERR Unsupported option x`) would end
 * early, and the rest of it read as the next command's reply (a forged `+OK`).
 */
export const errorReply = (line: string): Reply => ({ t: "error", s: /[\r\n]/.test(line) ? line.replace(/[\r\n]/g, " ") : line });

/**
 * Output being gathered for one write: text while every part is text (one string,
 * encoded once by the socket), bytes once a binary bulk joins.
 */
export class Out {
  private parts: (string | Uint8Array)[] = [];
  private text = "";
  bytes = 0;

  write(r: Reply, proto: Proto): void {
    switch (r.t) {
      case "simple":
        this.str(`+${r.s}\r\n`);
        return;
      case "error":
        this.str(`-${r.s}\r\n`);
        return;
      case "int":
        this.str(`:${r.n}\r\n`);
        return;
      case "bulk":
        if (typeof r.v === "string") {
          this.str(`$${Buffer.byteLength(r.v)}\r\n${r.v}\r\n`);
        } else {
          this.str(`$${r.v.length}\r\n`);
          this.raw(r.v);
          this.str("\r\n");
        }
        return;
      case "bulk64": {
        const bytes = (r.decoded ??= Buffer.from(r.b64, "base64"));
        this.str(`$${bytes.length}\r\n`);
        this.raw(bytes);
        this.str("\r\n");
        return;
      }
      case "verbatim":
        this.str(proto === 3 ? `=${Buffer.byteLength(r.v) + 4}\r\ntxt:${r.v}\r\n` : `$${Buffer.byteLength(r.v)}\r\n${r.v}\r\n`);
        return;
      case "nil":
        this.str(proto === 3 ? "_\r\n" : "$-1\r\n");
        return;
      case "nilArray":
        this.str(proto === 3 ? "_\r\n" : "*-1\r\n");
        return;
      case "array":
      case "set":
        this.str(`${r.t === "set" && proto === 3 ? "~" : "*"}${r.items.length}\r\n`);
        for (const item of r.items) this.write(item, proto);
        return;
      case "map":
        this.str(proto === 3 ? `%${r.entries.length}\r\n` : `*${r.entries.length * 2}\r\n`);
        for (const [k, v] of r.entries) {
          this.write(k, proto);
          this.write(v, proto);
        }
        return;
      case "double": {
        const s = formatDouble(r.n);
        this.str(proto === 3 ? `,${s}\r\n` : `$${s.length}\r\n${s}\r\n`);
        return;
      }
    }
  }

  /** What was gathered, as one string or one buffer, and empties the output. */
  take(): string | Uint8Array {
    if (this.parts.length === 0) {
      const t = this.text;
      this.text = "";
      this.bytes = 0;
      return t;
    }
    if (this.text !== "") this.parts.push(Buffer.from(this.text));
    const joined = Buffer.concat(this.parts.map((p) => (typeof p === "string" ? Buffer.from(p) : p)));
    this.parts = [];
    this.text = "";
    this.bytes = 0;
    return joined;
  }

  get empty(): boolean {
    return this.text === "" && this.parts.length === 0;
  }

  private str(s: string): void {
    this.text += s;
    this.bytes += s.length;
  }

  private raw(b: Uint8Array): void {
    if (this.text !== "") this.parts.push(this.text);
    this.text = "";
    this.parts.push(b);
    this.bytes += b.length;
  }
}

/**
 * The bytes `r` takes once written, without writing it: a bulk string's length
 * is its stored length (a binary value's from its base64, not decoded), and a
 * text value repeated in the reply is measured once.
 */
export function replyBytes(r: Reply, proto: Proto): number {
  const measured = new Map<string, number>();
  const textBytes = (s: string): number => {
    // A short string is cheaper to measure than to look up.
    if (s.length < 1024) return Buffer.byteLength(s);
    let n = measured.get(s);
    if (n === undefined) measured.set(s, (n = Buffer.byteLength(s)));
    return n;
  };
  const bulkBytes = (n: number): number => String(n).length + n + 5;
  const size = (r: Reply, total: number): number => {
    switch (r.t) {
      case "simple":
      case "error":
        return total + textBytes(r.s) + 3;
      case "int":
        return total + String(r.n).length + 3;
      case "bulk":
        return total + bulkBytes(typeof r.v === "string" ? textBytes(r.v) : r.v.length);
      case "bulk64":
        return total + bulkBytes(r.decoded?.length ?? base64Bytes(r.b64));
      case "verbatim":
        return total + bulkBytes(textBytes(r.v) + (proto === 3 ? 4 : 0));
      case "nil":
      case "nilArray":
        return total + (proto === 3 ? 3 : 5);
      case "double":
        return total + formatDouble(r.n).length + 16;
      case "array":
      case "set":
        total += String(r.items.length).length + 3;
        for (const item of r.items) total = size(item, total);
        return total;
      case "map":
        total += String(r.entries.length * 2).length + 3;
        for (const [k, v] of r.entries) total = size(v, size(k, total));
        return total;
    }
  };
  return size(r, 0);
}

/** A double as Redis writes one: `inf`, `-inf`, `nan`, else the shortest form that reads back the same. */
export function formatDouble(n: number): string {
  if (Number.isNaN(n)) return "nan";
  if (n === Infinity) return "inf";
  if (n === -Infinity) return "-inf";
  return String(n);
}
