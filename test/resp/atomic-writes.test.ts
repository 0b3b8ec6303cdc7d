/**
 * A multi-key write that is refused changes nothing: MSET, MSETNX and DEL check
 * every key and value, and room under --max-memory for all the values, before the
 * first key is written (Items.checkBatch). Found by an adversarial check against
 * redis-server 7.0: an MSET answered with an error had written the pairs before
 * the bad one, and an -OOM MSETNX three of its four keys.
 */
import { describe, expect, test } from "bun:test";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, respSetup } from "./support.ts";

const track = closeAfterEach();
const setup = respSetup(track);
const long = "k".repeat(1025);

describe("a refused multi-key write applies none of itself", () => {
  test("MSET, MSETNX and DEL naming a key makhzen refuses write or delete none of the others", async () => {
    const { conn } = await setup();
    const c = await conn();
    c.send(Buffer.concat([frame("MSET", "mp1", "1", long, "v", "mp2", "2"), frame("MSET", "mp1", "1", Buffer.from([0xff]), "v"), frame("MSETNX", "mp1", "1", long, "v"), frame("EXISTS", "mp1", "mp2")]));
    await c.expect(
      "-ERR key is 1025 bytes; the limit is 1024\r\n-ERR makhzen keys are UTF-8 text: this argument is not valid UTF-8\r\n-ERR key is 1025 bytes; the limit is 1024\r\n:0\r\n",
    );
    c.clear();
    c.send(Buffer.concat([frame("MSET", "mp1", "1", "mp2", "2"), frame("DEL", "mp1", long, "mp2"), frame("UNLINK", "mp1", ".", "mp2"), frame("EXISTS", "mp1", "mp2")]));
    await c.expect(`+OK\r\n-ERR key is 1025 bytes; the limit is 1024\r\n-ERR key must not be "." or "..": a URL path cannot name it\r\n:2\r\n`);
  });

  test("under --max-memory, an MSET or MSETNX that does not fit as a whole is -OOM and writes none of its keys", async () => {
    const { conn } = await setup({ maxMemoryBytes: 3 * 1024 * 1024 });
    const c = await conn();
    const v = "x".repeat(400_000);
    // Fill to about 1.6 MB, leaving room for three more values but not four.
    c.send(Buffer.concat([0, 1, 2, 3].map((i) => frame("SET", `fill${i}`, v))));
    await c.expect("+OK\r\n".repeat(4), 10_000);
    c.clear();
    c.send(Buffer.concat([frame("MSET", "n1", v, "n2", v, "n3", v, "n4", v), frame("MSETNX", "x1", v, "x2", v, "x3", v, "x4", v), frame("EXISTS", "n1", "n2", "n3", "n4", "x1", "x2", "x3", "x4")]));
    const oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
    await c.expect(`${oom}${oom}:0\r\n`, 10_000);
    // Three fit, and a key named twice counts once, at its last value.
    c.clear();
    c.send(Buffer.concat([frame("MSET", "n1", v, "n2", v, "n1", v, "n3", v), frame("EXISTS", "n1", "n2", "n3")]));
    await c.expect("+OK\r\n:3\r\n", 10_000);
    // Replacing values in place needs no more room.
    c.clear();
    c.send(frame("MSET", "n1", v, "n2", v, "n3", v, "fill0", v));
    await c.expect("+OK\r\n", 10_000);
  });
});
