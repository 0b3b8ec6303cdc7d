import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PeerGuard, PeerSigner, SIGNATURE_HEADERS } from "../../src/cluster/protocol/signing.ts";
import { FAST_TIMINGS, resolveConfig, type NodeOptions } from "../../src/config.ts";
import { rawExchange } from "../support/raw-http.ts";
import { MakhzenError } from "../../src/errors.ts";
import { createNode, type MakhzenNode } from "../../src/node.ts";
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "../../src/cluster/protocol/messages.ts";
import { recordsRequest } from "../../src/cluster/protocol/record-wire.ts";
import { isLoopbackHost, newRefusals, protectedModeProblem, urlIsLoopback } from "../../src/ops/security.ts";
import { namingFlags } from "../../src/cli/serve-flags.ts";
import { HttpTransport, KEPT_ANSWER_MAX_BYTES } from "../../src/cluster/protocol/http-transport.ts";
import { PeerError } from "../../src/cluster/protocol/peer-ops.ts";
import { createLogger } from "../../src/ops/log.ts";
import { call, expectErrorEnvelope, rng } from "../support/http.ts";
import { eventually } from "../support/proc.ts";
import { closeAfterEach } from "../support/cleanup.ts";

const TOKEN = "write-token-1";
const READ = "read-token-1";
const SECRET = "cluster-secret-0123456789";

const track = closeAfterEach();
const start = (o: NodeOptions): MakhzenNode => track(createNode({ port: 0, ...o }));

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

test("a token that is the cluster secret is refused (a client holding the secret can sign peer requests: a read token that writes)", () => {
  expect(() => resolveConfig({ token: TOKEN, readToken: SECRET, clusterSecret: SECRET })).toThrow("readToken must differ from clusterSecret");
  expect(() => resolveConfig({ token: SECRET, clusterSecret: SECRET })).toThrow("token must differ from clusterSecret");
  expect(() => resolveConfig({ token: TOKEN, readToken: "r".repeat(16), clusterSecret: SECRET })).not.toThrow();
});

test("a node serving https may not advertise http: no peer could reach it (the cluster's scheme check saw only the URL)", () => {
  const tls = { tlsCertFile: "c.pem", tlsKeyFile: "k.pem" };
  expect(() => resolveConfig({ ...tls, advertise: "http://10.0.0.1:3000", insecure: true })).toThrow(
    'advertise is "http://10.0.0.1:3000", plain http, but this node serves https (tlsCertFile): peers could not reach it; advertise its https:// URL',
  );
  expect(namingFlags('advertise is "http://x:1", plain http, but this node serves https (tlsCertFile)')).toBe('--advertise is "http://x:1", plain http, but this node serves https (--tls-cert)');
  expect(() => resolveConfig({ ...tls, advertise: "https://10.0.0.1:3000", insecure: true })).not.toThrow();
  // A plain node behind a TLS proxy advertises https: its own business.
  expect(() => resolveConfig({ advertise: "https://10.0.0.1:3000", insecure: true })).not.toThrow();
});

