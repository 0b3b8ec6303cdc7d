import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";
import { PEER_OPS } from "../../src/cluster/protocol/peer-ops.ts";
import { PeerSigner, SIGNATURE_HEADERS } from "../../src/cluster/protocol/signing.ts";

// A node per test, closed after it whether it passed or not.
let node: MakhzenNode;
beforeEach(() => {
  node = createNode({ name: "solo", port: 0 });
});
afterEach(() => node.close());

const peer = (op: string, body: unknown, version: string | null = PROTOCOL_VERSION) =>
  node.handle(
    new Request(`http://localhost/internal/${op}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(version === null ? {} : { [PROTOCOL_HEADER]: version }) },
      body: typeof body === "string" ? body : JSON.stringify(body),
    }),
  );

const errorOf = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

describe("peer API", () => {
  test("a missing or unknown protocol version is refused clearly", async () => {
    const missing = await peer("groups", {}, null);
    expect(missing.status).toBe(400);
    expect(await errorOf(missing)).toEqual({
      code: "PROTOCOL_VERSION",
      message: `peer requests need the ${PROTOCOL_HEADER} header (this node speaks version ${PROTOCOL_VERSION})`,
    });
    const future = await peer("groups", {}, "99");
    expect(future.status).toBe(400);
    expect((await errorOf(future)).message).toContain('"99" is not supported');
  });

  test("the version is checked before the body: another release sees PROTOCOL_VERSION, never a 422 for its body", async () => {
    // A record in another release's shape (an object, not this protocol's tuple), and bodies no model takes.
    const foreign = { records: [{ bucket: "default", key: "x", value: "v", version: "001795733245818-000000-z" }] };
    for (const op of Object.keys(PEER_OPS)) {
      for (const body of [foreign, {}, "{nope", ""]) {
        for (const version of [null, "2", "99"]) {
          const res = await peer(op, body, version);
          expect({ op, body, version, status: res.status, code: (await errorOf(res)).code }).toEqual({ op, body, version, status: 400, code: "PROTOCOL_VERSION" });
        }
      }
    }
    expect(node.bucket().get("x")).toBeUndefined();
    // With this node's version the same body is judged on its shape.
    expect((await peer("records", foreign)).status).toBe(422);
  });

  test("under a cluster secret the version is checked once the signature is proved: unsigned learns nothing, signed gets it signed", async () => {
    const secret = "secret-secret-secret-1234";
    const guarded = createNode({ name: "guarded", port: 0, clusterSecret: secret });
    try {
      const body = JSON.stringify({ records: [{ bucket: "default", key: "x", value: "v", version: "001795733245818-000000-z" }] });
      const post = (headers: Record<string, string>) =>
        guarded.handle(new Request("http://localhost/internal/records", { method: "POST", headers: { "content-type": "application/json", [PROTOCOL_HEADER]: "2", ...headers }, body }));
      // Unsigned, or signed with another secret: refused as before, with no word of the version.
      for (const signature of [{}, new PeerSigner({ secret: "another-secret-0123456789" }).sign("POST", "/internal/records", body, Date.now())]) {
        const refused = await post(signature);
        const error = await errorOf(refused);
        expect({ status: refused.status, code: error.code }).toEqual({ status: 401, code: "CLUSTER_AUTH" });
        expect(error.message).not.toContain(PROTOCOL_VERSION);
      }
      // Signed: the version error (not a 422 for the body), signed so the peer can trust it.
      const signed = await post(new PeerSigner({ secret }).sign("POST", "/internal/records", body, Date.now()));
      expect(signed.status).toBe(400);
      expect(signed.headers.get(SIGNATURE_HEADERS.signature)).toBeTruthy();
      expect((await errorOf(signed)).code).toBe("PROTOCOL_VERSION");
    } finally {
      await guarded.close();
    }
  });

  test("under a cluster secret a body refused after the signature is proved is refused signed, an unknown property included (Elysia's refusal went unsigned)", async () => {
    const secret = "secret-secret-secret-1234";
    const guarded = createNode({ name: "guarded", port: 0, clusterSecret: secret });
    try {
      const post = (path: string, body: string) =>
        guarded.handle(new Request(`http://localhost${path}`, { method: "POST", headers: { "content-type": "application/json", [PROTOCOL_HEADER]: PROTOCOL_VERSION, ...new PeerSigner({ secret }).sign("POST", path, body, Date.now()) }, body }));
      // A field a later release adds (as `values` was added to list): the asker must be able to trust the refusal.
      for (const [path, body] of [
        ["/internal/list", JSON.stringify({ limit: 10, later: false })],
        ["/internal/list", JSON.stringify({ limit: 0 })],
        ["/internal/members", JSON.stringify({ later: 1 })],
        ["/internal/records", JSON.stringify({ records: [["default", "", "v", "bad"]] })],
        ["/internal/list", "{nope"],
      ] as const) {
        const res = await post(path, body);
        expect({ path, body, status: res.status, signed: res.headers.get(SIGNATURE_HEADERS.signature) !== null }).toEqual({ path, body, status: res.status, signed: true });
        expect([400, 422]).toContain(res.status);
      }
      const unknown = await post("/internal/list", JSON.stringify({ limit: 10, later: false }));
      expect(await errorOf(unknown)).toEqual({ code: "VALIDATION", message: "later: Unexpected property" });
    } finally {
      await guarded.close();
    }
  });

  test("bodies are validated with the protocol's models", async () => {
    const bad = await peer("records", { records: [["b", "k", 1, "v"]] });
    expect(bad.status).toBe(422);
    expect((await errorOf(bad)).code).toBe("VALIDATION");
    const notJson = await peer("records", "{nope");
    expect(notJson.status).toBe(400);
    // A record is a tuple of 4 to 6 fields (record-wire.ts): one more is refused, and so is the object form.
    const extra = await peer("records", { records: [["b", "k", "v", "001700000000000-000000-x", 5, true, "evil"]] });
    expect(extra.status).toBe(422);
    const object = await peer("records", { records: [{ bucket: "b", key: "k", value: "v", version: "001700000000000-000000-x" }] });
    expect(object.status).toBe(422);
  });

  test("records from a peer are merged and visible through the items API", async () => {
    const version = `${String(Date.now()).padStart(15, "0")}-000000-other`;
    const res = await peer("records", { records: [["default", "k", "v", version]] });
    expect(await res.json()).toEqual({ applied: 1, refused: 0 });
    const item = await node.handle(new Request("http://localhost/items/k"));
    expect(((await item.json()) as { version: string }).version).toBe(version);
    const again = await peer("records", { records: [["default", "k", "old", version]] });
    expect(await again.json()).toEqual({ applied: 0, refused: 1 });
  });

  test("GET /cluster lists this node; w= and r= are validated", async () => {
    const res = await node.handle(new Request("http://localhost/cluster"));
    const body = (await res.json()) as { self: string; members: { name: string; state: string }[] };
    expect(body.self).toBe("solo");
    expect(body.members.map((m) => [m.name, m.state])).toEqual([["solo", "alive"]]);
    const put = (q: string) =>
      node.handle(new Request(`http://localhost/items/w${q}`, { method: "PUT", body: JSON.stringify({ value: "v" }) }));
    expect((await put("?w=quorum")).status).toBe(200); // a cluster of one: quorum is 1
    const all3 = await put("?w=3&timeout=100");
    expect(all3.status).toBe(503);
    expect((await errorOf(all3)).message).toContain("the local write stands");
    expect((await put("?w=0")).status).toBe(422);
    expect((await put("?w=1&timeout=abc")).status).toBe(422);
    expect((await node.handle(new Request("http://localhost/items/w?r=all"))).status).toBe(200);
  });
});
