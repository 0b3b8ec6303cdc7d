/**
 * Routing on real processes: 4 nodes with --replicas 2, so each key lives on 2 of
 * them. A write taken by a node that does not own its key (HTTP, on the fast path,
 * and RESP) runs on the key's first owner and is held by both owners, checked on
 * the full /dump of every node; reads from any node answer the owners' value; an
 * owner's refusal (a failed If-Match, a value past the owner's own limit) reaches
 * the client exactly as the owner words it, over HTTP and over RESP.
 *
 * The dumps are checked by who stamped each record, not for the absence of copies
 * on non-owners: the anti-entropy rounds members ask for when one joins (its
 * period is 24h here) may copy a record anywhere until rounds compare a partition
 * only between its owners. test/cluster/routing.test.ts checks exact placement on
 * full dumps where anti-entropy cannot run.
 */
import { afterEach, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { partitionOf, rankOwners } from "../../src/cluster/placement.ts";
import { eventually, get, Harness, ok, publicDump, put, respUrl, settledEverywhere, type NodeProcess } from "../support/harness.ts";

let h: Harness;
const clients: Redis[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await h.cleanup();
});

const NAMES = ["a", "b", "c", "d"];
const owners = (key: string) => rankOwners(partitionOf(key), NAMES, 2);

function redis(node: NodeProcess): Redis {
  const c = new Redis(respUrl(node), { maxRetriesPerRequest: 1 });
  clients.push(c);
  return c;
}

describe("routing across 4 processes, --replicas 2", () => {
  test("writes on a non-owner land on exactly the owners; the owners' refusals come back unchanged, over HTTP and RESP", async () => {
    h = new Harness();
    // a takes values up to the default limit; its peers only up to 64 bytes: an owner's refusal a would not make itself.
    const nodes = await h.cluster(4, {
      extraArgs: ["--replicas", "2", "--resp-port", "0", "--anti-entropy-interval", "24h"],
      extraArgsFor: (name) => (name === "a" ? [] : ["--max-value-bytes", "64"]),
    });
    // Requests go to owners by what each node last heard of their partitions: wait until that is current.
    await settledEverywhere(nodes);
    const byName = new Map(nodes.map((n) => [n.name, n]));
    const a = byName.get("a")!;
    const foreign = Array.from({ length: 400 }, (_, i) => `key-${i}`).filter((k) => !owners(k).includes("a"));
    const httpKeys = foreign.slice(0, 30);
    const respKeys = foreign.slice(30, 60);

    // HTTP, a plain PUT (the fast path), and a GET from every node.
    for (const k of httpKeys) await ok(put(a, k, `http ${k}`));
    const ra = redis(a);
    for (const k of respKeys) expect(await ra.set(k, `resp ${k}`)).toBe("OK");
    for (const k of [...httpKeys.slice(0, 5), ...respKeys.slice(0, 5)]) {
      for (const n of nodes) {
        const item = (await (await ok(get(n, k))).json()) as { value: string };
        expect(item.value).toEndWith(k);
      }
    }
    expect(await ra.get(respKeys[0]!)).toBe(`resp ${respKeys[0]}`);

    // Full dumps: every key on its two owners, its version stamped by the first of
    // them (the write ran there, not on a), and nothing on any node stamped by a.
    const written = [...httpKeys, ...respKeys];
    await eventually(
      async () => {
        const dumps = new Map(await Promise.all(nodes.map(async (n) => [n.name, await publicDump(n)] as const)));
        for (const k of written) {
          for (const o of owners(k)) {
            const r = dumps.get(o)!.find((r) => r.key === k);
            if (!r || !r.version.endsWith(`-${owners(k)[0]}`)) return false;
          }
        }
        return [...dumps.values()].every((d) => d.every((r) => !r.version.endsWith("-a")));
      },
      { what: "every key on its owners, written by an owner" },
    );

    // A failed If-Match, checked on the owner: the same status and envelope as asked of the owner itself.
    const key = httpKeys[0]!;
    const owner = byName.get(owners(key)[0]!)!;
    const conditional = { method: "PUT", headers: { "content-type": "application/json", "if-match": '"000000000000001-000000-x"' }, body: JSON.stringify({ value: "no" }) };
    const direct = await fetch(`${owner.url}/items/${key}`, conditional);
    const relayed = await fetch(`${a.url}/items/${key}`, conditional);
    expect(direct.status).toBe(412);
    expect(relayed.status).toBe(412);
    const envelope = await relayed.json();
    expect(envelope).toEqual(await direct.json());
    expect((envelope as { error: { code: string } }).error.code).toBe("PRECONDITION_FAILED");

    // A value past the owners' limit (not a's): refused by the owner, in its words, over RESP and HTTP.
    const big = "x".repeat(100);
    const ro = redis(owner);
    const ownerSays = await ro.set(key, big).catch((e: Error) => e.message);
    const aSays = await ra.set(key, big).catch((e: Error) => e.message);
    expect(ownerSays).toMatch(/^ERR /);
    expect(aSays).toBe(ownerSays);
    const tooBig = await put(a, key, big);
    expect(tooBig.status).toBe(413);
    const body = (await tooBig.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("VALUE_TOO_LARGE");
    expect(`ERR ${body.error.message}`).toBe(ownerSays as string);
    expect(((await (await ok(get(a, key))).json()) as { value: string }).value).toBe(`http ${key}`);
  }, 60_000);
});