describe("protected mode", () => {
  test("loopback is 127.0.0.0/8, ::1 and localhost", () => {
    for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1", "[::ffff:7f00:1]", "::ffff:7f01:203"]) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ["0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "128.0.0.1", "example.com", "127.0.0.1.nip.io", "::ffff:a00:1", "::ffff:8000:1"]) expect(isLoopbackHost(h)).toBe(false);
  });

  test("beyond loopback without token is refused, naming the options token and insecure (the CLI: --token and --insecure)", () => {
    const why = protectedModeProblem(resolveConfig({ host: "0.0.0.0" }))!;
    // An embedder set options, not flags: none is named as a flag.
    expect(why).toBe(
      'refusing to listen on "0.0.0.0" without token: anyone who can reach the node could read and write every key. Set token, listen on 127.0.0.1, or accept the risk with insecure',
    );
    expect(namingFlags(why)).toBe(
      'refusing to listen on "0.0.0.0" without --token: anyone who can reach the node could read and write every key. Set --token, listen on 127.0.0.1, or accept the risk with --insecure',
    );
    expect(protectedModeProblem(resolveConfig({ host: "0.0.0.0", insecure: true }))).toBeUndefined();
  });

  test("beyond loopback, or with peers beyond it, needs clusterSecret too (the CLI: --cluster-secret)", () => {
    expect(protectedModeProblem(resolveConfig({ host: "0.0.0.0", token: TOKEN }))).toContain("without clusterSecret");
    const why = protectedModeProblem(resolveConfig({ peers: ["http://10.0.0.2:3000"] }))!;
    expect(why).not.toContain("--");
    // A URL is quoted, so the CLI's rewording leaves it alone.
    expect(namingFlags(why)).toStartWith('refusing to start with the peer "http://10.0.0.2:3000" beyond loopback without --cluster-secret:');
    expect(namingFlags(why)).toEndWith("Set the same --cluster-secret on every node, or accept the risk with --insecure");
    // An advertised URL is this node, not a peer: named as what it is.
    expect(namingFlags(protectedModeProblem(resolveConfig({ advertise: "http://10.0.0.2:3000" }))!)).toStartWith('refusing to start advertising "http://10.0.0.2:3000", beyond loopback, without --cluster-secret:');
    expect(protectedModeProblem(resolveConfig({ host: "0.0.0.0", token: TOKEN, clusterSecret: SECRET }))).toBeUndefined();
    expect(protectedModeProblem(resolveConfig({ peers: ["http://10.0.0.2:3000"], clusterSecret: SECRET }))).toBeUndefined();
    expect(protectedModeProblem(resolveConfig({ peers: ["http://127.0.0.1:3001", "http://localhost:3002"] }))).toBeUndefined();
    expect(protectedModeProblem(resolveConfig({}))).toBeUndefined();
  });

  test("listen() refuses before binding and closes the node", async () => {
    const node = start({ peers: ["http://10.0.0.2:3000"] });
    const e = await node.listen().catch((err) => err);
    expect(e).toBeInstanceOf(MakhzenError);
    expect((e as MakhzenError).code).toBe("PROTECTED_MODE");
    await expect(node.listen()).rejects.toThrow("closed");
  });

  test("token and secret options are validated", () => {
    const bad = (o: NodeOptions) => expect(() => resolveConfig(o)).toThrow(MakhzenError);
    bad({ token: "has space" });
    bad({ token: "" });
    bad({ readToken: READ }); // without a write token every client may write anyway
    bad({ token: TOKEN, readToken: TOKEN });
    bad({ clusterSecret: "short" });
    bad({ tlsCertFile: "/x.pem" }); // without a key
    // A number from an app's config (a PIN-like token) is named as the wrong type, not as bad characters.
    expect(() => resolveConfig({ token: 12345678 as unknown as string })).toThrow("token must be a string, not number");
    expect(() => resolveConfig({ clusterSecret: null as unknown as string })).toThrow("clusterSecret must be a string, not null");
    expect(() => resolveConfig({ token: TOKEN, readToken: READ, clusterSecret: SECRET })).not.toThrow();
  });

  test("an unreadable certificate stops createNode with the option and the path", () => {
    expect(() => createNode({ tlsCertFile: "/nonexistent/cert.pem", tlsKeyFile: "/nonexistent/key.pem" })).toThrow(
      /tlsCertFile "\/nonexistent\/cert.pem" cannot be read: ENOENT/,
    );
  });

  test("an endless file is refused past 4 MiB, not read into memory; an encrypted key is said to be one", async () => {
    // /dev/zero was read whole: GBs of RSS in seconds, and no answer.
    expect(() => createNode({ tlsCertFile: "/dev/zero", tlsKeyFile: "/dev/zero" })).toThrow('tlsCertFile "/dev/zero" is larger than 4 MiB, more than any certificate chain, key or CA bundle holds');
    const dir = mkdtempSync(join(tmpdir(), "makhzen-enc-"));
    try {
      const key = join(dir, "enc.key");
      const made = Bun.spawnSync(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes-128-cbc", "-pass", "pass:pw", "-out", key]);
      expect(made.exitCode).toBe(0);
      const { loadTls } = await import("../../src/ops/tls.ts");
      expect(() => loadTls({ tlsKeyFile: key })).toThrow(`tlsKeyFile "${key}" is encrypted (under a passphrase), which the node cannot use`);
      // The traditional form, with a Proc-Type header (openssl ec -aes256).
      const ec = join(dir, "ec.key");
      expect(Bun.spawnSync(["openssl", "ec", "-in", key, "-passin", "pass:pw", "-aes256", "-passout", "pass:pw", "-out", ec]).exitCode).toBe(0);
      expect(readFileSync(ec, "utf8")).toContain("Proc-Type: 4,ENCRYPTED");
      expect(() => loadTls({ tlsKeyFile: ec })).toThrow("is encrypted (under a passphrase)");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("an expired or expiring served certificate is warned of at start, and still served", async () => {
  const dir = mkdtempSync(join(tmpdir(), "makhzen-cert-"));
  try {
    const [key, cert] = [join(dir, "n.key"), join(dir, "n.crt")];
    // Valid for one day from now: within the 14 days warned of.
    const made = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"]);
    expect(made.exitCode).toBe(0);
    const lines: Record<string, unknown>[] = [];
    const n = track(createNode({ port: 0, tlsCertFile: cert, tlsKeyFile: key, logger: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }) }));
    expect(lines.find((l) => l.level === "warn")?.msg).toMatch(/^the served TLS certificate expires at 20\d\d-.*: renew it, then restart the nodes one at a time$/);
    // Two days on, by the node's clock: expired, and said so.
    track(createNode({ port: 0, tlsCertFile: cert, tlsKeyFile: key, wallClock: () => Date.now() + 2 * 86_400_000, logger: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }) }));
    expect(lines.filter((l) => l.level === "warn").at(-1)?.msg).toMatch(/^the served TLS certificate expired at .*: clients and peers that verify it refuse every connection$/);
    expect((await n.listen()).url).toStartWith("https://");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("client tokens", () => {
  test("without a token configured, nothing asks for one", async () => {
    const node = start({});
    expect((await call(node, "PUT", "/items/a", { body: { value: "1" } })).status).toBe(200);
    expect((await call(node, "GET", "/items/a")).status).toBe(200);
    expect((await call(node, "GET", "/openapi")).json.security).toBeUndefined();
  });

  test("every client route needs the token; /healthz and /readyz do not", async () => {
    const node = start({ token: TOKEN });
    const routes: [string, string, unknown?][] = [
      ["GET", "/items/a"],
      ["PUT", "/items/a", { value: "x" }],
      ["DELETE", "/items/a"],
      ["GET", "/items"],
      ["GET", "/buckets/b/items/a"],
      ["PUT", "/buckets/b/items/a", { value: "x" }],
      ["GET", "/buckets"],
      ["GET", "/cluster"],
      ["GET", "/dump"],
      ["POST", "/load", "{}"],
      ["GET", "/openapi"],
      ["GET", "/no-such-route"],
    ];
    for (const [method, path, body] of routes) {
      for (const headers of [{}, bearer("wrong"), { authorization: `Basic ${btoa("u:" + TOKEN)}` }]) {
        const a = await call(node, method, path, { body, headers });
        expectErrorEnvelope(a, 401, "UNAUTHORIZED");
        expect(a.headers.get("www-authenticate")).toContain("Bearer");
      }
    }
    expect(node.refusals.clientUnauthorized).toBe(routes.length * 3);
    expect((await call(node, "GET", "/healthz")).status).toBe(200);
    expect((await call(node, "GET", "/readyz")).status).toBe(200); // open without a token (a lone node is ready from the start)
    // Nothing was written by the refused requests.
    expect(node.bucket().get("a")).toBeUndefined();

    expect((await call(node, "PUT", "/items/a", { body: { value: "x" }, headers: bearer(TOKEN) })).status).toBe(200);
    expect((await call(node, "GET", "/items/a", { headers: bearer(TOKEN) })).json.value).toBe("x");
    const doc = (await call(node, "GET", "/openapi", { headers: bearer(TOKEN) })).json;
    expect(doc.components.securitySchemes.bearer).toEqual({ type: "http", scheme: "bearer" });
    expect(doc.security).toEqual([{ bearer: [] }]);
    expect(doc.paths["/healthz"].get.security).toEqual([]); // open: no token needed
    expect((await call(node, "DELETE", "/items/a", { headers: bearer(TOKEN) })).status).toBe(204);
  });

  test("a read token reads everything, /dump and /cluster included, and writes nothing", async () => {
    const node = start({ token: TOKEN, readToken: READ });
    node.bucket().set("k", "v");
    const r = bearer(READ);
    expect((await call(node, "GET", "/items/k", { headers: r })).json.value).toBe("v");
    expect((await call(node, "GET", "/items", { headers: r })).status).toBe(200);
    expect((await call(node, "GET", "/buckets", { headers: r })).status).toBe(200);
    expect((await call(node, "GET", "/cluster", { headers: r })).status).toBe(200);
    expect((await call(node, "GET", "/dump", { headers: r })).text).toContain('"key":"k"');
    for (const [method, path, body] of [
      ["PUT", "/items/k", { value: "w" }],
      ["DELETE", "/items/k", undefined],
      ["PUT", "/buckets/b/items/k", { value: "w" }],
      ["POST", "/load", JSON.stringify({ bucket: "default", key: "k", value: "w", version: "999999999999999-000000-x" })],
    ] as const) {
      expectErrorEnvelope(await call(node, method, path, { body, headers: r }), 403, "FORBIDDEN");
    }
    expect(node.refusals.clientForbidden).toBe(4);
    expect(node.bucket().get("k")!.value).toBe("v");
  });

  test("without a cluster secret the peer API needs the write token, which peers send; with one, the secret guards it", async () => {
    const records = JSON.stringify(recordsRequest([{ bucket: "default", key: "via-peer-api", value: "x", version: `${String(Date.now()).padStart(15, "0")}-000000-p` }]));
    const headers = (extra: Record<string, string>) => ({ "content-type": "application/json", [PROTOCOL_HEADER]: PROTOCOL_VERSION, ...extra });
    const node = start({ token: TOKEN, readToken: READ });
    for (const h of [{}, bearer(READ), bearer("wrong")]) {
      expectErrorEnvelope(await call(node, "POST", "/internal/records", { body: records, headers: headers(h) }), 401, "UNAUTHORIZED");
    }
    // The read token is valid, it just may not use the peer API: said so, not "not valid".
    const read = await call(node, "POST", "/internal/records", { body: records, headers: headers(bearer(READ)) });
    expect(read.json.error.message).toBe("the read token cannot use the peer API (/internal/): members send the write token");
    expect(node.bucket().get("via-peer-api")).toBeUndefined();
    expect((await call(node, "POST", "/internal/records", { body: records, headers: headers(bearer(TOKEN)) })).status).toBe(200);
    expect(node.bucket().get("via-peer-api")?.value).toBe("x");

    // Two nodes sharing the token replicate: the transport sends it.
    const a = start({ name: "a", token: TOKEN, ...FAST_TIMINGS });
    const { url } = await a.listen();
    const b = start({ name: "b", token: TOKEN, peers: [url], ...FAST_TIMINGS });
    await b.listen();
    a.bucket().set("k", "v");
    await eventually(() => b.bucket().get("k")?.value === "v", { what: "k replicated with the token" });

    // Under a cluster secret the token is not what guards /internal/: the signature is.
    const guarded = start({ token: TOKEN, clusterSecret: SECRET });
    expectErrorEnvelope(await call(guarded, "POST", "/internal/records", { body: records, headers: headers(bearer(TOKEN)) }), 401, "CLUSTER_AUTH");
  });

  test("over a real socket, a dot-segment path cannot slip past the check through /internal/", async () => {
    const node = start({ token: TOKEN });
    const { port } = await node.listen();
    node.bucket().set("secret", "s");
    // Raw, so the request line reaches the server exactly as written (fetch would normalize it).
    const raw = await rawExchange(port, "GET /internal/../items/secret HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    // Bun resolves the dot segments before anyone sees the path: this is GET /items/secret, and needs the token.
    expect(raw.status).toBe(401);
    expect(raw.body).not.toContain('"value":"s"');
  });
});

describe("cluster secret on the peer API", () => {
  const scanBody = JSON.stringify({ limit: 10 });
  const recordsBody = JSON.stringify(recordsRequest([{ bucket: "default", key: "injected", value: "evil", version: `${String(Date.now()).padStart(15, "0")}-000000-rogue` }]));
  const peerHeaders = (extra: Record<string, string> = {}) => ({
    "content-type": "application/json",
    [PROTOCOL_HEADER]: PROTOCOL_VERSION,
    ...extra,
  });

  test("unsigned, wrongly signed, tampered and replayed requests are refused and counted; a signed one passes", async () => {
    const node = start({ clusterSecret: SECRET });
    const post = (path: string, body: string, headers: Record<string, string>) => call(node, "POST", path, { body, headers: peerHeaders(headers) });
    const ours = new PeerSigner({ secret: SECRET });
    const theirs = new PeerSigner({ secret: "another-secret-0123456789" });

    expectErrorEnvelope(await post("/internal/records", recordsBody, {}), 401, "CLUSTER_AUTH");
    expectErrorEnvelope(await post("/internal/records", recordsBody, theirs.sign("POST", "/internal/records", recordsBody, Date.now())), 401, "CLUSTER_AUTH");
    const tampered = ours.sign("POST", "/internal/records", JSON.stringify({ records: [] }), Date.now());
    expectErrorEnvelope(await post("/internal/records", recordsBody, tampered), 401, "CLUSTER_AUTH");
    const otherRoute = ours.sign("POST", "/internal/scan", recordsBody, Date.now());
    expectErrorEnvelope(await post("/internal/records", recordsBody, otherRoute), 401, "CLUSTER_AUTH");
    const stale = ours.sign("POST", "/internal/records", recordsBody, Date.now() - 120_000);
    expectErrorEnvelope(await post("/internal/records", recordsBody, stale), 401, "CLUSTER_AUTH");
    expect(node.bucket().get("injected")).toBeUndefined();
    expect(node.refusals.peerRequests).toBe(5);

    const good = ours.sign("POST", "/internal/scan", scanBody, Date.now());
    const a = await post("/internal/scan", scanBody, good);
    expect(a.status).toBe(200);
    // The answer is signed too, bound to this request's nonce.
    expect(a.headers.get(SIGNATURE_HEADERS.signature)).toBeTruthy();
    expectErrorEnvelope(await post("/internal/scan", scanBody, good), 401, "CLUSTER_AUTH"); // the replay
    expect(node.refusals.peerRequests).toBe(6);
    // The refusals are visible in /cluster.
    expect((await call(node, "GET", "/cluster")).json.refusals.peerRequests).toBe(6);
  });

  test("nodes with the same secret replicate; a node with another secret or none can neither join nor be joined", async () => {
    const a = start({ name: "a", clusterSecret: SECRET, ...FAST_TIMINGS });
    const { url: aUrl } = await a.listen();
    const b = start({ name: "b", clusterSecret: SECRET, peers: [aUrl], ...FAST_TIMINGS });
    await b.listen();
    a.bucket().set("k", "v");
    await eventually(() => b.bucket().get("k")?.value === "v", { what: "k replicated to b" });

    const rogue = start({ name: "rogue", clusterSecret: "another-secret-0123456789", peers: [aUrl], ...FAST_TIMINGS });
    await rogue.listen(); // serves alone: its seed refused it
    expect(a.refusals.peerRequests).toBeGreaterThan(0);
    expect(a.members().map((m) => m.name)).toEqual(["a", "b"]);
    expect(rogue.members().map((m) => m.name)).toEqual(["rogue"]);

    // A node without a secret accepts anyone; a secured node joining through it refuses its answer.
    const open = start({ name: "open", ...FAST_TIMINGS });
    const { url: openUrl } = await open.listen();
    const c = start({ name: "c", clusterSecret: SECRET, peers: [openUrl, aUrl], ...FAST_TIMINGS });
    await c.listen();
    expect(c.refusals.peerAnswers).toBeGreaterThan(0);
    await eventually(() => c.members().filter((m) => m.state === "alive").length === 3, { what: "c joined a and b" });
    expect(c.members().map((m) => m.name)).not.toContain("open");
    // "open" took c's join, so it sends c its writes: c refuses them all.
    open.bucket().set("from-open", "x");
    await eventually(() => c.refusals.peerRequests > 0, { what: "c refuses open's requests" });
    a.bucket().set("after", "y");
    await eventually(() => c.bucket().get("after")?.value === "y", { what: "a's write reaches c" });
    expect(c.bucket().get("from-open")).toBeUndefined();
    expect(open.bucket().get("after")).toBeUndefined();
  });

  test("random forgeries on every peer route are refused and change nothing", async () => {
    const node = start({ clusterSecret: SECRET });
    const random = rng(7);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    const ops = ["join", "gossip", "leave", "records", "groups", "leaves", "keys", "fetch", "scan"] as const;
    const forger = new PeerSigner({ secret: SECRET.slice(0, -1) + "x" });
    const genuine = new PeerSigner({ secret: SECRET });
    for (let i = 0; i < 300; i++) {
      const op = pick(ops);
      const body = pick([recordsBody, scanBody, "{}", "not json", ""]);
      const now = Date.now();
      const headers = pick([
        () => ({}),
        () => forger.sign("POST", `/internal/${op}`, body, now),
        () => genuine.sign("POST", `/internal/${pick(ops)}x`, body, now), // signed for another route
        () => genuine.sign("POST", `/internal/${op}`, body + " ", now), // signed for another body
        () => genuine.sign("POST", `/internal/${op}`, body, now + pick([-1, 1]) * (31_000 + Math.floor(random() * 1e6))), // outside the window
        () => ({ ...genuine.sign("POST", `/internal/${op}`, body, now), [SIGNATURE_HEADERS.signature]: "0".repeat(64) }),
        () => ({ ...genuine.sign("POST", `/internal/${op}`, body, now), [SIGNATURE_HEADERS.timestamp]: String(now + 1) }),
      ])();
      const a = await call(node, "POST", `/internal/${op}`, { body, headers: peerHeaders(headers) });
      expectErrorEnvelope(a, 401, "CLUSTER_AUTH");
    }
    expect(node.refusals.peerRequests).toBe(300);
    expect(node.bucket().get("injected")).toBeUndefined();
    expect(node.members().map((m) => m.name)).toEqual([node.name]);
  });

  test("refusals are counted every time and logged once per peer and reason every 10 s", () => {
    let now = 1_800_000_000_000;
    const lines: Record<string, unknown>[] = [];
    const refusals = newRefusals();
    const log = createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)), wallClock: () => now });
    const guard = new PeerGuard({ secret: SECRET, wallClock: () => now, refusals, log });
    const refuse = (from: string) => expect(() => guard.checkSigned("/internal/gossip", new Headers(), from)).toThrow(MakhzenError);
    for (let i = 0; i < 5; i++) refuse("10.0.0.9");
    refuse("10.0.0.8");
    expect(refusals.peerRequests).toBe(6);
    expect(lines.map((l) => [l.from, l.alsoRefusedSinceLastLine])).toEqual([["10.0.0.9", 0], ["10.0.0.8", 0]]);
    now += 10_000;
    refuse("10.0.0.9");
    expect(lines.map((l) => [l.from, l.alsoRefusedSinceLastLine])).toEqual([["10.0.0.9", 0], ["10.0.0.8", 0], ["10.0.0.9", 4]]);
    expect(lines[0]).toMatchObject({ level: "warn", msg: "refused peer request", route: "/internal/gossip", reason: "unsigned request (no cluster secret?)" });
  });

  test("the transport refuses an answer from a peer that cannot prove the secret", async () => {
    const open = start({ name: "open" });
    const { url } = await open.listen();
    const refusals = newRefusals();
    const lines: string[] = [];
    const log = createLogger({ format: "json", write: (l) => lines.push(l) });
    const guard = new PeerGuard({ secret: SECRET, wallClock: Date.now, refusals, log });
    const e = await new HttpTransport({ guard }).call(url, "groups", {}, 2000).catch((err) => err);
    expect(e).toBeInstanceOf(PeerError);
    expect((e as PeerError).code).toBe("CLUSTER_AUTH");
    expect(refusals.peerAnswers).toBe(1);
    expect(lines.map((l) => JSON.parse(l))).toMatchObject([
      { level: "warn", msg: "refused peer answer", route: "/internal/groups", from: url, reason: "unsigned answer (no cluster secret?)", alsoRefusedSinceLastLine: 0 },
    ]);
  });
});

