import { afterEach, describe, expect, test } from "bun:test";
import { Harness, eventually, type NodeProcess } from "../support/harness.ts";

/**
 * The cluster secret and client tokens with real node processes: a rogue node
 * with the wrong secret cannot join, a node without a secret that a secured node
 * meets cannot feed it writes, neither receives anything, and every refusal is
 * logged and counted (GET /cluster's `refusals`).
 */

const TOKEN = "client-token-for-tests";
const SECRET = "cluster-secret-for-tests-0123456789";
const secured = ["--token", TOKEN, "--cluster-secret", SECRET];

let h: Harness;
afterEach(async () => {
  await h?.cleanup();
});

interface View {
  self: string;
  members: { name: string; state: string }[];
  refusals: { clientUnauthorized: number; clientForbidden: number; peerRequests: number; peerAnswers: number };
}

const auth = (token?: string): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

async function view(n: NodeProcess, token?: string): Promise<View> {
  const res = await fetch(`${n.url}/cluster`, { headers: auth(token), signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`/cluster of ${n.name}: HTTP ${res.status}`);
  return (await res.json()) as View;
}

async function putItem(n: NodeProcess, key: string, value: string, token?: string): Promise<void> {
  const res = await fetch(`${n.url}/items/${key}`, {
    method: "PUT",
    headers: { "content-type": "application/json", ...auth(token) },
    body: JSON.stringify({ value }),
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`PUT ${key} on ${n.name}: HTTP ${res.status} ${await res.text()}`);
}

/** Every key a node holds (public /dump, tombstones included). */
async function keys(n: NodeProcess, token?: string): Promise<string[]> {
  const res = await fetch(`${n.url}/dump`, { headers: auth(token), signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`/dump of ${n.name}: HTTP ${res.status}`);
  const text = await res.text();
  return text.split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { key: string }).key).sort();
}

const names = (v: View) => v.members.map((m) => m.name).sort();

describe("cluster secret, real processes", () => {
  test("a rogue with the wrong secret and a node with none cannot join; the one a secured node meets cannot inject writes; neither receives anything; refusals are counted and logged", async () => {
    h = new Harness();
    const a = await h.start("a", { extraArgs: secured });
    const b = await h.start("b", { peers: [a.url], extraArgs: secured });
    await eventually(async () => names(await view(a, TOKEN)).join() === "a,b", { what: "a and b see each other" });

    // A rogue that knows a seed but not the secret: it keeps asking to join, and is refused every time.
    const rogue = await h.start("rogue", { peers: [a.url], extraArgs: ["--cluster-secret", "not-the-cluster-secret-000"] });
    await eventually(async () => (await view(a, TOKEN)).refusals.peerRequests >= 2, { what: "a refuses the rogue's joins" });

    // A node with no secret at all (it tries to join a too, unsigned), and a secured node that tries it as a seed first:
    // the open node takes the join (it checks nothing), but its unsigned answer is
    // refused, so c never counts it as a member, while the open node believes c is one
    // and keeps sending it writes, gossip and digests, all refused.
    const open = await h.start("open", { peers: [a.url] });
    const c = await h.start("c", { peers: [open.url, a.url], extraArgs: secured });
    await eventually(async () => names(await view(a, TOKEN)).join() === "a,b,c", { what: "c joins a and b" });
    await eventually(async () => (await view(open)).members.some((m) => m.name === "c"), { what: "the open node lists c" });

    await putItem(a, "from-a", "1", TOKEN);
    await putItem(open, "from-open", "evil");
    await putItem(rogue, "from-rogue", "evil");
    await eventually(async () => (await keys(c, TOKEN)).includes("from-a") && (await keys(b, TOKEN)).includes("from-a"), {
      what: "a's write reaches b and c",
    });
    // Let the rogues keep trying for a while: wait until c has refused more of the open
    // node's requests after a's write arrived, and a more of the rogue's joins.
    const cBefore = (await view(c, TOKEN)).refusals.peerRequests;
    const aBefore = (await view(a, TOKEN)).refusals.peerRequests;
    await eventually(
      async () => (await view(c, TOKEN)).refusals.peerRequests > cBefore + 3 && (await view(a, TOKEN)).refusals.peerRequests > aBefore + 3,
      { what: "more refusals after the writes" },
    );

    for (const n of [a, b, c]) {
      expect(await keys(n, TOKEN)).toEqual(["from-a"]);
      expect(names(await view(n, TOKEN))).toEqual(["a", "b", "c"]);
    }
    expect(await keys(rogue)).toEqual(["from-rogue"]);
    expect(await keys(open)).toEqual(["from-open"]);
    expect(names(await view(rogue))).toEqual(["rogue"]);
    expect(names(await view(open))).toEqual(["c", "open"]); // c's join reached it; a never let it in

    // b talks only to members: seconds of signed heartbeats, gossip, batches and
    // anti-entropy rounds, every one verified on both sides.
    expect((await view(b, TOKEN)).refusals).toEqual({ clientUnauthorized: 0, clientForbidden: 0, peerRequests: 0, peerAnswers: 0 });
    const cv = await view(c, TOKEN);
    expect(cv.refusals.peerAnswers).toBeGreaterThanOrEqual(1); // the open node's join answer
    expect(cv.refusals.peerRequests).toBeGreaterThan(0);
    const warnings = (n: NodeProcess) =>
      n.log().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.component === "security");
    expect(warnings(a)).toContainEqual(expect.objectContaining({ msg: "refused peer request", route: "/internal/join", from: "127.0.0.1", reason: "bad signature (different cluster secret?)" }));
    expect(warnings(a)).toContainEqual(expect.objectContaining({ msg: "refused peer request", route: "/internal/join", from: "127.0.0.1", reason: "unsigned request (no cluster secret?)" }));
    expect(warnings(c)).toContainEqual(expect.objectContaining({ msg: "refused peer answer", route: "/internal/join", from: open.url, reason: "unsigned answer (no cluster secret?)" }));
    expect(warnings(c)).toContainEqual(expect.objectContaining({ msg: "refused peer request", from: "127.0.0.1", reason: "unsigned request (no cluster secret?)" }));
    // Secrets never reach a log, not even the start-up summary.
    for (const n of [a, b, c, rogue]) {
      expect(n.log()).toContain('"clusterSecret":true');
      expect(n.log()).not.toContain(SECRET);
      expect(n.log()).not.toContain(TOKEN);
    }
    // One line per refusal, from the guard: the generic HTTP refusal line leaves peer routes to it.
    expect(a.log()).not.toMatch(/"msg":"auth refusal"[^\n]*"route":"\/internal\//);
  }, 30_000);

  test("with --token, clients need it (401 envelope); the read token reads and cannot write (403); probes stay open", async () => {
    h = new Harness();
    const n = await h.start("t", { extraArgs: ["--token", TOKEN, "--read-token", "read-only-token"] });
    const noToken = await fetch(`${n.url}/items/k`);
    expect(noToken.status).toBe(401);
    expect(((await noToken.json()) as { error: { code: string } }).error.code).toBe("UNAUTHORIZED");
    expect((await fetch(`${n.url}/healthz`)).status).toBe(200);
    await putItem(n, "k", "v", TOKEN);
    const read = await fetch(`${n.url}/items/k`, { headers: auth("read-only-token") });
    expect(((await read.json()) as { value: string }).value).toBe("v");
    const write = await fetch(`${n.url}/items/k`, { method: "DELETE", headers: auth("read-only-token") });
    expect(write.status).toBe(403);
    expect(((await write.json()) as { error: { code: string } }).error.code).toBe("FORBIDDEN");
    const r = (await view(n, "read-only-token")).refusals;
    expect([r.clientUnauthorized, r.clientForbidden]).toEqual([1, 1]);
  });
});
