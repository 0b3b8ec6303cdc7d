/**
 * One server of bench/breakdown.ts. Each mode adds one layer of a makhzen request
 * on top of the previous, so the CPU per request of consecutive modes says what
 * each layer costs:
 *   bare          Bun.serve answering a constant (reads no body)
 *   bare-body     + reading the body and JSON.parse (PUT only)
 *   elysia        + Elysia routing a wildcard route to a constant (and, for PUT,
 *                   Elysia's own body parsing)
 *   elysia-store  + the store lookup (GET) or write (PUT) and a JSON response
 *   app           + makhzen's whole public app (all routes, key decoding, body
 *                   limits and timeout, TypeBox validation, conditions, w=/r=)
 *   node          + createNode's wiring (request metrics, cluster, sweeper)
 */
import { Elysia } from "elysia";
import { createNode } from "../src/node.ts";
import { KEYS, VALUE } from "./_lib.ts";

const [mode, portArg] = process.argv.slice(2);
const port = Number(portArg);
const constant = JSON.stringify({ key: "k", value: VALUE, version: "001700000000000-000000-bench" });
const constantResponse = () => new Response(constant, { headers: { "content-type": "application/json" } });

const node = createNode({ name: "breakdown", host: "127.0.0.1", port });
for (let i = 0; i < KEYS; i++) node.bucket().set(`key-${i}`, VALUE);
const view = (key: string) => {
  const item = node.bucket().get(key);
  return item ? new Response(JSON.stringify(item), { headers: { "content-type": "application/json", etag: `"${item.version}"` } }) : new Response(null, { status: 404 });
};

// Every mode listens on the port given (0: one the OS picks) and says where in a
// `started` line, as `serve` does, for test/support/proc.ts's NodeProcess.
let server: { port?: number } | undefined;
switch (mode) {
  case "bare":
    server = Bun.serve({ hostname: "127.0.0.1", port, fetch: constantResponse });
    break;
  case "bare-body":
    server = Bun.serve({ hostname: "127.0.0.1", port, fetch: async (req) => (JSON.parse(await req.text()), constantResponse()) });
    break;
  case "elysia":
    server = Bun.serve({ hostname: "127.0.0.1", port, fetch: new Elysia().get("/items/*", constantResponse).put("/items/*", constantResponse).fetch });
    break;
  case "elysia-store":
    server = Bun.serve({
      hostname: "127.0.0.1",
      port,
      fetch: new Elysia()
        .get("/items/*", ({ params }) => view(params["*"]))
        .put("/items/*", ({ params, body }) => {
          const item = node.bucket().set(params["*"], (body as { value: string }).value);
          return new Response(JSON.stringify(item), { headers: { "content-type": "application/json", etag: `"${item.version}"` } });
        }).fetch,
    });
    break;
  case "app":
    server = Bun.serve({ hostname: "127.0.0.1", port, fetch: (req) => node.handle(req) });
    break;
  case "node":
    server = await node.listen();
    break;
  default:
    console.error(`unknown mode ${mode}`);
    process.exit(2);
}
console.log(JSON.stringify({ msg: "started", mode, url: `http://127.0.0.1:${server!.port}` }));