test("a peer's unsigned refusal (made before it could check our signature) is said with its status, not as a missing secret", async () => {
  // A secured peer answers 503 while its peer bodies are all being read, unsigned (it has proved nothing of
  // the request yet): the caller logged "unsigned answer (no cluster secret?)", sending operators after a secret.
  using busy = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ error: { code: "UNAVAILABLE", message: "too many peer requests" } }, { status: 503 }) });
  const lines: Record<string, unknown>[] = [];
  const guard = new PeerGuard({ secret: SECRET, wallClock: Date.now, refusals: newRefusals(), log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }) });
  const e = await new HttpTransport({ guard }).call(`http://127.0.0.1:${busy.port}`, "groups", {}, 2000).catch((err) => err);
  expect((e as PeerError).code).toBe("CLUSTER_AUTH");
  expect(lines[0]?.reason).toBe("unsigned HTTP 503 answer (refused before our signature was checked, or no cluster secret there)");
});

test("a joiner whose secret differs from the seed's is told so, as the seed logs it (it read \"refused before our signature was checked\")", async () => {
  const seed = start({ name: "seed", clusterSecret: SECRET });
  const { url } = await seed.listen();
  const lines: Record<string, unknown>[] = [];
  const guard = new PeerGuard({ secret: "another-secret-0123456789", wallClock: Date.now, refusals: newRefusals(), log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }) });
  const e = await new HttpTransport({ guard }).call(url, "groups", {}, 2000).catch((err) => err);
  expect((e as PeerError).code).toBe("CLUSTER_AUTH");
  expect(lines[0]?.reason).toBe("unsigned HTTP 401 answer (the peer refused our signature: a different cluster secret there, or none)");
});

