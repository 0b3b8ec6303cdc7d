/**
 * Numbers as redis-server 7 reads and writes them (each expected reply below
 * was taken from redis-server 7.0.15): INCRBYFLOAT's long-double-like sums and
 * formatting, strtold's input forms, int64 range indexes and offsets, expiry
 * past int64 milliseconds; and AUTH's answers on a node without a token.
 */
import { describe, expect, test } from "bun:test";
import { addDecimal, parseDecimal, pastLongDouble } from "../../src/resp/decimal.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, RawConnection, respNode } from "./support.ts";

const track = closeAfterEach();

async function connect(): Promise<RawConnection> {
  const r = await respNode();
  track(r.node);
  return track(await RawConnection.open(r.respPort));
}

/** Sends each command and checks the replies, all together, byte for byte. */
async function check(c: RawConnection, pairs: [string[], string][]): Promise<void> {
  c.clear();
  c.send(Buffer.concat(pairs.map(([args]) => frame(...args))));
  await c.expect(pairs.map(([, reply]) => reply).join(""));
}

const err = (s: string) => `-ERR ${s}\r\n`;
const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
const NOT_FLOAT = err("value is not a valid float");
const INFINITE = err("increment would produce NaN or Infinity");

describe("INCRBYFLOAT", () => {
  test("adds as Redis's long double shows it: 0.1 + 0.2 is 0.3; 17 decimals at most, trailing zeros cut", async () => {
    const c = await connect();
    await check(c, [
      [["SET", "f", "0.1"], "+OK\r\n"],
      [["INCRBYFLOAT", "f", "0.2"], bulk("0.3")],
      [["INCRBYFLOAT", "f", "10.3"], bulk("10.6")],
      [["INCRBYFLOAT", "f", "-10.6"], bulk("0")],
      [["INCRBYFLOAT", "f", "1.5e-3"], bulk("0.0015")],
      [["INCRBYFLOAT", "f", "-0.0015"], bulk("0")],
      [["INCRBYFLOAT", "f", "0.000000000000000015"], bulk("0.00000000000000002")],
      [["INCRBYFLOAT", "f", "1e-20"], bulk("0.00000000000000002")],
      [["SET", "g", "5.0e3"], "+OK\r\n"],
      [["INCRBYFLOAT", "g", "2.0e2"], bulk("5200")],
      [["INCRBYFLOAT", "g", "-5200.25"], bulk("-0.25")],
      // A zero sum of numbers with exponents is "0" (it was "000000": the operands' exponent kept).
      [["SET", "z", "1e5"], "+OK\r\n"],
      [["INCRBYFLOAT", "z", "-1e5"], bulk("0")],
      [["INCRBYFLOAT", "z", "0e7"], bulk("0")],
    ]);
  });

  test("reads what strtold reads: hex, exponents, inf (then refuses the sum); not blanks, nan, or what overflows a long double", async () => {
    const c = await connect();
    const cases: [string, string][] = [
      ["0x10", bulk("16")],
      ["0X1A", bulk("26")],
      ["0x1p3", bulk("8")],
      ["0x.8", bulk("0.5")],
      ["1e3", bulk("1000")],
      ["1.", bulk("1")],
      [".5", bulk("0.5")],
      ["+5", bulk("5")],
      ["-0.0", bulk("0")],
      ["inf", INFINITE],
      ["-Infinity", INFINITE],
      ["nan", NOT_FLOAT],
      [" 1", NOT_FLOAT],
      ["1 ", NOT_FLOAT],
      ["", NOT_FLOAT],
      [".", NOT_FLOAT],
      ["e5", NOT_FLOAT],
      ["0x", NOT_FLOAT],
      ["1e5000", NOT_FLOAT],
      ["1e-5000", NOT_FLOAT],
      ["1".repeat(5120), NOT_FLOAT],
    ];
    await check(c, cases.map(([by, reply], i): [string[], string] => [["INCRBYFLOAT", `f${i}`, by], reply]));
    // The stored value is read the same way.
    await check(c, [
      [["SET", "h", "0x10"], "+OK\r\n"],
      [["INCRBYFLOAT", "h", "-16.1"], bulk("-0.1")],
      [["SET", "h", "inf"], "+OK\r\n"],
      [["INCRBYFLOAT", "h", "1"], INFINITE],
    ]);
  });
});

