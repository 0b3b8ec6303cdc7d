/**
 * The embedded items API in a cluster (src/embedded.ts): `node.items(bucket)` goes
 * where an HTTP request would (to the key's owners, with `w`/`r` among them, and a
 * listing of the whole cluster), and behaves like `bucket()` wherever every node
 * holds every key. `bucket()` stays this node's own copy: in a partitioned cluster
 * it refuses (NOT_LOCAL) what that copy cannot answer. Nodes run in process, over
 * loopback HTTP, on port 0.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ManualWallClock } from "../src/core/clock.ts";
import { FAST_TIMINGS } from "../src/config.ts";
import { parseVersion } from "../src/core/version.ts";
import { partitionOf, rankOwners } from "../src/cluster/placement.ts";
import { createNode, MakhzenError, type ItemsHandle, type MakhzenNode, type NodeOptions } from "../src/index.ts";
import { closeAfterEach } from "./support/cleanup.ts";
import { eventually } from "./support/proc.ts";
import { settledAndSure } from "./support/settled.ts";

const track = closeAfterEach();
const T0 = 1_700_000_000_000;

/**
 * Nodes named `names`, each joining through the first, all seeing every other alive
 * and settled (every partition it owns filled). `keep` closes them (default: after the test).
 */
async function cluster(names: string[], options: NodeOptions = {}, keep: (n: MakhzenNode) => MakhzenNode = track): Promise<Map<string, MakhzenNode>> {
  const nodes = new Map<string, MakhzenNode>();
  let seed: string | undefined;
  for (const name of names) {
    const node = keep(createNode({ name, port: 0, peers: seed ? [seed] : [], ...FAST_TIMINGS, ...options }));
    const { url } = await node.listen();
    seed ??= url;
    nodes.set(name, node);
  }
  const all = [...nodes.values()];
  await eventually(() => all.every((n) => n.members().filter((m) => m.state === "alive").length === names.length), { what: `every node sees ${names.length} alive members` });
  // Settled, and each node has heard the others say so: requests are routed by what a node last heard.
  await eventually(() => all.every((n) => settledAndSure(n.status())), { what: "every node settled, and sure of the others", timeoutMs: 20_000 });
  return nodes;
}

/** The code of a rejected promise or a throw, and its message. */
async function failure(run: () => unknown): Promise<{ code: string; message: string }> {
  try {
    await run();
  } catch (e) {
    expect(e).toBeInstanceOf(MakhzenError);
    return { code: (e as MakhzenError).code, message: (e as Error).message };
  }
  throw new Error("expected a failure");
}

const NOT_UTF8 = new Uint8Array([0xff, 0x00, 0xfe]);

/**
 * The same operations through `items()` and `bucket()` of one node, in two buckets,
 * must give the same answers (versions aside).
 */