describe("without a cluster secret, the token goes to loopback peers only", () => {
  test("a member learned beyond loopback is not sent the write token (protected mode checked only the flags)", async () => {
    const seen: (string | null)[] = [];
    using server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => (seen.push(req.headers.get("authorization")), Response.json({ groups: [] })),
    });
    // As node.ts builds it without --cluster-secret or --insecure.
    const transport = new HttpTransport({ token: "write-token", tokenTo: urlIsLoopback });
    await transport.call(`http://127.0.0.1:${server.port}`, "groups", {}, 2000).catch(() => undefined);
    // 0.0.0.0 reaches this host, but it is no loopback name: as a member a seed's answer listed there.
    await transport.call(`http://0.0.0.0:${server.port}`, "groups", {}, 2000).catch(() => undefined);
    expect(seen).toEqual(["Bearer write-token", null]);
    expect([urlIsLoopback("http://[::ffff:7f00:1]:1"), urlIsLoopback("http://10.0.0.2:1"), urlIsLoopback("not a url")]).toEqual([true, false, false]);
  });

  test("a node without a secret sends its token to loopback peers: a cluster on one machine still works", async () => {
    const a = start({ name: "ta", token: "tok-tok" });
    const { url } = await a.listen();
    const b = start({ name: "tb", token: "tok-tok", peers: [url], ...FAST_TIMINGS });
    await b.listen();
    await eventually(() => a.members().some((m) => m.name === "tb" && m.state === "alive"), { what: "a sees b" });
  });
});

