/** The baseline: a bare Bun.serve answering a constant, nothing parsed or stored. */
const port = Number(process.argv[2] ?? 0);
const body = JSON.stringify({ key: "k", value: "x".repeat(100), version: "001700000000000-000000-bench" });
const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch: () => new Response(body, { headers: { "content-type": "application/json" } }),
});
// Where it listens, in the form of serve's start-up line (test/support/proc.ts reads it).
console.log(JSON.stringify({ msg: "started", url: `http://127.0.0.1:${server.port}` }));
