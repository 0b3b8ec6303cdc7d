/**
 * A graceful stop (SIGTERM) on real processes: the node stops taking new work,
 * answers every request already in flight (bounded by --drain-timeout), and only
 * then leaves the cluster and exits 0.
 *
 * - The reported defect: requests waiting on `w=all`/`r=all` for a frozen peer when
 *   SIGTERM arrives were reset without a status, though the writes were applied.
 *   Here they must be answered (504 REPLICATION_TIMEOUT, or 200), none reset.
 * - New work after the stop began: a new connection is refused; a request that
 *   completes on a connection already open gets 503 UNAVAILABLE with
 *   `Connection: close`, whether the front end answers it (an item route) or
 *   Bun.serve does (a piped connection); an idle keep-alive connection is closed.
 * - RESP: a command in flight gets its reply; a command sent after the stop began
 *   is not run, and the connection closes after the replies owed (see resp/server.ts).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DB_FILE } from "../../src/storage/persistence.ts";
import { clusterView, eventually, Harness, ok, put, respUrl, type NodeProcess } from "../support/harness.ts";
import { RawConnection as HttpConnection, rawRequest } from "../support/raw-connection.ts";
import { frame, RawConnection as RespConnection } from "../resp/support.ts";

let h: Harness;
const opened: { close(): void }[] = [];
afterEach(async () => {
  for (const c of opened.splice(0)) c.close();
  await h.cleanup();
});

const track = <T extends { close(): void }>(c: T): T => (opened.push(c), c);

/** What a client got: a status and body, or the error fetch threw (a reset, a refusal). */
type Outcome = { status: number; body: string } | { error: string };

const outcome = (res: Promise<Response>): Promise<Outcome> =>
  res.then(
    async (r) => ({ status: r.status, body: await r.text() }),
    (e: unknown) => ({ error: String(e) }),
  );

/** Whether a new TCP connection to `port` is refused (the node stopped listening). */
async function refused(port: number): Promise<boolean> {
  try {
    const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
    s.end();
    return false;
  } catch {
    return true;
  }
}

const stateOf = async (node: NodeProcess, name: string): Promise<string | undefined> => (await clusterView(node)).members.find((m) => m.name === name)?.state;

