/**
 * Forwards in batches (forward-batch.ts): the forwards one node sends one owner in
 * one event-loop turn go in one `forwardBatch` request, each caller gets its own
 * answer, and a batch that fails fails each member exactly as a lone forward would
 * (routing.ts): no answer -> a conditional write is UNAVAILABLE, anything else goes
 * to the next owner; a 4xx refusal of the hop -> the next owner for each.
 * In process, 5 nodes with --replicas 2 over the memory transport.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { parseConcern } from "../../src/cluster/consistency.ts";
import { ForwardBatcher, serveBatch } from "../../src/cluster/forward-batch.ts";
import { partitionsToHex } from "../../src/cluster/placement.ts";
import { MemoryTransport } from "../../src/cluster/protocol/memory-transport.ts";
import { MAX_FORWARD_BATCH, PROTOCOL_HEADER, PROTOCOL_VERSION, type ForwardRequest } from "../../src/cluster/protocol/messages.ts";
import { PeerError, type PeerOp, type PeerRequest, type PeerTransport } from "../../src/cluster/protocol/peer-ops.ts";
import { silentLogger } from "../../src/ops/log.ts";
import { isMakhzenError, type MakhzenError } from "../../src/errors.ts";
import { createNode } from "../../src/node.ts";
import { ItemsService } from "../../src/service.ts";
import { core, joined, type Core } from "../support/core.ts";
import { eventually } from "../support/proc.ts";
import { failure } from "../support/expect.ts";

const NAMES = ["a", "b", "c", "d", "e"];
const nodes: Core[] = [];
afterEach(() => {
  for (const n of nodes.splice(0)) n.cluster.close();
});

/** A memory network that can lose `forwardBatch` requests or answers, or refuse them with a status, per destination URL. */
class BatchNet extends MemoryTransport {
  batchFault = new Map<string, "request lost" | "answer lost" | number>();
  override async call<O extends PeerOp>(url: string, op: O, body: PeerRequest<O> | string, timeoutMs: number, signal?: AbortSignal) {
    const fault = op === "forwardBatch" ? this.batchFault.get(url) : undefined;
    if (fault === "request lost") {
      this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
      throw new PeerError(0, "UNREACHABLE", `${url} ${op}: request lost`);
    }
    if (typeof fault === "number") {
      this.calls.set(op, (this.calls.get(op) ?? 0) + 1);
      throw new PeerError(fault, fault === 404 ? "NOT_FOUND" : "CLUSTER_AUTH", `${url} ${op}: refused`);
    }
    const answer = await super.call(url, op, body, timeoutMs, signal);
    if (fault === "answer lost") throw new PeerError(0, "UNREACHABLE", `${url} ${op}: answer lost`);
    return answer;
  }
}

async function cluster() {
  const net = new BatchNet();
  const made = NAMES.map((n) => core(n, net, { replicas: 2, antiEntropyIntervalMs: 600_000, reapDeadAfterMs: 600_000 }));
  nodes.push(...made);
  await joined(made);
  for (const n of made) for (const m of made) if (m !== n) n.cluster.views.report(m.name, undefined, partitionsToHex([]));
  const services = new Map(made.map((n) => [n.name, new ItemsService({ items: n.items, store: n.store, cluster: n.cluster, config: n.config })]));
  const byName = new Map(made.map((n) => [n.name, n]));
  const owners = (key: string) => [...made[0]!.cluster.placement.ownersOfKey(key)];
  /** `count` keys that `a` does not own and whose first owner is `owner`. */
  const keysFor = (owner: string, count: number, prefix = "k"): string[] => {
    const out: string[] = [];
    for (let i = 0; out.length < count; i++) {
      const key = `${prefix}${i}`;
      const o = owners(key);
      if (!o.includes("a") && o[0] === owner) out.push(key);
    }
    return out;
  };
  return { net, service: (n: string) => services.get(n)!, node: (n: string) => byName.get(n)!, owners, keysFor };
}

const calls = (net: MemoryTransport, op: PeerOp) => net.calls.get(op) ?? 0;


