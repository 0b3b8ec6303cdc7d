/**
 * The parser alone, then under property-based fuzzing (fast-check): any split
 * of a stream parses to the same commands, a truncated stream to a prefix of
 * them with no error, and random bytes never throw. Then the same through real
 * sockets: garbage on one connection never disturbs another, and replies come
 * back in order whatever the chunking.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { RespParser, type Limits } from "../../src/resp/parser.ts";
import { splitInline } from "../../src/resp/inline.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, RawConnection, respNode } from "./support.ts";

const LIMITS: Limits = { maxBulkBytes: 1024, maxArgs: 64, maxCommandBytes: 4096, maxInlineBytes: 256 };
const track = closeAfterEach();

const str = (cmds: Buffer[][]) => cmds.map((c) => c.map((a) => a.toString("latin1")));

/** Feeds `stream` cut at `cuts` (sorted offsets) and collects what the parser returns. */
function parseIn(stream: Buffer, cuts: number[]): { commands: string[][]; error?: string } {
  const p = new RespParser(LIMITS);
  const commands: string[][] = [];
  let at = 0;
  for (const cut of [...cuts, stream.length]) {
    const r = p.feed(stream.subarray(at, cut));
    commands.push(...str(r.commands));
    at = cut;
    if (r.error !== undefined) return { commands, error: r.error };
  }
  return { commands };
}

const arg = fc.uint8Array({ minLength: 0, maxLength: 40 }).map((a) => Buffer.from(a));
const multibulk = fc.array(arg, { minLength: 1, maxLength: 6 }).map((args) => ({ args, bytes: frame(...args) }));
const inlineWord = fc.stringMatching(/^[a-zA-Z0-9_:.-]{1,12}$/);
const inline = fc.array(inlineWord, { minLength: 1, maxLength: 5 }).map((words) => ({ args: words.map((w) => Buffer.from(w)), bytes: Buffer.from(`${words.join(" ")}\r\n`) }));
const stream = fc.array(fc.oneof(multibulk, inline), { minLength: 1, maxLength: 12 });

