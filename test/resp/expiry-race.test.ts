/**
 * A TTL that runs out between the front end's clock reading and the write: Redis
 * answers as usual (SET's OK, PEXPIRE's 1, INCR's new value) and the key is simply
 * gone. RESP computes expiresAt from one reading of the node's clock and the core
 * checks it against a later one (on the owner, in a partitioned cluster), which
 * answered HTTP's `expiresAt must be ... in the future` to RESP clients. The write
 * now says a past expiry just expires the key (SetOptions.pastExpiryDeletes).
 * A clock that moves 1 ms at every reading makes the race happen every time.
 */
import { describe, expect, test } from "bun:test";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, respSetup } from "./support.ts";

const track = closeAfterEach();
const setup = respSetup(track);

/** A wall clock that, while `ticking`, moves 1 ms further at every reading. */
function steppingClock() {
  let skew = 0;
  const clock = { ticking: false, read: () => Date.now() + (clock.ticking ? ++skew : skew) };
  return clock;
}

describe("a TTL that runs out while the command runs", () => {
  test("SET PX, PSETEX, PEXPIRE, GETEX PX and INCR/APPEND/SETRANGE answer as Redis, and the key is gone", async () => {
    const clock = steppingClock();
    const { conn } = await setup({ wallClock: clock.read });
    const c = await conn();
    c.send(Buffer.concat([frame("SET", "pe", "v"), frame("SET", "gx", "v")]));
    await c.expect("+OK\r\n+OK\r\n");
    c.clear();
    clock.ticking = true;
    const replies: string[] = [];
    // Expiries a few ms away: past by the time the core looks, whichever number of readings come between.
    for (const ms of ["2", "3", "4"]) {
      c.clear();
      c.send(Buffer.concat([frame("SET", "px", "v", "PX", ms), frame("PSETEX", "ps", ms, "v"), frame("SET", "pe", "v"), frame("PEXPIRE", "pe", ms), frame("SET", "gx", "v"), frame("GETEX", "gx", "PX", ms)]));
      await c.expect("+OK\r\n+OK\r\n+OK\r\n:1\r\n+OK\r\n$1\r\nv\r\n");
      replies.push(c.received.toString());
    }
    // A key written with its TTL a few readings away, then a read-modify-write that keeps that expiry: for some
    // distances the key is live when read and its expiry past when written. Never an error; the key then gone.
    let raced = 0;
    for (const [op, extra, live, fresh] of [["INCR", [], ":6", ":1"], ["APPEND", ["1"], ":2", ":1"], ["SETRANGE", ["0", "7"], ":1", ":1"]] as const) {
      for (let ms = 2; ms <= 12; ms++) {
        c.clear();
        c.send(Buffer.concat([frame("DEL", "tr"), frame("SET", "tr", "5", "PX", String(ms)), frame(op, "tr", ...extra), frame("EXISTS", "tr")]));
        const got = (await c.until((t) => t.split("\r\n").length >= 5)).split("\r\n").slice(1, 4);
        expect(got[0]).toBe("+OK");
        expect([live, fresh] as string[]).toContain(got[1]!);
        if (got[1] === live && got[2] === ":0") raced++;
      }
    }
    expect(raced).toBeGreaterThan(0);
    c.clear();
    c.send(frame("EXISTS", "px", "ps", "pe", "gx"));
    await c.expect(":0\r\n");
  });
});