describe("a peer's redirect is not followed", () => {
  test("a seed URL answering 307 elsewhere is an error, not a join somewhere else", async () => {
    let reached = 0;
    using elsewhere = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => (reached++, Response.json({ groups: [] })) });
    using redirecting = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: (req) => Response.redirect(`http://127.0.0.1:${elsewhere.port}${new URL(req.url).pathname}`, 307),
    });
    const e = await new HttpTransport({ token: "t" }).call(`http://127.0.0.1:${redirecting.port}`, "groups", {}, 2000).catch((err) => err);
    expect(e).toBeInstanceOf(PeerError);
    expect(reached).toBe(0);
  });
});

describe("an unsigned answer is refused before its body is read", () => {
  test("a stranger on a seed's URL answering without a signature is refused at its headers", async () => {
    let pulled = 0;
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    // Endless, unsigned: before, a secured node read it to its cap, then refused it, at every retry.
    using server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => new Response(new ReadableStream({ pull: (c) => void ((pulled += chunk.length), c.enqueue(chunk)) })),
    });
    const guard = new PeerGuard({ secret: SECRET, wallClock: Date.now, refusals: newRefusals(), log: createLogger({ format: "json", write: () => {} }) });
    const e = await new HttpTransport({ guard, maxAnswerBytes: 8 * 1024 * 1024 }).call(`http://127.0.0.1:${server.port}`, "groups", {}, 5000).catch((err) => err);
    // Refused for its missing signature, not read to the cap first (ANSWER_TOO_LARGE, before).
    expect((e as PeerError).code).toBe("CLUSTER_AUTH");
    expect(pulled).toBeGreaterThan(0);
  });
});

