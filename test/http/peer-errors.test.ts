/**
 * Under a cluster secret, error answers from peers are trusted only when signed:
 * a stranger sitting on a seed URL cannot stop a join with a forged NAME_TAKEN,
 * while a real member's NAME_TAKEN (signed) still refuses a duplicate name.
 */
import { expect, test } from "bun:test";
import { createNode } from "../../src/index.ts";
import { closeAfterEach } from "../support/cleanup.ts";

const SECRET = "secret-secret-secret-1234";
const track = closeAfterEach();

const node = (name: string, peers: string[] = []) => {
  return track(createNode({ name, host: "127.0.0.1", port: 0, clusterSecret: SECRET, peers }));
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
  track(rogue, () => rogue.stop(true));
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
  const impostor = node("b", [url]);
  let error: unknown;
  try {
    await impostor.listen();
  } catch (e) {
    error = e;
  }
  expect((error as { code?: string })?.code).toBe("NAME_TAKEN");
});