describe("forwards travel in batches", () => {
  test("many concurrent forwards from one node to one owner go in few requests, each caller getting its own answer", async () => {
    const { net, service, node, keysFor } = await cluster();
    const keys = keysFor("b", 300);
    const forwards = calls(net, "forward");
    const batches = calls(net, "forwardBatch");
    const items = await Promise.all(keys.map((k, i) => service("a").set("default", k, `v${i}`)));
    items.forEach((item, i) => expect(item).toMatchObject({ key: keys[i], value: `v${i}` }));
    expect(calls(net, "forwardBatch") - batches).toBe(1);
    expect(calls(net, "forward") - forwards).toBe(0);
    for (const [i, k] of keys.entries()) expect(node("b").store.get("default", k)?.value).toBe(`v${i}`);
    // Reads too, and a key nobody wrote answers undefined to its own caller.
    const missing = keysFor("b", 1, "never")[0]!;
    const read = await Promise.all([...keys, missing].map((k) => service("a").get("default", k)));
    read.slice(0, -1).forEach((item, i) => expect(item).toMatchObject({ key: keys[i], value: `v${i}` }));
    expect(read.at(-1)).toBeUndefined();
    expect(calls(net, "forwardBatch") - batches).toBe(2);
    // Deletes answer each its own version.
    const versions = await Promise.all(keys.slice(0, 10).map((k) => service("a").delete("default", k)));
    versions.forEach((v, i) => expect(v).toBe(node("b").store.getRecord("default", keys[i]!)!.version));
    expect(node("a").store.scan(undefined, 10_000)).toEqual([]); // nothing stood here as a hint
  });

  test("a batch is bounded: more than MAX_FORWARD_BATCH concurrent forwards go in more than one", async () => {
    const { net, service, keysFor } = await cluster();
    const keys = keysFor("c", MAX_FORWARD_BATCH + 5);
    const batches = calls(net, "forwardBatch");
    const items = await Promise.all(keys.map((k) => service("a").set("default", k, k)));
    items.forEach((item, i) => expect(item.value).toBe(keys[i]!));
    expect(calls(net, "forwardBatch") - batches).toBe(2);
  });

  test("a failed condition comes back to its own caller only, with the owner's code and message", async () => {
    const { net, service, keysFor } = await cluster();
    const keys = keysFor("b", 8);
    const first = await Promise.all(keys.map((k) => service("a").set("default", k, "one")));
    const wrong = "000000000000001-000000-x";
    const direct = await failure(() => service("b").set("default", keys[3]!, "two", { ifMatch: wrong }));
    const batches = calls(net, "forwardBatch");
    const results = await Promise.allSettled(keys.map((k, i) => service("a").set("default", k, "two", { ifMatch: i === 3 ? wrong : first[i]!.version })));
    expect(calls(net, "forwardBatch") - batches).toBe(1);
    results.forEach((r, i) => {
      if (i === 3) {
        expect(r.status).toBe("rejected");
        const e = (r as PromiseRejectedResult).reason as MakhzenError;
        expect(e.code).toBe("PRECONDITION_FAILED");
        expect(e.message).toBe(direct.message);
      } else {
        expect(r).toMatchObject({ status: "fulfilled", value: { key: keys[i], value: "two" } });
      }
    });
  });

  test("requests with w= or r= go alone: a batch would answer when its slowest member does", async () => {
    const { net, service, keysFor } = await cluster();
    const keys = keysFor("b", 5);
    const batches = calls(net, "forwardBatch");
    const forwards = calls(net, "forward");
    const w = parseConcern("w", "quorum", "5000")!;
    await Promise.all(keys.map((k) => service("a").set("default", k, "v", { w })));
    const r = parseConcern("r", "quorum", "5000")!;
    const read = await Promise.all(keys.map((k) => service("a").get("default", k, { r })));
    read.forEach((item) => expect(item).toMatchObject({ value: "v" }));
    expect(calls(net, "forwardBatch") - batches).toBe(0);
    expect(calls(net, "forward") - forwards).toBe(10);
  });

  for (const fault of ["request lost", "answer lost"] as const) {
    test(`a batch whose ${fault === "request lost" ? "request" : "answer"} is lost: conditional members are OUTCOME_UNKNOWN, the others go to the next owner`, async () => {
      const { net, service, node, owners, keysFor } = await cluster();
      const keys = keysFor("b", 6);
      const first = await Promise.all(keys.map((k) => service("a").set("default", k, "one")));
      net.batchFault.set(node("b").url, fault);
      const results = await Promise.allSettled(keys.map((k, i) => service("a").set("default", k, "two", i % 2 === 0 ? { ifMatch: first[i]!.version } : {})));
      net.batchFault.clear();
      for (const [i, r] of results.entries()) {
        if (i % 2 === 0) {
          expect(r.status).toBe("rejected");
          const e = (r as PromiseRejectedResult).reason as MakhzenError;
          expect(e.code).toBe("OUTCOME_UNKNOWN");
          expect(e.message).toContain("may or may not have been applied");
          // It ran on the first owner only when the answer, not the request, was lost.
          expect(node("b").store.get("default", keys[i]!)?.value).toBe(fault === "answer lost" ? "two" : "one");
        } else {
          expect(r).toMatchObject({ status: "fulfilled", value: { value: "two" } });
          // Taken by the second owner, not kept here as a hint.
          const second = owners(keys[i]!)[1]!;
          expect(node(second).store.get("default", keys[i]!)?.value).toBe("two");
          expect(node("a").store.getRecord("default", keys[i]!)).toBeUndefined();
        }
      }
      // Reads are not conditional: they go on to the next owner too.
      net.batchFault.set(node("b").url, fault);
      const read = await Promise.all(keys.slice(0, 3).map((k) => service("a").get("default", k)));
      net.batchFault.clear();
      read.forEach((item) => expect(item).toBeDefined());
    });
  }

  test("a 4xx refusal of a batch is a refusal of each member: unconditional ones go to the next owner, a conditional one is refused", async () => {
    const { net, service, node, owners, keysFor } = await cluster();
    const keys = keysFor("b", 4);
    const first = await Promise.all(keys.map((k) => service("a").set("default", k, "one")));
    for (const k of keys) await eventually(() => node(owners(k)[1]!).store.get("default", k)?.value === "one");
    net.batchFault.set(node("b").url, 403);
    const results = await Promise.allSettled(keys.map((k, i) => Promise.resolve(service("a").set("default", k, "two", i === 0 ? { ifMatch: first[i]!.version } : {}))));
    net.batchFault.clear();
    // The first owner decides conditions, and it is up (it refused this node, not the key's writers): decided by the
    // next owner, on a copy that may lack the first's last writes, a condition could pass on both (lost updates).
    expect(results[0]!.status).toBe("rejected");
    expect(((results[0] as PromiseRejectedResult).reason as MakhzenError).code).toBe("UNAVAILABLE");
    expect(node(owners(keys[0]!)[1]!).store.get("default", keys[0]!)?.value).toBe("one");
    for (const [i, k] of keys.entries()) {
      if (i === 0) continue;
      expect(results[i]!.status === "fulfilled" && results[i]!.value.value).toBe("two");
      expect(node(owners(k)[1]!).store.get("default", k)?.value).toBe("two"); // the next owner took it
      expect(node("b").store.get("default", k)?.value).toBe("one"); // the refusing one ran nothing (replication brings it later)
    }
  });

  test("an owner without the op (404) gets each member again, alone, as `forward`", async () => {
    const { net, service, node, keysFor } = await cluster();
    const keys = keysFor("b", 5);
    net.batchFault.set(node("b").url, 404);
    const forwards = calls(net, "forward");
    const items = await Promise.all(keys.map((k, i) => service("a").set("default", k, `v${i}`)));
    net.batchFault.clear();
    items.forEach((item, i) => expect(item.value).toBe(`v${i}`));
    expect(calls(net, "forward") - forwards).toBe(5);
    for (const [i, k] of keys.entries()) expect(node("b").store.get("default", k)?.value).toBe(`v${i}`);
  });
});