describe("an answer whose headers only look signed is refused before its body is read", () => {
  // What a stranger on a dead member's address (or a seed's) can make without the secret: before, a secured node
  // read each such answer to its 256 MiB cap before checking the signature, and went past 2 GB.
  const forgedHeaders = () => ({
    [SIGNATURE_HEADERS.timestamp]: String(Date.now()),
    [SIGNATURE_HEADERS.nonce]: `n-${Math.random()}`,
    [SIGNATURE_HEADERS.bodyHash]: "cd".repeat(32),
    [SIGNATURE_HEADERS.signature]: "ab".repeat(32),
  });
  const chunk = new TextEncoder().encode("x".repeat(64 * 1024));

  test("on the fetch path: an endless answer is refused at its headers, as a bad signature", async () => {
    let pulled = 0;
    using server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => new Response(new ReadableStream({ pull: (c) => void ((pulled += chunk.length), c.enqueue(chunk)) }), { headers: forgedHeaders() }),
    });
    const lines: Record<string, unknown>[] = [];
    const guard = new PeerGuard({ secret: SECRET, wallClock: Date.now, refusals: newRefusals(), log: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }) });
    const e = await new HttpTransport({ guard, maxAnswerBytes: 64 * 1024 * 1024 }).call(`http://127.0.0.1:${server.port}`, "groups", {}, 10_000).catch((err) => err);
    expect((e as PeerError).code).toBe("CLUSTER_AUTH");
    expect(lines[0]?.reason).toBe("bad signature (different cluster secret?)");
    // Refused at its headers: the stream was pulled a few chunks ahead at most, never read to the cap (64 MiB).
    expect(pulled).toBeLessThan(8 * 1024 * 1024);
  });

  test("on a kept connection (records): an answer past 2 MiB is refused unread past it, whatever the transport's cap", async () => {
    let sent = 0;
    using server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => {
        const body = "x".repeat(KEPT_ANSWER_MAX_BYTES + 1);
        sent += body.length;
        return new Response(body, { headers: forgedHeaders() });
      },
    });
    const guard = new PeerGuard({ secret: SECRET, wallClock: Date.now, refusals: newRefusals(), log: createLogger({ format: "json", write: () => {} }) });
    const transport = new HttpTransport({ guard, maxAnswerBytes: 256 * 1024 * 1024 });
    const e = await transport.call(`http://127.0.0.1:${server.port}`, "records", recordsRequest([]), 10_000).catch((err) => err);
    expect(sent).toBe(KEPT_ANSWER_MAX_BYTES + 1);
    expect((e as PeerError).code).toBe("ANSWER_TOO_LARGE");
    // One that fits is read, then refused for its signature.
    using small = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ applied: 0, refused: 0 }, { headers: forgedHeaders() }) });
    const e2 = await transport.call(`http://127.0.0.1:${small.port}`, "records", recordsRequest([]), 10_000).catch((err) => err);
    expect((e2 as PeerError).code).toBe("CLUSTER_AUTH");
    transport.close();
  });

  test("on a kept connection: a chunk-size line that never ends is refused, not kept whole", async () => {
    // A stranger answered records with `1;` and then 500 MiB of one line: each call held ~136 MB until its timeout.
    let written = 0;
    using server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket) {
          socket.write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
          const line = "a".repeat(64 * 1024);
          const more = () => {
            while (written < 64 * 1024 * 1024 && socket.write(line) > 0) written += line.length;
          };
          more();
          (socket as unknown as { data: () => void }).data = more;
        },
        drain(socket) {
          (socket as unknown as { data?: () => void }).data?.();
        },
      },
    });
    const guard = new PeerGuard({ secret: SECRET, wallClock: Date.now, refusals: newRefusals(), log: createLogger({ format: "json", write: () => {} }) });
    const transport = new HttpTransport({ guard });
    const e = await transport.call(`http://127.0.0.1:${server.port}`, "records", recordsRequest([]), 20_000).catch((err) => err);
    expect((e as PeerError).code).toBe("BAD_ANSWER");
    expect((e as PeerError).message).toContain("malformed chunk");
    transport.close();
  });
});

