/**
 * Peers that cost nothing, for bench/cluster.ts: `bun bench/null-peers.ts <n>`
 * starts n fake members in this one process and prints each one's member JSON on a
 * line, for the bench to join them to a real node.
 *
 * Each takes `records` batches and acknowledges them after only counting them (no
 * parse, no store), and answers the membership ops with itself. Anti-entropy asks
 * are refused (503): the node logs a failed round and backs off. So the node that
 * joined them spends on replication what a node spends to send it (filing, batching,
 * serializing, the requests and their answers), and nothing of the peers' own work
 * lands on the same cores: the cost of a replicated write to the node that takes it,
 * apart from the machine it shares with its peers (docs/benchmarks.md, Issue 13, section 16).
 */
const n = Number(process.argv[2] ?? "2");

for (let i = 0; i < n; i++) {
  const me = { name: `null${i}`, url: "", state: "alive", incarnation: Date.now() };
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      const body = await req.text();
      if (path === "/internal/records") {
        // A batch is {"records":[[...],[...]]}: its first "[" and each "],[" between tuples, one per record
        // (a value holding "],[" adds to the count, which the sender does not read).
        let applied = 0;
        for (let at = body.indexOf("["); at >= 0; at = body.indexOf("],[", at + 1)) applied++;
        return Response.json({ applied, refused: 0 });
      }
      if (path === "/internal/gossip" || path === "/internal/join") return Response.json({ members: [me] });
      if (path === "/internal/leave") return Response.json({ ok: true });
      return Response.json({ error: { code: "UNAVAILABLE", message: "a null peer answers replication and membership only" } }, { status: 503 });
    },
  });
  me.url = `http://127.0.0.1:${server.port}`; // port 0: the OS picked it
  console.log(JSON.stringify(me));
}
