/**
 * Under a cluster secret, error answers from peers are trusted only when signed:
 * a stranger sitting on a seed URL cannot stop a join with a forged NAME_TAKEN,
 * while a real member's NAME_TAKEN (signed) still refuses a duplicate name.
 */
import { afterEach, expect, test } from "bun:test";
import { createNode, type MakhzenNode } from "../../src/index.ts";

const SECRET = "secret-secret-secret-1234";
const nodes: MakhzenNode[] = [];
const servers: { stop(force?: boolean): unknown }[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
  for (const s of servers.splice(0)) s.stop(true);
});

const node = (name: string, peers: string[] = []) => {
  const n = createNode({ name, host: "127.0.0.1", port: 0, clusterSecret: SECRET, peers });
  nodes.push(n);
  return n;
};

test("a forged, unsigned NAME_TAKEN from a stranger on a seed URL does not stop the join", async () => {
  const rogue = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: () =>
      new Response(JSON.stringify({ error: { code: "NAME_TAKEN", message: "forged by a stranger" } }), {
        status: 409,
        headers: { "content-type": "application/json" },
      }),
  });
  servers.push(rogue);
  const good = node("good");
  const { url } = await good.listen();
  const joiner = node("joiner", [`http://127.0.0.1:${rogue.port}`, url]);
  await joiner.listen();
  expect(joiner.members().map((m) => m.name).sort()).toEqual(["good", "joiner"]);
});

test("a member's signed NAME_TAKEN still refuses a duplicate name", async () => {
  const a = node("a");
  const { url } = await a.listen();
  const b = node("b", [url]);
  await b.listen();
  const impostor = createNode({ name: "b", host: "127.0.0.1", port: 0, clusterSecret: SECRET, peers: [url] });
  nodes.push(impostor);
  let error: unknown;
  try {
    await impostor.listen();
  } catch (e) {
    error = e;
  }
  expect((error as { code?: string })?.code).toBe("NAME_TAKEN");
});