describe("INCRBYFLOAT past long double's range", () => {
  test("a sum a long double would hold as infinity is refused, as Redis refuses it, and the value stays", async () => {
    const c = await connect();
    await check(c, [
      [["SET", "f", "1e4932"], "+OK\r\n"],
      [["INCRBYFLOAT", "f", "1e4932"], INFINITE],
      [["GET", "f"], bulk("1e4932")],
      [["SET", "n", "-1e4932"], "+OK\r\n"],
      [["INCRBYFLOAT", "n", "-1e4932"], INFINITE],
      [["SET", "a", "1.1e4932"], "+OK\r\n"],
      [["INCRBYFLOAT", "a", "0.1e4932"], INFINITE],
      [["INCRBYFLOAT", "a", "0x1p16383"], INFINITE],
      [["INCRBYFLOAT", "a", "-1.1e4932"], bulk("0")],
      // Within range, the exact sum as before (Redis prints long double's binary expansion here).
      [["SET", "b", "5e4931"], "+OK\r\n"],
      [["INCRBYFLOAT", "b", "5e4931"], bulk(`1${"0".repeat(4932)}`)],
      // An argument past the range is not a float (strtold overflows), as 1e5000 is.
      [["INCRBYFLOAT", "c", "1.2e4932"], NOT_FLOAT],
      [["INCRBYFLOAT", "c", "0x1p16384"], NOT_FLOAT],
      [["SET", "d", "1.2e4932"], "+OK\r\n"],
      [["INCRBYFLOAT", "d", "0"], NOT_FLOAT],
    ]);
  });

  test("the bound is half an ulp past LDBL_MAX (2^16384 - 2^16319), as a long double rounds", () => {
    const bound = (1n << 16384n) - (1n << 16319n);
    expect(pastLongDouble({ m: bound - 1n, e: 0 })).toBe(false);
    expect(pastLongDouble({ m: bound, e: 0 })).toBe(true);
    expect(pastLongDouble({ m: -bound, e: 0 })).toBe(true);
    expect(pastLongDouble({ m: bound * 10n - 1n, e: -1 })).toBe(false);
    // LDBL_MAX is 1.18973149535723176502126...e4932; the bound 1.18973149535723176505351...e4932.
    expect(parseDecimal("1.18973149535723176505e4932")).toBeDefined();
    expect(parseDecimal("1.18973149535723176506e4932")).toBeUndefined();
    expect(parseDecimal("-1.18973149535723176506e4932")).toBeUndefined();
    expect(addDecimal(parseDecimal("1.18973149535723176505e4932")!, parseDecimal("1e4912")!)).toEqual({ inf: 1 });
    expect(pastLongDouble({ m: 1n, e: 4932 })).toBe(false);
    expect(pastLongDouble({ m: 12n, e: 4931 })).toBe(true);
  });
});

describe("int64 arguments past 2^53", () => {
  test("GETRANGE clamps any int64; SETRANGE past the size limit is Redis's error; past int64 is not an integer", async () => {
    const c = await connect();
    await check(c, [
      [["SET", "s", "hello"], "+OK\r\n"],
      [["GETRANGE", "s", "0", "9223372036854775807"], bulk("hello")],
      [["GETRANGE", "s", "-9223372036854775808", "-1"], bulk("hello")],
      [["GETRANGE", "s", "9007199254740993", "9007199254740999"], bulk("")],
      [["GETRANGE", "s", "0", "99999999999999999999"], err("value is not an integer or out of range")],
      [["SETRANGE", "s", "9223372036854775807", "x"], err("string exceeds maximum allowed size (proto-max-bulk-len)")],
      [["SETRANGE", "s", "9223372036854775807", ""], ":5\r\n"],
      [["SETRANGE", "s", "-1", ""], err("offset is out of range")],
    ]);
  });

  test("an expiry past int64 milliseconds is `invalid expire time`, as Redis; so is one past makhzen's 1e10 s", async () => {
    const c = await connect();
    await check(c, [
      [["SET", "k", "v", "EX", "9223372036854775807"], err("invalid expire time in 'set' command")],
      [["SET", "k", "v", "PX", "9223372036854775807"], err("invalid expire time in 'set' command")],
      [["SET", "k", "v"], "+OK\r\n"],
      [["EXPIRE", "k", "9223372036854775807"], err("invalid expire time in 'expire' command")],
      [["EXPIRE", "k", "-9223372036854775808"], err("invalid expire time in 'expire' command")],
      // Far in the past but inside 64-bit milliseconds: deleted, as on Redis (it was refused, and the key stayed).
      [["EXPIRE", "k", "-9223372036854"], ":1\r\n"],
      [["EXISTS", "k"], ":0\r\n"],
      [["SET", "k", "v"], "+OK\r\n"],
      [["EXPIREAT", "k", "-9223372036854"], ":1\r\n"],
      [["EXISTS", "k"], ":0\r\n"],
      [["SET", "k", "v"], "+OK\r\n"],
      // Redis takes these (it stops at int64 ms); makhzen's longest TTL is 1e10 s (docs/resp.md).
      [["SET", "k", "v", "EX", "10000000001"], err("invalid expire time in 'set' command")],
      [["EXPIRE", "k", "10000000001"], err("invalid expire time in 'expire' command")],
      [["TTL", "k"], ":-1\r\n"],
      // GETEX reads the expiry only once the key is found, as Redis: a missing key is nil whatever it says.
      [["GETEX", "nosuch", "PX", "0"], "$-1\r\n"],
      [["GETEX", "nosuch", "EX", "abc"], "$-1\r\n"],
      [["GETEX", "k", "PX", "0"], err("invalid expire time in 'getex' command")],
      [["GETEX", "k", "EX", "abc"], err("value is not an integer or out of range")],
    ]);
  });
});

describe("AUTH without --token", () => {
  test("as Redis's nopass default user: a bare password is an error, `default` any password is OK, another user WRONGPASS", async () => {
    const c = await connect();
    const WRONGPASS = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    await check(c, [
      [["AUTH", "a", "b"], WRONGPASS],
      [["HELLO", "2", "AUTH", "a", "b"], WRONGPASS],
      [["AUTH", "default", "b"], "+OK\r\n"],
      [["AUTH", "x"], err("AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")],
    ]);
  });
});