async function behavesLikeBucket(node: MakhzenNode): Promise<void> {
  const routed = node.items("routed");
  const local = node.bucket("local");
  expect(routed.name).toBe("routed");
  expect(node.items().name).toBe("default");

  expect(await routed.get("alice")).toBeUndefined();
  const item = await routed.set("alice", "admin");
  expect(item).toMatchObject({ key: "alice", value: "admin" });
  expect(parseVersion(item.version)?.node).toBe(node.name);
  expect(await routed.get("alice")).toEqual(item);
  // What items() wrote is this node's copy too (every node holds every key here).
  expect(node.bucket("routed").get("alice")).toEqual(item);

  // Binary and text values: the stored form is the same as bucket()'s.
  const bin = await routed.set("bin", NOT_UTF8);
  expect(bin).toMatchObject({ value: local.set("bin", NOT_UTF8).value, encoding: "base64" });
  expect((await routed.set("utf8", new TextEncoder().encode("héllo"))).value).toBe("héllo");

  // TTL: an absolute expiry on this node's clock.
  const before = Date.now();
  const ttl = await routed.set("s", "{}", { ttl: 60 });
  expect(ttl.expiresAt).toBeGreaterThanOrEqual(before + 60_000);
  expect(ttl.expiresAt).toBeLessThanOrEqual(Date.now() + 60_000);

  // Conditions.
  const first = await routed.set("k", "1", { ifAbsent: true });
  expect((await failure(() => routed.set("k", "2", { ifAbsent: true }))).code).toBe("PRECONDITION_FAILED");
  expect((await failure(() => routed.set("k", "2", { ifMatch: "nope" }))).code).toBe("PRECONDITION_FAILED");
  const second = await routed.set("k", "2", { ifMatch: first.version });
  expect(second.value).toBe("2");
  expect((await failure(() => routed.delete("k", { ifMatch: first.version }))).code).toBe("PRECONDITION_FAILED");
  expect(await routed.delete("k", { ifMatch: second.version })).toBe(true);
  expect(await routed.delete("k")).toBe(false);
  expect(await routed.delete("never")).toBe(false);
  expect(await routed.get("k")).toBeUndefined();

  // Paging: the same pages as bucket()'s over the same keys.
  for (const key of ["p/1", "p/2", "p/3", "p/4", "p/5"]) {
    await routed.set(key, key);
    local.set(key, key);
  }
  const keysOf = (page: { items: { key: string }[] }) => page.items.map((i) => i.key);
  let after: string | undefined;
  const pages: string[][] = [];
  for (;;) {
    const page = await routed.list({ prefix: "p/", limit: 2, ...(after ? { after } : {}) });
    const same = local.list({ prefix: "p/", limit: 2, ...(after ? { after } : {}) });
    expect(keysOf(page)).toEqual(keysOf(same));
    expect(page.next).toBe(same.next);
    pages.push(keysOf(page));
    if (page.next === null) break;
    after = page.next;
  }
  expect(pages).toEqual([["p/1", "p/2"], ["p/3", "p/4"], ["p/5"]]);
  expect(keysOf(await routed.list())).toEqual(["alice", "bin", "p/1", "p/2", "p/3", "p/4", "p/5", "s", "utf8"]);

  // Domain errors are rejections with the codes bucket() throws.
  expect((await failure(() => routed.set("", "v"))).code).toBe("INVALID_KEY");
  expect((await failure(() => routed.set("k", "v", { ttl: 0 }))).code).toBe("VALIDATION");
  expect((await failure(() => node.items("bad name").get("k"))).code).toBe("INVALID_BUCKET");
  expect((await failure(() => routed.list({ limit: 0 }))).code).toBe("VALIDATION");
}