describe("peer bodies: none read for a stranger, and a bounded number at once for a peer", () => {
  test("headers that only look signed are refused unread, however many wait; a peer's held bodies are bounded at 8, then 503 at once", async () => {
    const node = start({ name: "held", clusterSecret: SECRET, bodyTimeoutMs: 20_000 });
    const { port } = await node.listen();
    const { requestLimits } = await import("../../src/http/limits.ts");
    const max = requestLimits(node.config).peerBodyBytes;
    const headOf = (signature: Record<string, string>) =>
      `POST /internal/records HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n${PROTOCOL_HEADER}: ${PROTOCOL_VERSION}\r\n` +
      Object.entries(signature).map(([k, v]) => `${k}: ${v}\r\n`).join("") +
      `Content-Length: ${max}\r\n\r\n{"rec`;
    // Well-formed, current, never seen: what a stranger can make without the secret. Its body was read and
    // held against the peers' budget for --body-timeout: eight such connections refused every real peer (503),
    // which then declared the node dead.
    const forged = (i: number) =>
      headOf({ [SIGNATURE_HEADERS.timestamp]: String(Date.now()), [SIGNATURE_HEADERS.nonce]: `n${i}-${Math.random()}`, [SIGNATURE_HEADERS.bodyHash]: "cd".repeat(32), [SIGNATURE_HEADERS.signature]: "ab".repeat(32) });
    for (let i = 0; i < 12; i++) {
      const answer = await rawExchange(port, forged(i), { timeoutMs: 5000 });
      expect({ status: answer.status, refused: answer.body.includes("bad signature") }).toEqual({ status: 401, refused: true });
    }
    // A peer's (signed with the secret) whose bodies are slow: eight are read at once, the ninth is refused at its head.
    const peer = new PeerSigner({ secret: SECRET });
    const signed = () => headOf(peer.sign("POST", "/internal/records", "x".repeat(max), Date.now()));
    const held: Bun.Socket[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        held.push(await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }));
        held.at(-1)!.write(signed());
      }
      await eventually(async () => {
        const ninth = await rawExchange(port, signed(), { timeoutMs: 2000 }).catch(() => undefined);
        return ninth?.status === 503 && ninth.body.includes("too many peer requests");
      }, { timeoutMs: 10_000, what: "the ninth refused" });
    } finally {
      for (const s of held) s.end();
    }
    // Once they are gone, a request is read again (and refused: its body is not the one its hash was signed for).
    const short = () => signed().replace(`Content-Length: ${max}`, "Content-Length: 5");
    await eventually(async () => (await rawExchange(port, short(), { timeoutMs: 2000 }).catch(() => undefined))?.status === 401, { timeoutMs: 10_000, what: "read again" });
  });
});