describe("RespParser", () => {
  test("a multibulk and an inline command; *0 and *-1 are nothing", () => {
    const p = new RespParser(LIMITS);
    const r = p.feed(Buffer.from("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*0\r\n*-1\r\nSET a b\r\n"));
    expect(str(r.commands)).toEqual([["GET", "k"], ["SET", "a", "b"]]);
    expect(r.error).toBeUndefined();
  });

  test("a value split across many reads is parked and joined once, not re-parsed per read", () => {
    const p = new RespParser(LIMITS);
    const value = "v".repeat(1000);
    const bytes = frame("SET", "k", value);
    const out: Buffer[][] = [];
    for (let i = 0; i < bytes.length; i += 7) out.push(...p.feed(bytes.subarray(i, i + 7)).commands);
    expect(str(out)).toEqual([["SET", "k", value]]);
    expect(p.buffered).toBe(0);
  });

  test("over a limit: the commands before it, then the error; the parser is dead after", () => {
    const p = new RespParser(LIMITS);
    const r = p.feed(Buffer.concat([frame("PING"), Buffer.from("*65\r\n")]));
    expect(str(r.commands)).toEqual([["PING"]]);
    expect(r.error).toBe("Protocol error: invalid multibulk length");
    expect(p.feed(frame("PING"))).toEqual({ commands: [] });
    // A bulk over the bulk limit and the command's: the stream ends at its header.
    const q = new RespParser(LIMITS);
    expect(q.feed(Buffer.from("*1\r\n$4097\r\n")).error).toBe("Protocol error: invalid bulk length");
    const big = new RespParser(LIMITS);
    expect(big.feed(Buffer.from("*5\r\n$1000\r\n" + "x".repeat(1000) + "\r\n$1000\r\n" + "x".repeat(1000) + "\r\n$1000\r\n" + "x".repeat(1000) + "\r\n$1000\r\n" + "x".repeat(1000) + "\r\n$1000\r\n")).error).toBe(
      "Protocol error: command larger than 4096 bytes",
    );
  });

  test("a bulk over the bulk limit but within the command's is read and dropped, in any split, never held; the next command parses", () => {
    const over = Buffer.alloc(3000, 0x78);
    const stream = Buffer.concat([frame("SET", "k", over), frame("GET", "k"), frame("SET", "a", over, "b", over.subarray(0, 1000))]);
    for (const step of [1, 7, 1000, 3011, stream.length]) {
      const p = new RespParser(LIMITS);
      const got: { args: string[]; discarded: number }[] = [];
      let most = 0;
      for (let i = 0; i < stream.length; i += step) {
        p.push(stream.subarray(i, i + step));
        most = Math.max(most, p.buffered);
        for (let c = p.next(); c !== undefined; c = p.next()) got.push({ args: c.map((a) => a.toString("latin1")), discarded: p.discarded });
      }
      expect(p.error).toBeUndefined();
      // The dropped bulk is an empty argument; the kept one (1000 bytes) is whole.
      expect(got).toEqual([
        { args: ["SET", "k", ""], discarded: 3000 },
        { args: ["GET", "k"], discarded: 0 },
        { args: ["SET", "a", "", "b", "x".repeat(1000)], discarded: 3000 },
      ]);
      // What is held is at most one read and the 1000-byte bulk, never a 3000-byte one.
      expect(most).toBeLessThanOrEqual(Math.max(step, 1100));
    }
    // A dropped bulk must still end with CRLF.
    const bad = new RespParser(LIMITS);
    expect(bad.feed(Buffer.from("*1\r\n$1500\r\n" + "x".repeat(1500) + "xx")).error).toBe("Protocol error: expected CRLF after a bulk string");
    // Before AUTH, as Redis: the stream ends at the header.
    const unauth = new RespParser({ ...LIMITS, unauthenticated: true });
    expect(unauth.feed(Buffer.from("*1\r\n$1500\r\n")).error).toBe("Protocol error: unauthenticated bulk length");
  });

  test("inline splitting follows sdssplitargs: quotes, escapes, and unbalanced quotes refused", () => {
    const split = (s: string) => splitInline(Buffer.from(s))?.map((b) => b.toString("latin1"));
    expect(split(`set k "a\\tb\\x00" 'x\\'y'  z`)).toEqual(["set", "k", "a\tb\x00", "x'y", "z"]);
    expect(split(`get "a`)).toBeUndefined();
    expect(split(`get "a"b`)).toBeUndefined();
    expect(split("   ")).toEqual([]);
  });

  test("fuzz: any split of a valid stream parses to the same commands, with no error", () => {
    fc.assert(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 20 }), (cmds, rawCuts) => {
        const bytes = Buffer.concat(cmds.map((c) => c.bytes));
        const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const want = cmds.map((c) => c.args.map((a) => a.toString("latin1")));
        expect(parseIn(bytes, cuts)).toEqual({ commands: want });
      }),
      { numRuns: 300 },
    );
  });

  test("fuzz: split at every byte boundary, one byte per read", () => {
    fc.assert(
      fc.property(stream, (cmds) => {
        const bytes = Buffer.concat(cmds.map((c) => c.bytes));
        const every = Array.from({ length: bytes.length }, (_, i) => i);
        expect(parseIn(bytes, every)).toEqual({ commands: cmds.map((c) => c.args.map((a) => a.toString("latin1"))) });
      }),
      { numRuns: 100 },
    );
  });

  test("fuzz: a truncated stream parses to a prefix of its commands, with no error and nothing invented", () => {
    fc.assert(
      fc.property(stream, fc.nat(), (cmds, cutAt) => {
        const bytes = Buffer.concat(cmds.map((c) => c.bytes));
        const cut = cutAt % (bytes.length + 1);
        const got = parseIn(bytes.subarray(0, cut), []);
        const want = cmds.map((c) => c.args.map((a) => a.toString("latin1")));
        expect(got.error).toBeUndefined();
        expect(want.slice(0, got.commands.length)).toEqual(got.commands);
      }),
      { numRuns: 300 },
    );
  });

  test("fuzz: random bytes and mutated frames never throw; an error is a Protocol error and ends parsing", () => {
    const mutated = fc.tuple(stream, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([cmds, at, byte]) => {
      const bytes = Buffer.concat(cmds.map((c) => c.bytes));
      bytes[at % bytes.length] = byte;
      return bytes;
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)), mutated), fc.array(fc.nat(), { maxLength: 8 }), (bytes, rawCuts) => {
        const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const r = parseIn(bytes, cuts);
        if (r.error !== undefined) expect(r.error).toStartWith("Protocol error: ");
        for (const c of r.commands) expect(c.length).toBeGreaterThan(0);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("the parser behind real sockets", () => {
  test("fuzz: replies come back in order whatever the chunking, and garbage on another connection changes nothing", async () => {
    const r = await respNode();
    track(r.node);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom("SET", "GET", "ECHO"), fc.integer({ min: 0, max: 5 }), fc.stringMatching(/^[a-z0-9 ]{0,20}$/)), { minLength: 1, maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        async (ops, rawCuts, garbage) => {
          const good = track(await RawConnection.open(r.respPort));
          const bad = track(await RawConnection.open(r.respPort));
          // A private key space per run, so runs do not see each other's keys.
          const prefix = `run${Math.random().toString(36).slice(2)}:`;
          const model = new Map<string, string>();
          let want = "";
          const frames: Buffer[] = [];
          for (const [op, k, v] of ops) {
            const key = `${prefix}${k}`;
            if (op === "SET") {
              frames.push(frame("SET", key, v));
              model.set(key, v);
              want += "+OK\r\n";
            } else if (op === "GET") {
              frames.push(frame("GET", key));
              const held = model.get(key);
              want += held === undefined ? "$-1\r\n" : `$${held.length}\r\n${held}\r\n`;
            } else {
              frames.push(frame("ECHO", v));
              want += `$${v.length}\r\n${v}\r\n`;
            }
          }
          const bytes = Buffer.concat(frames);
          const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          let at = 0;
          for (const cut of [...cuts, bytes.length]) {
            good.send(bytes.subarray(at, cut));
            bad.send(garbage);
            at = cut;
          }
          await good.expect(want);
          good.close();
          bad.close();
        },
      ),
      { numRuns: 40 },
    );
  });
});
