/**
 * The HTTP front end's graceful stop (Front.drain, src/http/front/stopping.ts),
 * connection by connection, with answers the test releases when it wants: the
 * wire front end's own requests (a plain item route), and Bun.serve's behind a
 * pipe (a query string makes a request Bun's).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { ClientSlots } from "../../src/ops/connections.ts";
import { startFront, type Front } from "../../src/http/front/front.ts";
import type { FrontAnswer } from "../../src/http/front/answer.ts";
import type { ServeConfig } from "../../src/http/serve.ts";
import { silentLogger } from "../../src/ops/log.ts";
import { RawConnection, rawRequest } from "../support/raw-connection.ts";

const CONFIG: ServeConfig = { host: "127.0.0.1", port: 0, idleTimeoutMs: 10_000, maxKeyBytes: 1024, maxValueBytes: 1 << 20, batchMaxBytes: 1 << 20, bodyTimeoutMs: 5000 };

const okWire = (body: string): string => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
const status = (answer: string): number => Number(answer.slice(9, 12));
const body = (answer: string): string => answer.slice(answer.indexOf("\r\n\r\n") + 4);

let front: Front | undefined;
const conns: RawConnection[] = [];
afterEach(async () => {
  for (const c of conns.splice(0)) c.close();
  await front?.stop();
  front = undefined;
});

/**
 * A front end whose item key `slow` (on the wire) and path `/slow` (Bun's) answer
 * only once `release()` is called; everything else at once.
 */
function slowFront() {
  let wireGate = Promise.withResolvers<void>();
  let innerGate = Promise.withResolvers<void>();
  const answers: FrontAnswer = {
    takes: () => true,
    answer: (head) => (head.rawKey === "slow" ? wireGate.promise.then(() => okWire("slow")) : okWire(head.rawKey)),
    refused: () => {},
  };
  const fetch = (request: Request): Response | Promise<Response> =>
    new URL(request.url).pathname === "/slow" ? innerGate.promise.then(() => new Response("slow")) : new Response("fast");
  front = startFront(CONFIG, {}, fetch, answers, new ClientSlots(10_000), silentLogger);
  const url = front.url;
  return {
    front,
    open: async () => {
      const c = await RawConnection.open(url);
      conns.push(c);
      return c;
    },
    release: () => {
      wireGate.resolve();
      innerGate.resolve();
      wireGate = Promise.withResolvers<void>();
      innerGate = Promise.withResolvers<void>();
    },
  };
}

async function refused(url: string): Promise<boolean> {
  return RawConnection.open(url).then(
    (c) => (c.close(), false),
    () => true,
  );
}

