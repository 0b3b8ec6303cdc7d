import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { resolve } from "node:path";
import { serveOptions } from "../../src/cli/serve.ts";
import { run, startNode } from "../support/proc.ts";

/** The security flags of `serve` and of the client commands, through the real CLI. */

const MAIN = resolve(import.meta.dir, "../../src/cli/main.ts");
const cli = (args: string[], env: Record<string, string> = {}) => run([process.execPath, MAIN, ...args], { env });
const TOKEN = "cli-token-for-tests";

describe("serve: security flags", () => {
  test("flags and MAKHZEN_* variables become node options", () => {
    const o = serveOptions(
      { token: "t1", "read-token": "r1", "cluster-secret": "s".repeat(16), "tls-cert": "c.pem", "tls-key": "k.pem", "tls-ca": "ca.pem", insecure: true, "body-timeout": "5s", "idle-timeout": "10s" },
      {},
    );
    expect(o).toMatchObject({ token: "t1", readToken: "r1", clusterSecret: "s".repeat(16), tlsCertFile: "c.pem", tlsKeyFile: "k.pem", tlsCaFile: "ca.pem", insecure: true, bodyTimeoutMs: 5000, idleTimeoutMs: 10_000 });
    const e = serveOptions({}, { MAKHZEN_TOKEN: "t2", MAKHZEN_READ_TOKEN: "r2", MAKHZEN_CLUSTER_SECRET: "x".repeat(20), MAKHZEN_INSECURE: "1" });
    expect(e).toMatchObject({ token: "t2", readToken: "r2", clusterSecret: "x".repeat(20), insecure: true });
    expect(serveOptions({}, {}).insecure).toBeUndefined();
  });

  test("protected mode: beyond loopback without --token, one line naming --token and --insecure, exit 1", async () => {
    const r = await cli(["serve", "--host", "0.0.0.0", "--port", "0"]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("without --token");
    expect(r.stderr).toContain("--insecure");
  });

  test("a --host that is no address is refused as such (exit 2, one line naming --host and the value), not by protected mode", async () => {
    const r = await cli(["serve", "--host", "999.1.1.1", "--port", "0"]);
    expect([r.code, r.stderr]).toEqual([2, 'makhzen: --host "999.1.1.1" is not an address to listen on: an IPv4 address (four numbers from 0 to 255), an IPv6 address without brackets (::1) or a hostname\n']);
  });

  test("protected mode: a peer or advertised URL beyond loopback needs --cluster-secret; --insecure accepts the risk", async () => {
    const args = ["serve", "--port", "0", "--advertise", "http://10.0.0.1:7000"];
    const r = await cli(args);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("without --cluster-secret");
    await using node = await startNode([process.execPath, MAIN, ...args, "--insecure"]);
    expect((await fetch(`${node.url}/healthz`)).status).toBe(200);
    const lines = node.log().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    // What it is exposed to, as it is (it listens, so no "refusing to"), every risk once.
    expect(lines).toContainEqual(
      expect.objectContaining({
        component: "security",
        msg: "protected mode is off (--insecure)",
        risks: ['advertising "http://10.0.0.1:7000", beyond loopback without clusterSecret: anyone who can reach the peer API could join the cluster, inject writes and read every key'],
      }),
    );
    expect(lines).toContainEqual(expect.objectContaining({ msg: "started", tls: false, clientAuth: "none", clusterSecret: false, insecure: true }));
  });

  test("bad security options print one line and exit 2", async () => {
    for (const [args, message] of [
      [["--cluster-secret", "short"], "--cluster-secret must be at least 16 characters"],
      [["--read-token", "r"], "--read-token needs --token"],
      [["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], '--tls-cert "/nonexistent.pem" cannot be read: ENOENT'],
      [["--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key go together"],
    ] as const) {
      const r = await cli(["serve", "--port", "0", ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
    }
  });
});

describe("client commands: --token and MAKHZEN_TOKEN", () => {
  test("every client command sends the token; without it the node's 401 is one line, exit 1", async () => {
    await using node = await startNode([process.execPath, MAIN, "serve", "--port", "0", "--token", TOKEN]);
    const url = ["--url", node.url];

    const refused = await cli(["put", "k", "v", ...url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe("makhzen: this node requires a token: send Authorization: Bearer <token> (give it with --token or MAKHZEN_TOKEN)\n");
    expect((await cli(["get", "k", ...url, "--token", "wrong"])).stderr).toContain("the token is not valid");

    expect((await cli(["put", "k", "v", ...url, "--token", TOKEN])).stdout).toBe("OK\n");
    const env = { MAKHZEN_TOKEN: TOKEN };
    expect((await cli(["get", "k", ...url], env)).stdout).toBe("v\n");
    expect((await cli(["ls", ...url], env)).stdout).toBe("k\n");
    const dumped = await cli(["dump", ...url], env);
    expect(dumped.stdout).toContain('"key":"k"');
    expect((await cli(["status", ...url], env)).stdout).toContain("NAME");
    const dir = mkdtempSync(resolve(tmpdir(), "makhzen-cli-"));
    try {
      const file = resolve(dir, "dump.ndjson");
      writeFileSync(file, dumped.stdout);
      const load = (e: Record<string, string>) => run([process.execPath, MAIN, "load", ...url], { env: e, stdin: Bun.file(file) });
      expect((await load({})).stderr).toContain("requires a token");
      expect((await load(env)).stdout).toContain("loaded 0, skipped 1");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect((await cli(["del", "k", ...url], env)).stdout).toBe("OK\n");
    for (const cmd of [["get", "k"], ["ls"], ["dump"], ["status"], ["del", "k"]]) {
      const r = await cli([...cmd, ...url]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("requires a token");
    }
  });
});
