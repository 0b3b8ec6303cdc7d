import { describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { FAST_TIMINGS, type NodeOptions } from "../../src/config.ts";
import { hashSlot, partitionOf, PARTITIONS, rankOwners } from "../../src/cluster/placement.ts";
import { call, expectClientError } from "../support/http.ts";
import { closeAfterEach } from "../support/cleanup.ts";
import { eventually } from "../support/proc.ts";

/**
 * GET /cluster's placement fields, GET /cluster/placement and DELETE
 * /cluster/members/:name, through the node's own HTTP handler.
 */
const track = closeAfterEach();
const start = (options: NodeOptions = {}): MakhzenNode => track(createNode({ name: "a", port: 0, ...FAST_TIMINGS, ...options }));
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe("GET /cluster/placement", () => {
  test("answers the partition and owners placement.ts computes, for every kind of key, buckets and hash tags included", async () => {
    const node = start({ replicas: 2 });
    for (const key of ["k", "user:1000", "{user1000}.following", "é/ü", "a%2Fb", "x".repeat(1024)]) {
      const a = await call(node, "GET", `/cluster/placement?key=${encodeURIComponent(key)}`);
      expect(a.status).toBe(200);
      expect(a.json).toEqual({ partition: partitionOf(key), owners: ["a"] });
      expect((await call(node, "GET", `/cluster/placement?key=${encodeURIComponent(key)}&bucket=b-1`)).json).toEqual(a.json);
    }
    // {hash tags}: two keys with one tag share a partition.
    const tagged = await Promise.all(["{u7}.a", "{u7}.b"].map((k) => call(node, "GET", `/cluster/placement?key=${encodeURIComponent(k)}`)));
    expect(tagged[0]!.json.partition).toBe(tagged[1]!.json.partition);
    expect(tagged[0]!.json.partition).toBe(Math.floor(hashSlot("u7") / 64));
  });

  test("a missing, empty, repeated or too long key, a bad bucket and an unknown parameter are 400 with the envelope", async () => {
    const node = start({ maxKeyBytes: 8 });
    const cases: [string, string][] = [
      ["/cluster/placement", "BAD_REQUEST"],
      ["/cluster/placement?key=", "BAD_REQUEST"],
      ["/cluster/placement?bucket=b", "BAD_REQUEST"],
      ["/cluster/placement?key=a&key=b", "BAD_REQUEST"],
      [`/cluster/placement?key=${"x".repeat(9)}`, "BAD_REQUEST"],
      [`/cluster/placement?key=${encodeURIComponent("éééé1")}`, "BAD_REQUEST"], // 9 bytes
      ["/cluster/placement?key=%FF", "BAD_REQUEST"], // not UTF-8: arrives as U+FFFD
      ["/cluster/placement?key=k&bucket=bad!", "INVALID_BUCKET"],
      ["/cluster/placement?key=k&bucket=", "INVALID_BUCKET"],
      ["/cluster/placement?key=k&w=2", "BAD_REQUEST"],
      // Refused everywhere, so no placement either.
      ["/cluster/placement?key=.", "INVALID_KEY"],
      ["/cluster/placement?key=..", "INVALID_KEY"],
    ];
    for (const [path, code] of cases) {
      const a = await call(node, "GET", path);
      expectClientError(a, 400, code);
    }
    expect((await call(node, "GET", `/cluster/placement?key=${"x".repeat(8)}`)).status).toBe(200);
  });
});

describe("GET /cluster: replicas, partitions, owned per member", () => {
  test("a lone node owns all 256 partitions and says its --replicas", async () => {
    const s = (await call(start({ replicas: 2 }), "GET", "/cluster")).json;
    expect([s.replicas, s.partitions]).toEqual([2, PARTITIONS]);
    expect(s.members).toEqual([expect.objectContaining({ name: "a", partitions: PARTITIONS })]);
  });
});

describe("DELETE /cluster/members/:name", () => {
  test("refused for an unknown member (404) and for this node itself (409), with the envelope", async () => {
    const node = start();
    expectClientError(await call(node, "DELETE", "/cluster/members/nobody"), 404, "NOT_FOUND");
    expectClientError(await call(node, "DELETE", "/cluster/members/%ZZ"), 404, "NOT_FOUND");
    expectClientError(await call(node, "DELETE", "/cluster/members/a"), 409, "MEMBER_ALIVE");
  });

  test("behind the write token: none is 401, the read token 403, the write token goes through", async () => {
    const node = start({ token: "write-token-1", readToken: "read-token-1" });
    expectClientError(await call(node, "DELETE", "/cluster/members/nobody"), 401, "UNAUTHORIZED");
    expectClientError(await call(node, "DELETE", "/cluster/members/nobody", { headers: bearer("read-token-1") }), 403, "FORBIDDEN");
    expectClientError(await call(node, "DELETE", "/cluster/members/nobody", { headers: bearer("write-token-1") }), 404, "NOT_FOUND");
    // Placement is a read: the read token may ask.
    expect((await call(node, "GET", "/cluster/placement?key=k", { headers: bearer("read-token-1") })).status).toBe(200);
  });

  test("over real sockets: a live member is refused (409); once it is dead, it is forgotten and its partitions move", async () => {
    const a = start({ name: "a", replicas: 1 });
    const { url } = await a.listen();
    const b = start({ name: "b", replicas: 1, peers: [url] });
    await b.listen();
    await eventually(() => a.members().some((m) => m.name === "b" && m.state === "alive"), { what: "a sees b alive" });
    expectClientError(await call(a, "DELETE", "/cluster/members/b"), 409, "MEMBER_ALIVE");
    // Placement counts b now: every key's owner is placement.ts's, from both nodes.
    for (let i = 0; i < 50; i++) {
      const key = `key-${i}`;
      const expected = { partition: partitionOf(key), owners: rankOwners(partitionOf(key), ["a", "b"], 1) };
      for (const n of [a, b]) expect((await call(n, "GET", `/cluster/placement?key=${key}`)).json).toEqual(expected);
    }
    const before = (await call(a, "GET", "/cluster")).json;
    const owned = before.members.find((m: { name: string }) => m.name === "b").partitions;
    expect(owned).toBeGreaterThan(0);
    expect(before.members.find((m: { name: string }) => m.name === "a").partitions).toBe(PARTITIONS - owned);
    await b.close(); // no goodbye: as a crash looks to a
    await eventually(() => a.members().find((m) => m.name === "b")?.state === "dead", { timeoutMs: 5000, what: "a sees b dead" });
    const forgot = await call(a, "DELETE", "/cluster/members/b");
    expect(forgot.status).toBe(200);
    expect(forgot.json.member).toEqual({ name: "b", url: expect.any(String), state: "left", was: "dead" });
    expect(forgot.json.partitions.length).toBe(owned);
    for (const p of forgot.json.partitions) expect(p).toEqual({ partition: p.partition, owners: ["a"], before: ["b"] });
    expect(forgot.json.partitions.map((p: { partition: number }) => p.partition)).toEqual(
      Array.from({ length: PARTITIONS }, (_, p) => p).filter((p) => rankOwners(p, ["a", "b"], 1)[0] === "b"),
    );
    const after = (await call(a, "GET", "/cluster")).json;
    expect(after.members.map((m: { name: string; state: string; partitions: number }) => [m.name, m.state, m.partitions])).toEqual([
      ["a", "alive", PARTITIONS],
      ["b", "left", 0],
    ]);
  }, 15_000);
});