describe("graceful stop", () => {
  test("requests in flight at SIGTERM get their answers (none reset); requests after it get 503 or a refused connection; then exit 0", async () => {
    h = new Harness();
    const [a, , c] = await h.cluster(3, { extraArgsFor: (n) => (n === "a" ? ["--drain-timeout", "8s"] : []) });
    // Opened before the stop: one idle keep-alive connection, one left with a request
    // head half sent on the front end's side (an item route), and one already piped to
    // Bun.serve (it served a /cluster) with a head half sent there.
    const idle = track(await HttpConnection.open(a!.url));
    expect(await idle.exchange(rawRequest("GET", "/items/none"))).toStartWith("HTTP/1.1 404");
    const wirePartial = track(await HttpConnection.open(a!.url));
    wirePartial.write("GET /items/k0 HTTP/1.1\r\n");
    const pipedPartial = track(await HttpConnection.open(a!.url));
    expect(await pipedPartial.exchange(rawRequest("GET", "/cluster"))).toStartWith("HTTP/1.1 200");
    pipedPartial.write("GET /cluster HTTP/1.1\r\n");

    c!.signal("SIGSTOP");
    const keys = ["k0", "k1", "k2", "k3", "k4"];
    let settled = 0;
    const counted = (o: Promise<Outcome>) => o.finally(() => settled++);
    const writes = keys.map((k) => counted(outcome(put(a!, k, "v", "?w=all&timeout=5000"))));
    const read = counted(outcome(fetch(`${a!.url}/items/k0?r=all&timeout=5000`, { signal: AbortSignal.timeout(10_000) })));
    // In flight: each write is applied on a, and waits for c.
    await eventually(async () => (await Promise.all(keys.map((k) => fetch(`${a!.url}/items/${k}`)))).every((r) => r.status === 200), { what: "the writes applied on a" });
    // Once c is dead to a, a's hand-off no longer waits on c's queue (handoff.ts): the
    // node's leave is quick, and only the requests can hold it (as in the reported run).
    await eventually(async () => (await stateOf(a!, "c")) === "dead", { what: "a sees c dead" });

    expect(settled).toBe(0);
    const exited = a!.stop("SIGTERM");
    // Stopped listening: new connections are refused.
    await eventually(() => refused(a!.port), { timeoutMs: 3000, what: "a refuses new connections" });
    // The idle keep-alive connection was closed.
    expect(await idle.closedWithin(3000)).toBe(true);
    // Requests completing now, on connections opened before, are refused with 503 and closed.
    wirePartial.write("Host: localhost\r\n\r\n");
    const w = await wirePartial.answer();
    expect(w).toStartWith("HTTP/1.1 503");
    expect(w).toContain("Connection: close");
    expect(JSON.parse(w.slice(w.indexOf("\r\n\r\n") + 4)).error.code).toBe("UNAVAILABLE");
    expect(await wirePartial.closedWithin(3000)).toBe(true);
    pipedPartial.write("Host: localhost\r\n\r\n");
    const p = await pipedPartial.answer();
    expect(p).toStartWith("HTTP/1.1 503");
    expect(p.toLowerCase()).toContain("connection: close");
    expect(JSON.parse(p.slice(p.indexOf("\r\n\r\n") + 4)).error.code).toBe("UNAVAILABLE");
    expect(await pipedPartial.closedWithin(3000)).toBe(true);

    // Every request in flight is answered, none reset; the writes say how far they got.
    for (const o of await Promise.all(writes)) {
      expect(o).toHaveProperty("status");
      const { status, body } = o as { status: number; body: string };
      expect([200, 504]).toContain(status);
      if (status === 504) expect(JSON.parse(body).error.code).toBe("REPLICATION_TIMEOUT");
    }
    const r = await read;
    expect(r).toHaveProperty("status");
    expect([200, 503, 504]).toContain((r as { status: number }).status);
    expect(await exited).toBe(0);
  }, 60_000);

  test("a forwarded HTTP write and a RESP command in flight get their answers; a RESP command sent after the stop is not run", async () => {
    h = new Harness();
    // Two nodes, one replica: a forwards keys b owns to b. Default timings: b, frozen,
    // stays alive to a for seconds, so a's forwards wait for it rather than give up.
    const [a, b] = await h.cluster(2, {
      timings: "default",
      extraArgs: ["--replicas", "1", "--request-timeout", "30s"],
      extraArgsFor: (n) => (n === "a" ? ["--resp-port", "0", "--drain-timeout", "20s"] : []),
    });
    const ownedByB: string[] = [];
    for (let i = 0; ownedByB.length < 2; i++) {
      const { owners } = (await (await ok(fetch(`${a!.url}/cluster/placement?key=key${i}`))).json()) as { owners: string[] };
      if (owners[0] === "b") ownedByB.push(`key${i}`);
    }
    const [httpKey, respKey] = ownedByB as [string, string];
    const port = Number(new URL(respUrl(a!)).port);
    const respIdle = track(await RespConnection.open(port));
    respIdle.send(frame("PING"));
    await respIdle.expect("+PONG\r\n");

    b!.signal("SIGSTOP");
    // An item PUT with no query: the wire front end's own path, forwarded to b.
    const wire = track(await HttpConnection.open(a!.url));
    wire.write(rawRequest("PUT", `/items/${httpKey}`, { "Content-Type": "application/json" }, JSON.stringify({ value: "over http" })));
    const resp = track(await RespConnection.open(port));
    resp.send(frame("SET", respKey, "over resp"));
    // A round trip on another connection: by its answer, a has read what came before.
    await ok(fetch(`${a!.url}/healthz`));

    const exited = a!.stop("SIGTERM");
    await eventually(() => refused(a!.port), { timeoutMs: 3000, what: "a refuses new HTTP connections" });
    await eventually(() => refused(port), { timeoutMs: 3000, what: "a refuses new RESP connections" });
    await respIdle.waitClosed(3000);
    expect(respIdle.received.toString()).toBe("+PONG\r\n");
    // Sent after the stop began, behind the SET still in flight: never run, never answered.
    resp.send(frame("SET", "after-stop", "x"));

    // The node is stopping, and still owes both answers: it waits for them.
    expect(wire.closed).toBe(false);
    expect(resp.closed).toBe(false);
    expect(resp.received.length).toBe(0);
    b!.signal("SIGCONT");
    const answer = await wire.answer(20_000);
    expect(answer).toStartWith("HTTP/1.1 200");
    expect(answer).toContain("Connection: close");
    expect(await wire.closedWithin(5000)).toBe(true);
    await resp.waitClosed(20_000);
    expect(resp.received.toString()).toBe("+OK\r\n");
    expect(await exited).toBe(0);
    // The in-flight writes were applied on their owner; the one sent after the stop nowhere.
    const valueOn = async (key: string) => ((await (await ok(fetch(`${b!.url}/items/${key}`))).json()) as { value: string }).value;
    expect(await valueOn(httpKey)).toBe("over http");
    expect(await valueOn(respKey)).toBe("over resp");
    expect((await fetch(`${b!.url}/items/after-stop`)).status).toBe(404);
  }, 90_000);

  test("a SIGTERM while the node still joins its seeds stops it with exit 0 (it was killed by the signal)", async () => {
    h = new Harness();
    const a = await h.start("a", { timings: "default" });
    a.signal("SIGSTOP"); // the join waits --request-timeout (5 s) on it
    const dir = mkdtempSync(join(tmpdir(), "makhzen-stop-start-"));
    try {
      const d = await h.start("d", { peers: [a.url], timings: "default", waitReady: false, extraArgs: ["--data-dir", join(dir, "d")] });
      // The data dir opens just before the join starts.
      await eventually(() => existsSync(join(dir, "d", DB_FILE)), { what: "d opened its data dir" });
      d.signal("SIGTERM");
      expect(await d.exited).toBe(0);
      expect(d.log()).toContain("stopping before the start finished");
    } finally {
      a.signal("SIGCONT");
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});
