/**
 * A client that half-closes (shuts its sending side after its last command: `nc -N`,
 * a script's final write) is owed the reply of every command it sent, as
 * redis-server answers them. Before, Bun closed both ends at the client's FIN: a
 * command still waiting (a sliced KEYS, a forward) lost its reply, and every
 * command read behind it was never run.
 */
import { describe, expect, test } from "bun:test";
import { connect } from "node:net";
import { closeAfterEach } from "../support/cleanup.ts";
import { frame, respSetup } from "./support.ts";

const track = closeAfterEach();
const setup = respSetup(track);

/** Sends `bytes`, half-closes, and answers everything received until the server closes. */
function sendAndHalfClose(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ host: "127.0.0.1", port, allowHalfOpen: true }, () => s.end(bytes));
    s.on("data", (d) => chunks.push(Buffer.from(d)));
    s.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
    s.on("error", reject);
  });
}

describe("a half-closed client", () => {
  test("gets every reply, a sliced KEYS and the commands behind it included, then the connection ends", async () => {
    const { r, conn } = await setup();
    const c = await conn();
    const mset = Array.from({ length: 100_000 }, (_, i) => [`k${String(i).padStart(7, "0")}`, "v"]).flat();
    c.send(Buffer.concat([frame("MSET", ...mset), frame("FLUSHDB"), frame("SET", "zz1", "v")]));
    await c.expect("+OK\r\n+OK\r\n+OK\r\n", 30_000);
    // KEYS over 100,000 tombstones walks in slices: the FIN arrives while it waits.
    const sets = Array.from({ length: 50 }, (_, i) => frame("SET", `h${i}`, String(i)));
    const answer = await sendAndHalfClose(r.respPort, Buffer.concat([frame("KEYS", "*nomatch"), ...sets, frame("GET", "h49")]));
    expect(answer).toBe(`*0\r\n${"+OK\r\n".repeat(50)}$2\r\n49\r\n`);
    c.clear();
    c.send(frame("DBSIZE"));
    await c.expect(":51\r\n");
  }, 60_000);

  test("with nothing pending: the replies, then the end", async () => {
    const { r } = await setup();
    const answer = await sendAndHalfClose(r.respPort, Buffer.concat([frame("SET", "a", "1"), frame("GET", "a"), frame("PING")]));
    expect(answer).toBe("+OK\r\n$1\r\n1\r\n+PONG\r\n");
  });

  test("an incomplete command at the FIN is dropped; what came before is answered", async () => {
    const { r, conn } = await setup();
    const answer = await sendAndHalfClose(r.respPort, Buffer.concat([frame("SET", "b", "1"), Buffer.from("*2\r\n$3\r\nGET\r\n$1")]));
    expect(answer).toBe("+OK\r\n");
    const c = await conn();
    c.send(frame("GET", "b"));
    await c.expect("$1\r\n1\r\n");
  });
});
