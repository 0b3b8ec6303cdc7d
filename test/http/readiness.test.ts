import { expect, test } from "bun:test";
import { eventually } from "../support/proc.ts";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { closeAfterEach } from "../support/cleanup.ts";

/**
 * /readyz of a starting node: 503 until its first sync is done, or until
 * startSyncTimeoutMs. The seed here is a fake peer that joins it and then never
 * answers a sync request, so the sync can only end by timing out.
 */
const track = closeAfterEach();

function hangingSeed() {
  const stalled: (() => void)[] = [];
  let url = "";
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req): Promise<Response> {
      const op = new URL(req.url).pathname.replace("/internal/", "");
      const self = { name: "seed", url, state: "alive", incarnation: 1 };
      if (op === "join" || op === "gossip") return Response.json({ members: [self], wallMs: Date.now() });
      // Anything else (the sync) hangs until the test ends.
      return new Promise<Response>((resolve) => stalled.push(() => resolve(new Response("bye", { status: 503 }))));
    },
  });
  url = `http://127.0.0.1:${server.port}`;
  track(server, () => {
    for (const s of stalled) s();
    server.stop(true);
  });
  return url;
}

async function start(options: Parameters<typeof createNode>[0]): Promise<{ node: MakhzenNode; url: string }> {
  const node = track(createNode({ port: 0, ...options }));
  const { url } = await node.listen();
  return { node, url };
}

test("a node with no seeds is ready at once", async () => {
  const { url } = await start({ name: "alone" });
  expect((await fetch(`${url}/readyz`)).status).toBe(200);
});

test("a joining node answers 503 on /readyz until its first sync ends, here by timing out", async () => {
  const seed = hangingSeed();
  const t0 = performance.now();
  const { node, url } = await start({ name: "joiner", peers: [seed], startSyncTimeoutMs: 600, requestTimeoutMs: 5000 });
  const res = await fetch(`${url}/readyz`);
  expect(res.status).toBe(503);
  expect(((await res.json()) as { error: { code: string } }).error.code).toBe("UNAVAILABLE");
  expect(node.members().map((m) => m.name)).toEqual(["joiner", "seed"]);
  await eventually(() => node.ready(), { timeoutMs: 5000, what: "the joiner is ready once its first sync times out" });
  expect(performance.now() - t0).toBeGreaterThanOrEqual(550);
  expect((await fetch(`${url}/readyz`)).status).toBe(200);
});

test("a leaving node stops saying ready while it drains", async () => {
  const { node, url } = await start({ name: "leaver" });
  const leaving = node.leave();
  expect(node.ready()).toBe(false);
  await leaving;
  await expect(fetch(`${url}/readyz`)).rejects.toThrow();
});