describe("abuse limits", () => {
  test("a peer answer over the cap is refused before it is buffered, with or without a length", async () => {
    const big = "x".repeat(64 * 1024);
    using server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        if (new URL(req.url).pathname === "/internal/groups") return new Response(big); // with Content-Length
        // Chunked, and endless: only a reader that stops can survive it.
        return new Response(new ReadableStream({ pull: (c) => c.enqueue(new TextEncoder().encode(big)) }));
      },
    });
    const transport = new HttpTransport({ maxAnswerBytes: 1024 });
    for (const op of ["groups", "scan"] as const) {
      const e = await transport.call(`http://127.0.0.1:${server.port}`, op, op === "scan" ? { limit: 1 } : {}, 5000).catch((err) => err);
      expect(e).toBeInstanceOf(PeerError);
      expect((e as PeerError).code).toBe("ANSWER_TOO_LARGE");
    }
  });

  test("a membership answer that says it is longer than any member list is refused at its headers", async () => {
    // Without TLS, a process on a dead member's address relayed a live member's signed gossip answer with
    // 200 MiB of padding: read whole, every heartbeat, before its body hash failed.
    using server = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data: (socket) => void socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${40 * 1024 * 1024}\r\n\r\n{"members":[`) },
    });
    const e = await new HttpTransport({}).call(`http://127.0.0.1:${server.port}`, "members", {}, 5000).catch((err) => err);
    expect((e as PeerError).code).toBe("ANSWER_TOO_LARGE");
  });

  test("a compressed peer answer is refused at its headers: fetch would inflate it past any cap", async () => {
    // 0.6 MB of gzip with Content-Encoding: gzip inflated to 600 MiB in a node whose seed was a stranger.
    const gz = Bun.gzipSync(Buffer.alloc(8 * 1024 * 1024, 32));
    using server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(gz, { headers: { "content-encoding": "gzip" } }) });
    const e = await new HttpTransport({ maxAnswerBytes: 1024 * 1024 }).call(`http://127.0.0.1:${server.port}`, "groups", {}, 5000).catch((err) => err);
    expect((e as PeerError).code).toBe("BAD_ANSWER");
    expect((e as PeerError).message).toContain("answer is compressed (Content-Encoding: gzip)");
  });

  test("a silent keep-alive connection is closed after the idle timeout", async () => {
    const node = start({ idleTimeoutMs: 1000 });
    const { port } = await node.listen();
    const t0 = performance.now();
    // keep-alive: only the server can end it (past 12 s, the exchange gives up, and the bound below fails).
    const raw = await rawExchange(port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", { untilClose: true, timeoutMs: 12_000 });
    expect(raw.status).toBe(200);
    // Bun counts in steps of about 4 s; well under the 30 s default, far under forever.
    expect(performance.now() - t0).toBeLessThan(10_000);
  }, 15_000);

  test("a body that never finishes arriving is answered 408 after the body timeout", async () => {
    const node = start({ bodyTimeoutMs: 100 });
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('{"value":'));
      },
    });
    const a = await call(node, "PUT", "/items/slow", { body });
    expectErrorEnvelope(a, 408, "REQUEST_TIMEOUT");
    expect(node.bucket().get("slow")).toBeUndefined();
  });
});