describe("node.items() where every node holds every key", () => {
  test("a lone node: items() answers as bucket() does", async () => {
    await behavesLikeBucket(track(createNode({ name: "lone", port: 0 })));
  });

  test("a lone node: w and r up to the one replica there is; more is UNAVAILABLE, the write standing", async () => {
    const node = track(createNode({ name: "lone", port: 0 }));
    const it = node.items();
    for (const w of [1, "quorum", "all"] as const) expect((await it.set("k", `w=${w}`, { w })).value).toBe(`w=${w}`);
    expect((await it.get("k", { r: "all" }))?.value).toBe("w=all");
    const more = await failure(() => it.set("k", "two", { w: 2 }));
    expect(more.code).toBe("UNAVAILABLE");
    expect(more.message).toContain("w=2 needs 2 replicas");
    expect(node.bucket().get("k")?.value).toBe("two");
    expect((await failure(() => it.get("k", { r: 2 }))).code).toBe("UNAVAILABLE");
    expect(await it.delete("k", { w: "all" })).toBe(true);
  });

  test("a lone node: a TTL expires on the injected clock", async () => {
    const wall = new ManualWallClock(T0);
    const node = track(createNode({ port: 0, wallClock: wall.read }));
    const it = node.items("sessions");
    expect((await it.set("s", "{}", { ttl: 60 })).expiresAt).toBe(T0 + 60_000);
    wall.advance(59_999);
    expect((await it.get("s"))?.value).toBe("{}");
    wall.advance(1);
    expect(await it.get("s")).toBeUndefined();
    expect((await it.list()).items).toEqual([]);
    expect(await it.delete("s")).toBe(false);
  });

  test("plain JavaScript: mistyped options and levels are rejected (VALIDATION), keys must be strings", async () => {
    const node = track(createNode({ name: "js", port: 0 }));
    const it = node.items() as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const refused = async (run: () => Promise<unknown>) => {
      const f = await failure(run);
      return [f.code, f.message];
    };
    expect(await refused(() => it.set!("k", "v", { TTL: 60 }))).toEqual(["VALIDATION", 'set has no option "TTL"; did you mean "ttl"?']);
    expect(await refused(() => it.set!("k", "v", { W: 2 }))).toEqual(["VALIDATION", 'set has no option "W"; did you mean "w"?']);
    expect(await refused(() => it.set!("k", "v", { w: true }))).toEqual(["VALIDATION", "set option w must be a string or number, not boolean"]);
    expect(await refused(() => it.set!("k", "v", { w: "most" }))).toEqual(["VALIDATION", 'w must be 1, quorum, all or a replica count, not "most"']);
    // A number shown as one (it was quoted, as HTTP's query text is).
    expect(await refused(() => it.set!("k", "v", { w: 1.5 }))).toEqual(["VALIDATION", "w must be 1, quorum, all or a replica count, not 1.5"]);
    expect(await refused(() => it.get!("k", { r: 0 }))).toEqual(["VALIDATION", "r must be 1, quorum, all or a replica count, not 0"]);
    expect((await refused(() => it.set!("k", "v", { w: "all", timeoutMs: 0 })))[0]).toBe("VALIDATION");
    expect((await refused(() => it.get!("k", { r: "all", timeoutMs: 60_001 })))[0]).toBe("VALIDATION");
    // Named as the option is, with the value as given (HTTP's query says `timeout`, and quotes its text).
    expect(await refused(() => it.set!("k", "v", { timeoutMs: -1 }))).toEqual(["VALIDATION", "timeoutMs must be an integer of ms from 1 to 60000, not -1"]);
    expect(await refused(() => it.delete!("k", { w: "all", timeoutMs: 1.5 }))).toEqual(["VALIDATION", "timeoutMs must be an integer of ms from 1 to 60000, not 1.5"]);
    expect(await refused(() => it.get!("k", { w: "all" }))).toEqual(["VALIDATION", 'get has no option "w"; did you mean "r"?']);
    expect(await refused(() => it.get!("k", { consistency: "all" }))).toEqual(["VALIDATION", 'get has no option "consistency"; it takes r, timeoutMs']);
    expect(await refused(() => it.delete!("k", { ifMatch: 5 }))).toEqual(["VALIDATION", "delete option ifMatch must be a string, not number"]);
    expect(await refused(() => it.list!({ cursor: "x" }))).toEqual(["VALIDATION", 'list has no option "cursor"; it takes prefix, limit, after']);
    expect(await refused(() => it.get!(5))).toEqual(["INVALID_KEY", "key must be a string, not number"]);
    expect(node.bucket().get("k")).toBeUndefined(); // nothing refused was written
    // A refusal is a rejected promise, never a throw from the call itself.
    const pending = it.get!(5);
    expect(pending).toBeInstanceOf(Promise);
    expect(await pending.then(() => "resolved", (e: MakhzenError) => e.code)).toBe("INVALID_KEY");
    expect(((await it.set!("k", "v", { w: "1", timeoutMs: 100, ttl: 5 })) as { value: string }).value).toBe("v");
  });

  test("a cluster of 3 with the default replicas: items() answers as bucket() does, bucket() keeps working, w=all reaches every node", async () => {
    const nodes = await cluster(["a", "b", "c"]);
    const a = nodes.get("a")!;
    expect(a.status().replicas).toBe(3);
    await behavesLikeBucket(a);
    // Full mode: bucket() serves every key and lists, as before partitions.
    expect(a.bucket().set("any", "v").value).toBe("v");
    expect(a.bucket().list().items.map((i) => i.key)).toContain("any");
    const written = await a.items().set("everywhere", "x", { w: "all" });
    for (const n of nodes.values()) expect(n.bucket().get("everywhere")).toEqual(written);
  });
});