describe("the forwardBatch op", () => {
  test("refuses a malformed body (422) and answers each request in its slot, errors included", async () => {
    const { net, node } = await cluster();
    const url = node("b").url;
    const good = { forwarded: true, op: "set", bucket: "default", key: "k", value: "v" };
    for (const body of [
      {},
      { requests: [] },
      { requests: good },
      { requests: [good, { ...good, bucket: "no spaces" }] },
      { requests: [good, { ...good, forwarded: false }] },
      { requests: Array.from({ length: MAX_FORWARD_BATCH + 1 }, () => good) },
      { requests: [good], extra: 1 },
    ]) {
      const e = await net.call(url, "forwardBatch", body as never, 1000).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(e).toBeInstanceOf(PeerError);
      expect((e as PeerError).status).toBe(422);
    }
    const answer = await net.call(
      url,
      "forwardBatch",
      {
        requests: [
          { forwarded: true, op: "set", bucket: "default", key: "k1", value: "v1" },
          { forwarded: true, op: "set", bucket: "default", key: "k2" },
          { forwarded: true, op: "get", bucket: "default", key: "k1" },
          { forwarded: true, op: "delete", bucket: "default", key: "nothing" },
        ],
      },
      1000,
    );
    expect(answer.answers).toHaveLength(4);
    expect(answer.answers[0]).toMatchObject({ record: { key: "k1", value: "v1" } });
    expect(answer.answers[1]).toEqual({ error: { code: "VALIDATION", message: "a forwarded set carries a value" } });
    expect(answer.answers[2]).toMatchObject({ record: { key: "k1", value: "v1" } }); // in order: the set before it applied first
    expect(answer.answers[3]).toEqual({ version: null });
  });

  test("over HTTP: not JSON is 400, a wrong shape 422, both in the error envelope; a good batch is answered", async () => {
    const node = createNode({ name: "solo" });
    try {
      const post = (body: string) =>
        node.handle(new Request("http://localhost/internal/forwardBatch", { method: "POST", headers: { "content-type": "application/json", [PROTOCOL_HEADER]: PROTOCOL_VERSION }, body }));
      const notJson = await post("{not json");
      expect(notJson.status).toBe(400);
      expect(((await notJson.json()) as { error: { code: string } }).error.code).toBe("BAD_REQUEST");
      for (const body of [{ requests: [] }, { requests: [{ forwarded: true, op: "set", bucket: "default", key: "k", value: "v", ttl: "soon" }] }, { requests: "x" }]) {
        const shape = await post(JSON.stringify(body));
        expect(shape.status).toBe(422);
        expect(((await shape.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: "VALIDATION", message: expect.any(String) });
      }
      const good = await post(JSON.stringify({ requests: [{ forwarded: true, op: "set", bucket: "default", key: "k", value: "v" }, { forwarded: true, op: "get", bucket: "default", key: "k" }] }));
      expect(good.status).toBe(200);
      expect(await good.json()).toMatchObject({ answers: [{ record: { key: "k", value: "v" } }, { record: { key: "k", value: "v" } }] });
      expect(node.bucket().get("k")).toMatchObject({ value: "v" });
    } finally {
      await node.close();
    }
  });
});

describe("the batch's bounds and slots", () => {
  const set = (key: string, value = "v"): ForwardRequest => ({ forwarded: true, op: "set", bucket: "default", key, value });
  const get = (key: string): ForwardRequest => ({ forwarded: true, op: "get", bucket: "default", key });

  /** A transport that records each call and answers with `answer`. */
  const fake = (answer: (op: PeerOp, body: unknown) => unknown) => {
    const sent: { op: PeerOp; body: unknown }[] = [];
    const transport: PeerTransport = {
      call: (async (_url: string, op: PeerOp, body: unknown) => {
        sent.push({ op, body });
        return answer(op, body);
      }) as PeerTransport["call"],
    };
    return { sent, transport };
  };

  test("the byte budget splits a turn's forwards, and a request over it goes alone", async () => {
    const { sent, transport } = fake((op, body) =>
      op === "forward" ? { version: null } : { answers: (body as { requests: unknown[] }).requests.map(() => ({ version: null })) },
    );
    const batcher = new ForwardBatcher({ transport, timeoutMs: 1000, maxBytes: 1024 });
    const answers = await Promise.all([...Array.from({ length: 6 }, (_, i) => batcher.send("u", set(`k${i}`, "x".repeat(300)))), batcher.send("u", set("big", "x".repeat(2000)))]);
    expect(answers).toHaveLength(7);
    expect(sent.map((s) => s.op).sort()).toEqual(["forward", "forwardBatch", "forwardBatch", "forwardBatch"]);
    for (const s of sent.filter((s) => s.op === "forwardBatch")) expect((s.body as { requests: unknown[] }).requests).toHaveLength(2);
  });

  test("slots: `failed` is a forward with no answer (a 5xx), `resend` sends a read again alone, a short answer fails every member", async () => {
    const { sent, transport } = fake((op, body) => {
      if (op === "forward") return { record: null };
      const n = (body as { requests: unknown[] }).requests.length;
      if (n === 3) return { answers: [{ version: null }, { failed: "boom" }, { resend: true }] };
      return { answers: [{ version: null }] };
    });
    const batcher = new ForwardBatcher({ transport, timeoutMs: 1000, maxBytes: 1 << 20 });
    const [ok, failed, resent] = await Promise.allSettled([batcher.send("u", set("a")), batcher.send("u", set("b")), batcher.send("u", get("c"))]);
    expect(ok).toEqual({ status: "fulfilled", value: { version: null } });
    expect((failed as PromiseRejectedResult).reason).toMatchObject({ status: 500 });
    expect(resent).toEqual({ status: "fulfilled", value: { record: null } });
    expect(sent.map((s) => s.op)).toEqual(["forwardBatch", "forward"]);
    const short = await Promise.allSettled([batcher.send("v", set("a")), batcher.send("v", set("b"))]);
    for (const r of short) expect((r as PromiseRejectedResult).reason).toMatchObject({ status: 502, code: "BAD_ANSWER" });
  });

  test("the owner answers reads past its answer budget with `resend`, writes always, and an unexpected failure as `failed`", async () => {
    const value = "x".repeat(400);
    const serve = async (req: ForwardRequest) => {
      if (req.key === "crash") throw new Error("unexpected");
      return { record: { bucket: "default", key: req.key, value, version: "000000000000001-000000-b" } };
    };
    const { answers } = await serveBatch([get("g1"), get("g2"), set("s1"), get("g3"), { ...get("crash") }], serve, 1000, silentLogger);
    expect(answers[0]).toMatchObject({ record: { key: "g1" } });
    expect(answers[1]).toMatchObject({ record: { key: "g2" } });
    expect(answers[2]).toMatchObject({ record: { key: "s1" } }); // a write ran: its answer goes whatever the budget
    expect(answers[3]).toEqual({ resend: true });
    expect(answers[4]).toEqual({ failed: expect.any(String) });
  });
});