describe("Front.drain", () => {
  test("wire: the request in flight is answered with Connection: close; idle connections close; new ones are refused", async () => {
    const f = slowFront();
    const idle = await f.open();
    expect(body(await idle.exchange(rawRequest("GET", "/items/x")))).toBe("x");
    const busy = await f.open();
    busy.write(rawRequest("GET", "/items/slow"));
    // A round trip on another connection: by its answer, the front end has read what came before.
    await f.open().then((c) => c.exchange(rawRequest("GET", "/items/x")));
    const drained = f.front.drain(5000);
    expect(await idle.closedWithin(2000)).toBe(true);
    expect(await refused(f.front.url)).toBe(true);
    expect(busy.closed).toBe(false);
    f.release();
    const answer = await busy.answer();
    expect(answer).toBe("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 4\r\n\r\nslow");
    expect(await busy.closedWithin(2000)).toBe(true);
    expect(await drained).toBe(0);
  });

  test("wire: a request pipelined behind the one in flight, or completed after the stop, gets 503 UNAVAILABLE and the connection closes", async () => {
    const f = slowFront();
    const pipelined = await f.open();
    pipelined.write(Buffer.concat([rawRequest("GET", "/items/slow"), rawRequest("PUT", "/items/k", { "Content-Type": "application/json" }, '{"value":"v"}')]));
    const half = await f.open();
    half.write("GET /items/k HTTP/1.1\r\n");
    const bodyOnItsWay = await f.open();
    const put = rawRequest("PUT", "/items/k", { "Content-Type": "application/json" }, '{"value":"v"}');
    bodyOnItsWay.write(put.subarray(0, put.length - 4));
    // Every connection's bytes are read before the stop.
    await f.open().then((c) => c.exchange(rawRequest("GET", "/items/x")));

    const drained = f.front.drain(5000);
    half.write("Host: localhost\r\n\r\n");
    const refusedHalf = await half.answer();
    expect(status(refusedHalf)).toBe(503);
    expect(refusedHalf).toContain("Connection: close\r\n");
    expect(JSON.parse(body(refusedHalf)).error.code).toBe("UNAVAILABLE");
    expect(await half.closedWithin(2000)).toBe(true);
    // A body still on its way is waited for, then the request is refused, not run.
    bodyOnItsWay.write(put.subarray(put.length - 4));
    expect(status(await bodyOnItsWay.answer())).toBe(503);

    f.release();
    expect(body(await pipelined.answer())).toBe("slow");
    const second = await pipelined.answer();
    expect(status(second)).toBe(503);
    expect(JSON.parse(body(second)).error.code).toBe("UNAVAILABLE");
    expect(await pipelined.closedWithin(2000)).toBe(true);
    expect(await drained).toBe(0);
  });

  test("piped: the request in flight in Bun.serve is answered, then the connection closes; an idle piped connection closes at once", async () => {
    const f = slowFront();
    const idle = await f.open();
    expect(body(await idle.exchange(rawRequest("GET", "/fast?q")))).toBe("fast");
    const busy = await f.open();
    expect(body(await busy.exchange(rawRequest("GET", "/fast?q")))).toBe("fast");
    busy.write(rawRequest("GET", "/slow?q"));
    await f.open().then((c) => c.exchange(rawRequest("GET", "/fast?q")));

    const drained = f.front.drain(5000);
    expect(await idle.closedWithin(2000)).toBe(true);
    expect(busy.closed).toBe(false);
    f.release();
    expect(body(await busy.answer())).toBe("slow");
    expect(await busy.closedWithin(2000)).toBe(true);
    expect(await drained).toBe(0);
  });

  test("piped: a request completed in Bun.serve after the stop began gets 503 UNAVAILABLE with Connection: close", async () => {
    const f = slowFront();
    const half = await f.open();
    expect(body(await half.exchange(rawRequest("GET", "/fast?q")))).toBe("fast");
    half.write("GET /fast?q HTTP/1.1\r\n");
    await f.open().then((c) => c.exchange(rawRequest("GET", "/fast?q")));

    const drained = f.front.drain(5000);
    half.write("Host: localhost\r\n\r\n");
    const answer = await half.answer();
    expect(status(answer)).toBe(503);
    expect(answer.toLowerCase()).toContain("connection: close\r\n");
    expect(JSON.parse(body(answer)).error).toEqual({ code: "UNAVAILABLE", message: expect.stringContaining("stopping") });
    expect(await half.closedWithin(2000)).toBe(true);
    expect(await drained).toBe(0);
  });

  test("piped: a peer's request (/internal/) completed after the stop began is still run: the node is a member until it leaves", async () => {
    const f = slowFront();
    const half = await f.open();
    expect(body(await half.exchange(rawRequest("GET", "/fast?q")))).toBe("fast");
    half.write("POST /internal/forward HTTP/1.1\r\n");
    await f.open().then((c) => c.exchange(rawRequest("GET", "/fast?q")));

    const drained = f.front.drain(5000);
    half.write("Host: localhost\r\nContent-Length: 0\r\n\r\n");
    const answer = await half.answer();
    expect([status(answer), body(answer)]).toEqual([200, "fast"]);
    // Its connection still closes once answered: the stop goes on.
    expect(await half.closedWithin(2000)).toBe(true);
    expect(await drained).toBe(0);
  });

  test("a connection accepted just before the stop gets STOPPING for its first request, not a close without an answer", async () => {
    const f = slowFront();
    const fresh = await f.open();
    const drained = f.front.drain(5000);
    fresh.write(rawRequest("GET", "/items/a"));
    const answer = await fresh.answer();
    expect(status(answer)).toBe(503);
    expect(JSON.parse(body(answer)).error.code).toBe("UNAVAILABLE");
    expect(await fresh.closedWithin(2000)).toBe(true);
    expect(await drained).toBe(0);
  });

  test("a connection that sends nothing is closed a moment into the drain", async () => {
    const f = slowFront();
    const silent = await f.open();
    const t0 = performance.now();
    expect(await f.front.drain(5000)).toBe(0);
    expect(silent.closed || (await silent.closedWithin(1000))).toBe(true);
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  test("the grace is a bound: a request still in flight then is counted, and stop() closes its connection", async () => {
    const f = slowFront();
    const wire = await f.open();
    wire.write(rawRequest("GET", "/items/slow"));
    const piped = await f.open();
    piped.write(rawRequest("GET", "/slow?q"));
    await f.open().then((c) => c.exchange(rawRequest("GET", "/fast?q")));
    const t0 = performance.now();
    expect(await f.front.drain(300)).toBe(2);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
    expect(wire.closed || piped.closed).toBe(false);
    await f.front.stop();
    expect(await wire.closedWithin(2000)).toBe(true);
    expect(await piped.closedWithin(2000)).toBe(true);
  });
});
