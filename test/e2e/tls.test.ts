import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { MakhzenClient, MakhzenClientError } from "../../src/client/client.ts";
import { run } from "../support/proc.ts";
import { Harness, NodeProcess, eventually } from "../support/harness.ts";

/**
 * https end to end: a throwaway CA and a certificate for 127.0.0.1 made with
 * openssl, two nodes serving https and replicating to each other over it (with a
 * cluster secret and a token too, the whole secure setup), and clients that trust
 * the CA, or do not.
 */

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const TOKEN = "tls-test-token";
const SECRET = "tls-test-cluster-secret-0123456789";
let dir: string;
let ca: string;

beforeAll(async () => {
  if (!Bun.which("openssl")) throw new Error("these tests need the openssl command to make a throwaway CA; install openssl");
  dir = mkdtempSync(join(tmpdir(), "makhzen-tls-"));
  const ssl = async (...args: string[]) => {
    const r = await run(["openssl", ...args]);
    if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed:\n${r.stderr}`);
  };
  const f = (name: string) => join(dir, name);
  await ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "365", "-subj", "/CN=makhzen test CA");
  await ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f("node.key"), "-out", f("node.csr"), "-subj", "/CN=127.0.0.1");
  await Bun.write(f("ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  await ssl("x509", "-req", "-in", f("node.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f("node.pem"), "-days", "365", "-extfile", f("ext.cnf"));
  ca = readFileSync(f("ca.pem"), "utf8");
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let h: Harness;
afterEach(async () => {
  await h?.cleanup();
});

const tlsArgs = () => ["--tls-cert", join(dir, "node.pem"), "--tls-key", join(dir, "node.key"), "--tls-ca", join(dir, "ca.pem"), "--token", TOKEN, "--cluster-secret", SECRET];

/** Starts a https node (its start-up line says https://) and waits for /readyz over https. */
const startTls = (name: string, peers: NodeProcess[] = []): Promise<NodeProcess> =>
  h.start(name, { peers: peers.map((p) => p.url), extraArgs: tlsArgs(), ca });

describe("TLS", () => {
  test("two https nodes replicate over https; a client trusting the CA reads and writes; one that does not is refused", async () => {
    h = new Harness();
    const a = await startTls("a");
    const b = await startTls("b", [a]);
    expect(a.url).toStartWith("https://");
    const clientA = new MakhzenClient({ url: a.url, token: TOKEN, ca });
    const clientB = new MakhzenClient({ url: b.url, token: TOKEN, ca });
    await eventually(async () => (await clientA.cluster()).members.filter((m) => m.state === "alive").length === 2, {
      what: "a sees b alive",
    });
    expect((await clientA.cluster()).members.map((m) => m.url)).toEqual([a.url, b.url]);

    await clientA.put("over-tls", "secret value");
    await eventually(async () => (await clientB.get("over-tls"))?.value === "secret value", { what: "the write replicated to b over https" });
    await clientB.put("back", "again");
    await eventually(async () => (await clientA.get("back"))?.value === "again", { what: "the write replicated to a over https" });

    // Every peer request and answer between them verified.
    for (const c of [clientA, clientB]) expect((await c.cluster()).refusals).toEqual({ clientUnauthorized: 0, clientForbidden: 0, peerRequests: 0, peerAnswers: 0 });

    // Plain http to a https port gets nothing.
    const plain = await fetch(`http://127.0.0.1:${a.port}/healthz`, { signal: AbortSignal.timeout(2000) }).catch((e) => e);
    expect(plain instanceof Response && plain.ok).toBe(false);
    // The client says what to try.
    const asHttp = await new MakhzenClient({ url: `http://127.0.0.1:${a.port}`, token: TOKEN, timeoutMs: 3000 }).get("over-tls").catch((err) => err);
    expect((asHttp as MakhzenClientError).message).toContain("use an https:// URL");

    // A client that does not trust the CA is told what to do.
    const e = await new MakhzenClient({ url: a.url, token: TOKEN }).get("over-tls").catch((err) => err);
    expect(e).toBeInstanceOf(MakhzenClientError);
    expect((e as MakhzenClientError).message).toContain("--tls-ca");
    // One that trusts it but asks by a name the certificate does not list (it lists 127.0.0.1) is told that, not to pass the CA it passed.
    const named = await new MakhzenClient({ url: `https://localhost:${a.port}`, token: TOKEN, ca }).get("over-tls").catch((err) => err);
    expect(named).toBeInstanceOf(MakhzenClientError);
    expect((named as MakhzenClientError).message).toContain("does not name the host");
    expect((named as MakhzenClientError).message).not.toContain("--tls-ca");
    expect((named as MakhzenClientError).message).not.toContain("verbose");

    // The CLI: --tls-ca (or MAKHZEN_TLS_CA) and the token.
    const got = await run([process.execPath, MAIN, "get", "over-tls", "--url", b.url, "--tls-ca", join(dir, "ca.pem")], {
      env: { MAKHZEN_TOKEN: TOKEN },
    });
    expect(got.stderr).toBe("");
    expect(got.stdout).toBe("secret value\n");
  });

  test("serve reads each TLS file once: process substitution works (--tls-key <(cat node.key))", async () => {
    // The CLI checked the files, then the node read them again: a pipe read empty the second time
    // ("holds no PEM block"), so a key from a secrets manager through <(...) could not be used.
    const bash = Bun.which("bash");
    if (!bash) throw new Error("this test needs bash for process substitution");
    const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
    const sub = (file: string) => `<(cat ${q(join(dir, file))})`;
    const cmd = `exec ${q(process.execPath)} ${q(MAIN)} serve --port 0 --name piped --tls-cert ${sub("node.pem")} --tls-key ${sub("node.key")} --tls-ca ${sub("ca.pem")}`;
    const node = NodeProcess.spawn("piped", [bash, "-c", cmd]);
    try {
      expect(await node.started()).toStartWith("https://");
      await node.ready({ ca });
    } finally {
      await node.stop("SIGKILL");
    }
  });

  test("a plain http node cannot join a https cluster: it exits 1 with one line, and nothing is replicated to it in clear", async () => {
    h = new Harness();
    const a = await startTls("a");
    // It trusts the CA, so it reaches the seed; it serves http itself, so every write sent to it would cross in clear.
    const plain = ["--tls-ca", join(dir, "ca.pem"), "--token", TOKEN, "--cluster-secret", SECRET];
    const c = await h.start("c", { peers: [a.url], extraArgs: plain, waitReady: false });
    expect(await c.exited).toBe(1);
    const lines = c.log().split("\n").filter((l) => l.startsWith("makhzen: "));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^makhzen: cannot join the cluster: node "c" serves "http:\/\/127\.0\.0\.1:\d+" but this cluster's members serve https \("https:\/\/127\.0\.0\.1:\d+"\)/);
    expect(lines[0]).toEndWith(": give every member TLS (--tls-cert and --tls-key) or none, so no peer traffic crosses the network in clear");
    expect((await new MakhzenClient({ url: a.url, token: TOKEN, ca }).cluster()).members.map((m) => m.name)).toEqual(["a"]);
  });
});
