import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";

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
