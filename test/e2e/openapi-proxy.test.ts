import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { NodeProcess, startNode } from "../support/proc.ts";
import { tempDirs } from "../support/cleanup.ts";

/**
 * An ordinary session against a real node, through Stoplight Prism's validating
 * proxy (`prism proxy --errors`, a devDependency): Prism routes each request by the
 * document the node serves at /openapi, checks the request against it, forwards it,
 * and checks the answer (status, headers, body) against it. A violation of the
 * document is reported in an `sl-violations` header, or, for a body that does not
 * match its schema, replaces the answer with Prism's own 500 (problem+json).
 *
 * Prism runs on Node.js (`node`, which `npm ci` needs anyway); it makes no network
 * call beyond loopback: it reads the document from a file and proxies to the node.
 */
const ROOT = resolve(import.meta.dir, "../..");
const MAIN = resolve(ROOT, "src/cli/main.ts");
const PRISM = resolve(ROOT, "node_modules/@stoplight/prism-cli/dist/index.js");
const tempDir = tempDirs("makhzen-prism-");

interface Step {
  method: string;
  path: string;
  body?: string;
  headers?: Record<string, string>;
  status: number;
}

test("put, get, a missing key, If-None-Match, TTL, list, buckets and delete through Prism's validating proxy: no answer violates the document", async () => {
  const nodeBinary = Bun.which("node");
  if (nodeBinary === null) throw new Error("Prism runs on Node.js, and there is no `node` on the PATH");
  await using node = await startNode([process.execPath, MAIN, "serve", "--port", "0", "--name", "prism-e2e", "--timings", "fast"], { name: "node", cwd: ROOT });
  const docPath = join(tempDir(), "openapi.json");
  writeFileSync(docPath, await (await fetch(`${node.url}/openapi`)).text());

  await using prism = NodeProcess.spawn("prism", [nodeBinary, PRISM, "proxy", "--errors", "--host", "127.0.0.1", "--port", "0", docPath, node.url], { cwd: ROOT });
  // Prism says where it listens only in a coloured line: read its port from its socket.
  await prism.started({ fromSocket: true, timeoutMs: 30_000 });
  await prism.ready({ probe: "/readyz", timeoutMs: 30_000 });

  const violations: string[] = [];
  let sent = 0;
  const send = async (step: Step, name = `${step.method} ${step.path}`) => {
    const res = await fetch(`${prism.url}${step.path}`, { method: step.method, body: step.body, headers: step.headers });
    const body = await res.text();
    const said = res.headers.get("sl-violations");
    if (said !== null) violations.push(`${name} -> ${res.status}: ${said}`);
    if ((res.headers.get("content-type") ?? "").includes("problem+json")) violations.push(`${name} -> Prism answered itself: ${body}`);
    expect({ name, status: res.status }).toEqual({ name, status: step.status });
    sent++;
    return { status: res.status, headers: res.headers, body };
  };
  const JSON_TYPE = { "content-type": "application/json" };
  const putJson = (path: string, body: unknown, status = 200, headers: Record<string, string> = {}) =>
    send({ method: "PUT", path, body: JSON.stringify(body), headers: { ...JSON_TYPE, ...headers }, status });

  // Writes and reads, JSON and raw.
  const put = await putJson("/items/region", { value: "eu-west-1" });
  const etag = put.headers.get("etag")!;
  expect(JSON.parse((await send({ method: "GET", path: "/items/region", status: 200 })).body).value).toBe("eu-west-1");
  expect((await send({ method: "GET", path: "/items/region", headers: { accept: "text/plain" }, status: 200 })).body).toBe("eu-west-1");
  await send({ method: "GET", path: "/items/missing", status: 404 });
  await send({ method: "GET", path: "/items/a%2Fb", status: 404 });
  await putJson("/items/a%2Fb", { value: "slash" });
  expect(JSON.parse((await send({ method: "GET", path: "/items/a%2Fb", status: 200 }, "GET a/b")).body).key).toBe("a/b");

  // Conditional writes.
  await putJson("/items/region", { value: "x" }, 412, { "if-none-match": "*" });
  await putJson("/items/fresh", { value: "new" }, 200, { "if-none-match": "*" });
  await putJson("/items/region", { value: "eu-west-2" }, 200, { "if-match": etag });
  await putJson("/items/region", { value: "eu-west-3" }, 412, { "if-match": etag });

  // TTLs, in a JSON body and beside a raw one.
  const ttl = JSON.parse((await putJson("/items/session", { value: "s", ttl: 60 })).body);
  expect(ttl.expiresAt).toBeGreaterThan(Date.now());
  const raw = await send({ method: "PUT", path: "/items/raw?ttl=60", body: "plain text", headers: { "content-type": "text/plain" }, status: 200 });
  expect(JSON.parse(raw.body)).toMatchObject({ key: "raw", value: "plain text" });

  // Consistency knobs on a lone node: quorum and all are this node; 2 replicas are not there.
  await putJson("/items/k?w=quorum&timeout=1000", { value: "q" });
  await send({ method: "GET", path: "/items/k?r=all&timeout=1000", status: 200 });
  await putJson("/items/k?w=2&timeout=100", { value: "w2" }, 503);

  // Lists, page by page.
  const page1 = JSON.parse((await send({ method: "GET", path: "/items?limit=2", status: 200 })).body);
  expect(page1.items.length).toBe(2);
  await send({ method: "GET", path: `/items?limit=2&cursor=${page1.cursor}`, status: 200 }, "GET page 2");
  await send({ method: "GET", path: "/items?prefix=re", status: 200 });

  // Buckets.
  await putJson("/buckets/users/items/u1", { value: "ada" });
  await send({ method: "GET", path: "/buckets/users/items/u1", status: 200 });
  await send({ method: "GET", path: "/buckets/users/items", status: 200 });
  await send({ method: "GET", path: "/buckets/users/items/nobody", status: 404 });
  expect(JSON.parse((await send({ method: "GET", path: "/buckets", status: 200 })).body).buckets.map((b: { name: string }) => b.name)).toEqual(["default", "users"]);

  // Deletes.
  await send({ method: "DELETE", path: "/items/region", status: 204 });
  await send({ method: "GET", path: "/items/region", status: 404 }, "GET region after delete");
  await send({ method: "DELETE", path: "/items/region", status: 404 }, "DELETE region again");
  await send({ method: "DELETE", path: "/buckets/users/items/u1", headers: { "if-match": '"not-the-version"' }, status: 412 });
  await send({ method: "DELETE", path: "/buckets/users/items/u1", status: 204 });

  // The rest of the API: index, probes, cluster, metrics, the document, a dump and a load.
  for (const path of ["/", "/healthz", "/readyz", "/cluster", "/metrics", "/openapi"]) await send({ method: "GET", path, status: 200 });
  // The cluster routes: where a key lives, and a forget refused (no such member; this node itself).
  expect(JSON.parse((await send({ method: "GET", path: "/cluster/placement?key=region", status: 200 })).body).owners).toEqual(["prism-e2e"]);
  await send({ method: "GET", path: "/cluster/placement?key=region&bucket=users", status: 200 });
  await send({ method: "DELETE", path: "/cluster/members/nobody", status: 404 });
  await send({ method: "DELETE", path: "/cluster/members/prism-e2e", status: 409 });
  const dump = await send({ method: "GET", path: "/dump", status: 200 });
  expect(dump.body.split("\n").filter(Boolean).length).toBeGreaterThan(3);
  await send({ method: "POST", path: "/load", body: dump.body, headers: { "content-type": "application/x-ndjson" }, status: 200 });

  expect(violations).toEqual([]);
  expect(sent).toBeGreaterThan(35);
}, 90_000);