describe("node.items() in a partitioned cluster (4 nodes, replicas 2)", () => {
  const NAMES = ["a", "b", "c", "d"];
  // One cluster for the tests below (they use keys and buckets of their own): a
  // partitioned cluster takes seconds to settle, and the machine is shared.
  let nodes: Map<string, MakhzenNode>;
  const opened: MakhzenNode[] = [];
  beforeAll(async () => {
    nodes = await cluster(NAMES, { replicas: 2 }, (n) => (opened.push(n), n));
  }, 30_000);
  afterAll(async () => {
    for (const n of opened.reverse()) await n.close();
  });
  const owners = (key: string) => rankOwners(partitionOf(key), NAMES, 2);
  /** A key `name` does not own. */
  const foreignKey = (prefix: string, name: string): string => {
    for (let i = 0; ; i++) if (!owners(`${prefix}${i}`).includes(name)) return `${prefix}${i}`;
  };
  const ownedKey = (prefix: string, name: string): string => {
    for (let i = 0; ; i++) if (owners(`${prefix}${i}`).includes(name)) return `${prefix}${i}`;
  };
  /** This node's own records of `key` (its dump), tombstones included. */
  const held = async (node: MakhzenNode, key: string) => {
    const text = await (await node.handle(new Request("http://local/dump"))).text();
    return text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as { key: string; value: string | null }).filter((r) => r.key === key);
  };

  test("writes from a non-owner land on the owners, reads answer the owner's value, conditions are checked there", async () => {
    const a = nodes.get("a")!;
    const key = foreignKey("user:", "a");
    const [first, second] = owners(key).map((n) => nodes.get(n)!);
    const it: ItemsHandle = a.items("users");

    const written = await it.set(key, "v1");
    // Taken by the first owner (its name is in the version), and held by both.
    expect(parseVersion(written.version)?.node).toBe(first!.name);
    await eventually(() => second!.bucket("users").get(key)?.value === "v1", { what: "the second owner holds the write" });
    expect(first!.bucket("users").get(key)).toEqual(written);
    // The non-owner took nothing as a hint: its own copy holds no record of the key.
    expect(await held(a, key)).toEqual([]);

    // A read from the non-owner answers the owner's copy, also after the owner changes it.
    expect(await it.get(key)).toEqual(written);
    const changed = first!.bucket("users").set(key, "v2");
    expect(await it.get(key)).toEqual(changed);

    // Conditions are checked on the owner's copy.
    expect((await failure(() => it.set(key, "x", { ifMatch: written.version }))).code).toBe("PRECONDITION_FAILED");
    expect((await failure(() => it.set(key, "x", { ifAbsent: true }))).code).toBe("PRECONDITION_FAILED");
    expect((await it.set(key, "v3", { ifMatch: changed.version })).value).toBe("v3");

    // Binary values travel the hop in their stored form.
    const bin = await it.set(`${key}-bin`, NOT_UTF8, { w: "all" });
    for (const name of owners(`${key}-bin`)) expect(nodes.get(name)!.bucket("users").get(`${key}-bin`)).toEqual(bin);
    expect(await it.get(`${key}-bin`)).toEqual(bin);

    // Deletes: true, then false, on the owners.
    expect(await it.delete(key)).toBe(true);
    expect(await it.delete(key)).toBe(false);
    expect(first!.bucket("users").get(key)).toBeUndefined();
    expect(await it.get(key)).toBeUndefined();
  });

  test("a write of a key another node owns is checked here as a local one is, before it travels: same codes, same words, nothing stored", async () => {
    const a = nodes.get("a")!;
    const foreign = foreignKey("checked:", "a");
    const mine = ownedKey("checked:", "a");
    const it = a.items("users") as unknown as { set(k: string, v: unknown, o?: unknown): Promise<unknown> };
    const cases: [string, unknown, unknown][] = [
      ["a Date", new Date(0), undefined],
      ["a boxed string", new String("boxed"), undefined],
      ["an object with toJSON", { toJSON: () => "sneaky" }, undefined],
      ["a BigInt", 10n, undefined],
      ["null", null, undefined],
      ["a number", 5, undefined],
      ["ttl NaN", "v", { ttl: Number.NaN }],
      ["ttl Infinity", "v", { ttl: Number.POSITIVE_INFINITY }],
      ["ttl too long", "v", { ttl: 1e12 }],
    ];
    for (const [what, value, opts] of cases) {
      const here = await failure(() => it.set(mine, value, opts));
      const there = await failure(() => it.set(foreign, value, opts));
      expect({ what, code: there.code, message: there.message }).toEqual({ what, code: here.code, message: here.message });
    }
    for (const name of owners(foreign)) expect(nodes.get(name)!.bucket("users").get(foreign)).toBeUndefined();
  });

  test("w=all and r=all count the key's two owners; a level above them is UNAVAILABLE", async () => {
    const a = nodes.get("a")!;
    const key = foreignKey("acked:", "a");
    const written = await a.items().set(key, "v", { w: "all" });
    // Resolved only once both owners hold it: no waiting here.
    for (const name of owners(key)) expect(nodes.get(name)!.bucket().get(key)).toEqual(written);
    expect(await a.items().get(key, { r: "all" })).toEqual(written);
    expect((await a.items().set(key, "q", { w: "quorum", timeoutMs: 2000 })).value).toBe("q");
    const three = await failure(() => a.items().set(key, "three", { w: 3 }));
    expect(three.code).toBe("UNAVAILABLE");
    expect(await a.items().delete(key, { w: "all" })).toBe(true);
    for (const name of owners(key)) expect(nodes.get(name)!.bucket().get(key)).toBeUndefined();
  });

  test("bucket() refuses a key this node does not serve (NOT_LOCAL, naming the owners) and any listing; an owned key works", async () => {
    const a = nodes.get("a")!;
    const far = foreignKey("far:", "a");
    await a.items("b1").set(far, "v", { w: "all" });
    for (const run of [() => a.bucket("b1").get(far), () => a.bucket("b1").set(far, "x"), () => a.bucket("b1").delete(far)]) {
      const refused = await failure(run);
      expect(refused.code).toBe("NOT_LOCAL");
      for (const owner of owners(far)) expect(refused.message).toContain(owner);
      expect(refused.message).toContain('node.items("b1")');
    }
    // Nothing was written or deleted by the refused calls.
    expect((await a.items("b1").get(far))?.value).toBe("v");
    expect(await held(a, far)).toEqual([]);
    // A bad bucket name or key is still that, not NOT_LOCAL.
    expect((await failure(() => a.bucket("bad name").get(far))).code).toBe("INVALID_BUCKET");
    expect((await failure(() => a.bucket().get(5 as unknown as string))).code).toBe("INVALID_KEY");

    const listing = await failure(() => a.bucket("b1").list());
    expect(listing.code).toBe("NOT_LOCAL");
    expect(listing.message).toContain('node.items("b1").list()');

    // A key this node owns: bucket() is this node's copy, as ever, and it replicates to the other owner.
    const mine = ownedKey("mine:", "a");
    const item = a.bucket("b1").set(mine, "local");
    expect(a.bucket("b1").get(mine)).toEqual(item);
    const other = owners(mine).find((n) => n !== "a")!;
    await eventually(() => nodes.get(other)!.bucket("b1").get(mine)?.version === item.version, { what: "the other owner holds the write" });
    const stranger = NAMES.find((n) => !owners(mine).includes(n))!;
    expect(await nodes.get(stranger)!.items("b1").get(mine)).toEqual(item);
    expect(a.bucket("b1").delete(mine)).toBe(true);
  });

  test("items().list() answers the whole cluster's keys from every node, each once, in pages", async () => {
    const keys = Array.from({ length: 30 }, (_, i) => `k${String(i).padStart(2, "0")}`);
    const all = [...nodes.values()];
    // Written through every node in turn, most of them not owners.
    for (const [i, key] of keys.entries()) await all[i % all.length]!.items("listed").set(key, `v${i}`, { w: "all" });
    // Each node holds only part of them.
    for (const n of all) {
      const own = keys.filter((k) => owners(k).includes(n.name));
      expect(own.length).toBeLessThan(keys.length);
    }
    for (const n of all) {
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await n.items("listed").list({ limit: 7, ...(after ? { after } : {}) });
        expect(page.incomplete).toBeUndefined();
        seen.push(...page.items.map((i) => i.key));
        if (page.next === null) break;
        after = page.next;
      }
      expect(seen).toEqual(keys);
      expect((await n.items("listed").list({ prefix: "k1" })).items.map((i) => i.value)).toEqual(keys.filter((k) => k.startsWith("k1")).map((k) => `v${Number(k.slice(1))}`));
    }
  });
});
